//! `--precompile-to DIR`: every module a start or a pg_dump may load (PostgreSQL, its
//! bundled side modules and extensions, pg_dump), compiled ahead of time for this
//! architecture's CPU baseline into the shipped-modules directory, so that no start
//! on any machine of the architecture compiles anything. Module files in the directory
//! that no longer belong (an older wasmer or module) are removed.

use std::path::Path;

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};
use wasmer_types::ModuleHash;

use crate::assets::{hex, Runtime};
use crate::export_trim;
use crate::module_cache::{self, ship};
use crate::side_modules::SIDE_MODULES;

/// Compiles what `dir` lacks; returns (modules compiled, modules already there).
pub fn into_dir(dir: &Path, runtime: &Runtime) -> Result<(usize, usize)> {
    let engine = module_cache::portable_engine();
    let mut compiled = Vec::new();
    let (key, trimmed) = export_trim::bundled(runtime, runtime.module_sha256()?);
    compiled.push(ship(&engine, dir, "pglite", &hex(&key), trimmed)?);
    let dump = pglite_oxide_assets::pg_dump_wasm().context("pglite-oxide-assets was built without pg_dump")?;
    compiled.push(ship(&engine, dir, "pg_dump", &hex(&Sha256::digest(dump)), || Ok(dump.to_vec()))?);

    for path in runtime.side_module_paths()? {
        let bytes = std::fs::read(&path).with_context(|| format!("read {}", path.display()))?;
        let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        // Keyed as their loaders ask for them: seeded ones by name, the rest as the
        // runtime's dlopen does (by its content hash).
        let (name, key) = if SIDE_MODULES.contains(&stem.as_str()) {
            (stem, hex(&Sha256::digest(&bytes)))
        } else {
            ("side".to_string(), ModuleHash::new(&bytes).to_string())
        };
        compiled.push(ship(&engine, dir, &name, &key, || Ok(bytes))?);
    }
    let keep: Vec<_> = compiled.iter().map(|(path, _)| path.clone()).collect();
    for entry in std::fs::read_dir(dir).with_context(|| format!("list {}", dir.display()))? {
        let path = entry?.path();
        if path.extension().is_some_and(|x| x == "module") && !keep.contains(&path) {
            std::fs::remove_file(&path).with_context(|| format!("remove stale {}", path.display()))?;
        }
    }
    let fresh = compiled.iter().filter(|(_, fresh)| *fresh).count();
    Ok((fresh, compiled.len() - fresh))
}
