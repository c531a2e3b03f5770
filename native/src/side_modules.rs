//! PostgreSQL loads plpgsql.so and dict_snowball.so with dlopen at run time. Wasmer
//! looks dlopen'd modules up by content hash in the runtime's module cache; we fill
//! that cache from our own compiled-module cache, so no start compiles them again.

use std::sync::Arc;

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};
use wasmer_wasix::runtime::module_cache::{ModuleCache as _, SharedCache};

use crate::assets::{hex, Runtime};
use crate::module_cache::ModuleCache;

const SIDE_MODULES: [&str; 2] = ["plpgsql", "dict_snowball"];

pub fn seed(rt: &tokio::runtime::Runtime, modules: &ModuleCache, runtime: &Runtime) -> Result<Arc<SharedCache>> {
    let cache = Arc::new(SharedCache::new());
    for name in SIDE_MODULES {
        let path = runtime.lib_dir().join(format!("{name}.so"));
        let bytes = std::fs::read(&path).with_context(|| format!("read {}", path.display()))?;
        let digest: [u8; 32] = Sha256::digest(&bytes).into();
        let (module, _) = modules.load_or_compile(name, &hex(&digest), || Ok(bytes.clone()))?;
        rt.block_on(cache.save(wasmer_types::ModuleHash::from_bytes(digest), modules.engine(), &module))
            .with_context(|| format!("register {name}.so with the runtime"))?;
    }
    Ok(cache)
}
