//! Compile a WebAssembly module once with Cranelift, keep the serialized artifact on
//! disk, and load it on later starts.
//!
//! A cache file is only ever loaded if this program wrote it for exactly the same key
//! (module hash, wasmer version, engine, target, CPU features) and its length and
//! CRC-32 check out: `Module::deserialize` trusts its input, so anything else (a
//! truncated, corrupt or foreign file) is removed and rebuilt. Files appear by atomic
//! rename, and a lock file makes concurrent starts wait for one compile.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};
use wasmer::{Engine, Module};

/// Must match the `=` pin of wasmer in Cargo.toml: artifacts are tied to it.
const WASMER_VERSION: &str = "7.4.2";
const MAGIC: &[u8; 8] = b"PGLMOD02";
/// MAGIC, key digest (32), payload length (u64 LE), payload CRC-32 (u32 LE), zero padding:
/// the artifact must start 64-byte aligned to be deserialized in place.
const HEADER_LEN: usize = 64;

/// The Cranelift engine with wasm exceptions on (PostgreSQL's longjmp needs them).
pub fn engine() -> Engine {
    let mut features = wasmer::sys::Features::new();
    features.exceptions(true);
    wasmer::sys::EngineBuilder::new(wasmer::sys::Cranelift::default())
        .set_features(Some(features))
        .engine()
        .into()
}

#[derive(Clone, Debug)]
pub struct ModuleCache {
    dir: PathBuf,
    engine: Engine,
}

/// How a module was obtained, for logs and the benchmark.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Cache,
    Compiled,
}

