//! PostgreSQL loads its side modules (plpgsql.so, dict_snowball.so, and every
//! extension's .so) with dlopen at run time. Wasmer looks them up by content hash in
//! the runtime's module cache: an in-memory cache, seeded at start with plpgsql and
//! dict_snowball from our compiled-module cache, backed by that same disk cache, so an
//! extension is compiled on its first use on a machine and loaded from disk after.

use std::sync::Arc;

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};
use wasmer::{Engine, Module};
use wasmer_types::ModuleHash;
use wasmer_wasix::runtime::module_cache::{CacheError, FallbackCache, ModuleCache as RuntimeCache, SharedCache};

use crate::assets::{hex, Runtime};
use crate::module_cache::ModuleCache;

/// Loaded at every start, so seeded into the runtime's memory cache by name.
pub const SIDE_MODULES: [&str; 2] = ["plpgsql", "dict_snowball"];

/// The runtime's module cache: memory first, then our disk cache.
pub type SideModules = FallbackCache<SharedCache, OnDisk>;

pub fn seed(rt: &tokio::runtime::Runtime, modules: &ModuleCache, runtime: &Runtime) -> Result<Arc<SideModules>> {
    let memory = SharedCache::new();
    for name in SIDE_MODULES {
        let path = runtime.lib_dir().join(format!("{name}.so"));
        let bytes = std::fs::read(&path).with_context(|| format!("read {}", path.display()))?;
        let digest: [u8; 32] = Sha256::digest(&bytes).into();
        let (module, _) = modules.load_or_compile(name, &hex(&digest), || Ok(bytes.clone()))?;
        rt.block_on(memory.save(ModuleHash::from_bytes(digest), modules.engine(), &module))
            .with_context(|| format!("register {name}.so with the runtime"))?;
    }
    Ok(Arc::new(memory.with_fallback(OnDisk(modules.clone()))))
}

/// Side modules the runtime compiled, kept in our checked disk cache under `side`.
#[derive(Debug)]
pub struct OnDisk(ModuleCache);

#[async_trait::async_trait]
impl RuntimeCache for OnDisk {
    async fn load(&self, key: ModuleHash, _engine: &Engine) -> Result<Module, CacheError> {
        self.0.load("side", &key.to_string()).ok_or(CacheError::NotFound)
    }

    async fn contains(&self, key: ModuleHash, _engine: &Engine) -> Result<bool, CacheError> {
        Ok(self.0.load("side", &key.to_string()).is_some())
    }

    async fn save(&self, key: ModuleHash, _engine: &Engine, module: &Module) -> Result<(), CacheError> {
        log::info!("compiled side module {key}; caching it");
        self.0.store("side", &key.to_string(), module).map_err(|e| CacheError::Other(e.into()))
    }
}