impl ModuleCache {
    pub fn new(dir: PathBuf, engine: Engine) -> Self {
        Self { dir, engine }
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Loads the module `name` whose WebAssembly bytes hash to `wasm_sha256`;
    /// compiles `wasm()` and stores it when no valid cache entry exists.
    pub fn load_or_compile(
        &self,
        name: &str,
        wasm_sha256: &str,
        wasm: impl FnOnce() -> Result<Vec<u8>>,
    ) -> Result<(Module, Source)> {
        let (path, key) = self.entry(name, wasm_sha256);
        if let Some(module) = self.try_load(&path, &key) {
            return Ok((module, Source::Cache));
        }
        fs::create_dir_all(&self.dir)
            .with_context(|| format!("create module cache {}", self.dir.display()))?;
        let lock_path = path.with_extension("lock");
        let lock = File::create(&lock_path)
            .with_context(|| format!("open cache lock {}", lock_path.display()))?;
        lock.lock().with_context(|| format!("lock {}", lock_path.display()))?;
        // Whoever held the lock before us may have just written it.
        if let Some(module) = self.try_load(&path, &key) {
            return Ok((module, Source::Cache));
        }
        if name == "pglite" {
            eprintln!("pglite-port: compiling PostgreSQL for this machine, once, ~10 s");
        }
        let started = std::time::Instant::now();
        let bytes = wasm()?;
        let module = Module::new(&self.engine, &bytes).with_context(|| format!("compile {name}"))?;
        log::info!("compiled {name} in {:.1?}", started.elapsed());
        let artifact = module.serialize().with_context(|| format!("serialize {name}"))?;
        write_atomically(&path, &key, &artifact)
            .with_context(|| format!("write module cache {}", path.display()))?;
        Ok((module, Source::Compiled))
    }

    /// Loads `name` from the cache if a valid entry exists; never compiles.
    pub fn load(&self, name: &str, wasm_sha256: &str) -> Option<Module> {
        let (path, key) = self.entry(name, wasm_sha256);
        path.is_file().then(|| self.try_load(&path, &key)).flatten()
    }

    /// Stores a module compiled elsewhere (by the runtime, for a dlopen).
    pub fn store(&self, name: &str, wasm_sha256: &str, module: &Module) -> Result<()> {
        let (path, key) = self.entry(name, wasm_sha256);
        fs::create_dir_all(&self.dir).with_context(|| format!("create module cache {}", self.dir.display()))?;
        let artifact = module.serialize().with_context(|| format!("serialize {name}"))?;
        write_atomically(&path, &key, &artifact).with_context(|| format!("write module cache {}", path.display()))
    }

    fn entry(&self, name: &str, wasm_sha256: &str) -> (PathBuf, [u8; 32]) {
        let key = self.key(name, wasm_sha256);
        (self.dir.join(format!("{name}-{}.module", &crate::assets::hex(&key)[..16])), key)
    }

    fn key(&self, name: &str, wasm_sha256: &str) -> [u8; 32] {
        let cpu = wasmer::sys::CpuFeature::for_host();
        let identity = format!(
            "{}|{name}|{wasm_sha256}|wasmer {WASMER_VERSION}|{}|{}-{}|{cpu:?}",
            String::from_utf8_lossy(MAGIC),
            self.engine.deterministic_id(),
            std::env::consts::ARCH,
            std::env::consts::OS,
        );
        Sha256::digest(identity.as_bytes()).into()
    }

    fn try_load(&self, path: &Path, key: &[u8; 32]) -> Option<Module> {
        let started = std::time::Instant::now();
        let map = map_file(path)?;
        let bytes = bytes::Bytes::from_owner(map);
        match check(&bytes, key) {
            Ok(_) => {
                // SAFETY: the payload was written by `write_atomically` for this exact
                // key (wasmer version, engine, CPU) and its CRC matches; cache files are
                // only ever replaced by rename, never written in place, so the mapping
                // stays as checked. Slicing hands it over without a copy.
                match unsafe { Module::deserialize(&self.engine, bytes.slice(HEADER_LEN..)) } {
                    Ok(module) => {
                        // Wasmer keeps the artifact for the module's lifetime but reads
                        // little of it after loading: give the pages back (they come
                        // back from the page cache if touched again).
                        // SAFETY: a read-only private file mapping: pages refault from the file.
                        unsafe { crate::memory_pages::release(&bytes) };
                        log::debug!("loaded {} in {:.1?}", path.display(), started.elapsed());
                        return Some(module);
                    }
                    Err(e) => log::warn!("cache file {} did not load: {e}", path.display()),
                }
            }
            Err(reason) => log::warn!("cache file {} rejected: {reason}", path.display()),
        }
        if let Err(e) = fs::remove_file(path) {
            log::warn!("could not remove bad cache file {}: {e}", path.display());
        }
        None
    }
}

/// The cache file, mapped read-only (private: nothing we do reaches the file).
fn map_file(path: &Path) -> Option<memmap2::Mmap> {
    let file = File::open(path).ok()?;
    // SAFETY: see `try_load`: cache files are replaced by rename, never modified.
    unsafe { memmap2::MmapOptions::new().map_copy_read_only(&file) }.ok()
}

fn check<'a>(bytes: &'a [u8], key: &[u8; 32]) -> std::result::Result<&'a [u8], &'static str> {
    if bytes.len() < HEADER_LEN || &bytes[..8] != MAGIC {
        return Err("not a pglite module cache file");
    }
    if &bytes[8..40] != key {
        return Err("written for another module, wasmer version or CPU");
    }
    let len = u64::from_le_bytes(bytes[40..48].try_into().expect("8 bytes"));
    let crc = u32::from_le_bytes(bytes[48..52].try_into().expect("4 bytes"));
    let payload = &bytes[HEADER_LEN..];
    if payload.len() as u64 != len {
        return Err("truncated");
    }
    if crc32fast::hash(payload) != crc {
        return Err("checksum mismatch");
    }
    Ok(payload)
}

fn write_atomically(path: &Path, key: &[u8; 32], payload: &[u8]) -> Result<()> {
    let dir = path.parent().context("cache path has no parent")?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(MAGIC)?;
    tmp.write_all(key)?;
    tmp.write_all(&(payload.len() as u64).to_le_bytes())?;
    tmp.write_all(&crc32fast::hash(payload).to_le_bytes())?;
    tmp.write_all(&[0u8; HEADER_LEN - 52])?;
    tmp.write_all(payload)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_checks_reject_bad_files() {
        let key = [7u8; 32];
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.module");
        write_atomically(&path, &key, b"payload").unwrap();
        let good = fs::read(&path).unwrap();
        assert_eq!(check(&good, &key).unwrap(), b"payload");
        assert!(check(&good, &[8u8; 32]).is_err(), "foreign key");
        assert!(check(&good[..good.len() - 1], &key).is_err(), "truncated");
        let mut corrupt = good.clone();
        *corrupt.last_mut().unwrap() ^= 1;
        assert!(check(&corrupt, &key).is_err(), "corrupt");
        assert!(check(b"garbage", &key).is_err(), "garbage");
    }
}
