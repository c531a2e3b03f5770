//! Compile a WebAssembly module once with Cranelift, keep the serialized artifact on
//! disk, and load it on later starts.
//!
//! Two places hold compiled modules, looked in in this order:
//! - the *shipped* directory beside the binary (`pglite-modules/`), read-only, written
//!   by `pglite-port --precompile-to` (the Mix compiler, a release build) for this
//!   architecture's CPU baseline (x86-64-v2, or NEON on aarch64), so it loads on any
//!   machine of the architecture and a first start compiles nothing;
//! - the cache directory, written on demand for this very CPU.
//!
//! A file is only ever loaded if this program wrote it for exactly the same key
//! (module hash, wasmer version, target, CPU features; the engine too for the cache)
//! and its length and CRC-32 check out: `Module::deserialize` trusts its input, so
//! anything else (a truncated, corrupt or foreign file) is skipped, and removed and
//! rebuilt in the cache. Files appear by atomic rename, and a lock file makes
//! concurrent starts wait for one compile. Reading a whole file for its CRC costs ~8 ms
//! of every start (56 MB), so a file that passed is noted in the cache (`verified/`)
//! with its identity (device, inode, length, times): a start that finds the very same
//! file trusts it; any replacement or write changes its ctime and is checked again.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};
use enumset::EnumSet;
use wasmer::sys::CpuFeature;
use wasmer::{Engine, Module};

/// Must match the `=` pin of wasmer in Cargo.toml: artifacts are tied to it.
const WASMER_VERSION: &str = "7.4.2";
const MAGIC: &[u8; 8] = b"PGLMOD02";
/// MAGIC, key digest (32), payload length (u64 LE), payload CRC-32 (u32 LE), zero padding:
/// the artifact must start 64-byte aligned to be deserialized in place.
const HEADER_LEN: usize = 64;

/// The directory beside the binary that holds its shipped modules.
pub const SHIPPED_DIR: &str = "pglite-modules";

/// The Cranelift engine with wasm exceptions on (PostgreSQL's longjmp needs them),
/// compiling for this CPU; its memories have start-up grows faulted in on a helper
/// thread (`guest_memory`).
pub fn engine() -> Engine {
    let mut engine = engine_for(wasmer::sys::Cranelift::default(), None);
    wasmer::sys::NativeEngineExt::set_tunables(&mut engine, crate::guest_memory::PopulatingTunables::new());
    engine
}

/// The engine that compiles shipped modules: only CPU features every machine of this
/// architecture has, so the code runs on any of them. LLVM when built with the `llvm`
/// feature (slower to compile, faster code), else Cranelift; any engine loads either.
pub fn portable_engine() -> Engine {
    let target = wasmer::sys::Target::new(wasmer::sys::Triple::host(), portable_cpu_features());
    #[cfg(feature = "llvm")]
    let compiler = wasmer::sys::LLVM::default();
    #[cfg(not(feature = "llvm"))]
    let compiler = wasmer::sys::Cranelift::default();
    engine_for(compiler, Some(target))
}

fn engine_for(compiler: impl Into<Box<dyn wasmer::sys::CompilerConfig>>, target: Option<wasmer::sys::Target>) -> Engine {
    let mut features = wasmer::sys::Features::new();
    features.exceptions(true);
    wasmer::sys::EngineBuilder::new(compiler)
        .set_features(Some(features))
        .set_target(target)
        .engine()
        .into()
}

/// x86-64-v2 (every x86-64 CPU since about 2009) or NEON (every aarch64 CPU).
fn portable_cpu_features() -> EnumSet<CpuFeature> {
    use CpuFeature::*;
    match std::env::consts::ARCH {
        "x86_64" => SSE2 | SSE3 | SSSE3 | SSE41 | SSE42 | POPCNT,
        "aarch64" => EnumSet::only(NEON),
        _ => EnumSet::empty(),
    }
}

#[derive(Clone, Debug)]
pub struct ModuleCache {
    dir: PathBuf,
    engine: Engine,
    shipped: Option<PathBuf>,
}

/// How a module was obtained, for logs and the benchmark.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Shipped,
    Cache,
    Compiled,
}

impl ModuleCache {
    pub fn new(dir: PathBuf, engine: Engine) -> Self {
        Self { dir, engine, shipped: None }
    }

    /// Looks in `dir` first for modules shipped with the binary.
    pub fn with_shipped(self, dir: Option<PathBuf>) -> Self {
        Self { shipped: dir, ..self }
    }

    /// `pglite-modules/` beside the running binary, if there is one.
    pub fn shipped_beside_executable() -> Option<PathBuf> {
        let exe = std::env::current_exe().ok()?;
        let dir = exe.parent()?.join(SHIPPED_DIR);
        dir.is_dir().then_some(dir)
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Loads the module `name` whose WebAssembly bytes hash to `wasm_sha256` from the
    /// shipped directory or the cache; compiles `wasm()` into the cache when neither
    /// holds a valid one.
    pub fn load_or_compile(
        &self,
        name: &str,
        wasm_sha256: &str,
        wasm: impl FnOnce() -> Result<Vec<u8>>,
    ) -> Result<(Module, Source)> {
        if let Some(module) = self.load_shipped(name, wasm_sha256) {
            return Ok((module, Source::Shipped));
        }
        let (path, key) = self.cache_entry(name, wasm_sha256);
        if let Some(module) = self.load_cached(&path, &key) {
            return Ok((module, Source::Cache));
        }
        fs::create_dir_all(&self.dir)
            .with_context(|| format!("create module cache {}", self.dir.display()))?;
        let lock_path = path.with_extension("lock");
        let lock = File::create(&lock_path)
            .with_context(|| format!("open cache lock {}", lock_path.display()))?;
        lock.lock().with_context(|| format!("lock {}", lock_path.display()))?;
        // Whoever held the lock before us may have just written it.
        if let Some(module) = self.load_cached(&path, &key) {
            return Ok((module, Source::Cache));
        }
        if name == "pglite" {
            eprintln!("pglite-port: compiling PostgreSQL for this machine, once, ~10 s");
        }
        let module = compile(&self.engine, name, &wasm()?)?;
        let artifact = module.serialize().with_context(|| format!("serialize {name}"))?;
        write_atomically(&path, &key, &artifact)
            .with_context(|| format!("write module cache {}", path.display()))?;
        Ok((module, Source::Compiled))
    }

    /// Loads `name` if a valid shipped or cached file exists; never compiles.
    pub fn load(&self, name: &str, wasm_sha256: &str) -> Option<Module> {
        self.load_shipped(name, wasm_sha256).or_else(|| {
            let (path, key) = self.cache_entry(name, wasm_sha256);
            path.is_file().then(|| self.load_cached(&path, &key)).flatten()
        })
    }

    /// Stores a module compiled elsewhere (by the runtime, for a dlopen).
    pub fn store(&self, name: &str, wasm_sha256: &str, module: &Module) -> Result<()> {
        let (path, key) = self.cache_entry(name, wasm_sha256);
        fs::create_dir_all(&self.dir).with_context(|| format!("create module cache {}", self.dir.display()))?;
        let artifact = module.serialize().with_context(|| format!("serialize {name}"))?;
        write_atomically(&path, &key, &artifact).with_context(|| format!("write module cache {}", path.display()))
    }

    fn cache_entry(&self, name: &str, wasm_sha256: &str) -> (PathBuf, [u8; 32]) {
        let cpu = format!("{:?} {}", CpuFeature::for_host(), self.engine.deterministic_id());
        entry(&self.dir, name, wasm_sha256, &cpu)
    }

    fn load_shipped(&self, name: &str, wasm_sha256: &str) -> Option<Module> {
        let (path, key) = shipped_entry(self.shipped.as_deref()?, name, wasm_sha256);
        if !path.is_file() {
            return None;
        }
        // Never removed: the directory belongs to the installation, not to us.
        self.load_checked(&path, &key)
            .map_err(|reason| log::warn!("shipped module {} not used: {reason}", path.display()))
            .ok()
    }

    fn load_cached(&self, path: &Path, key: &[u8; 32]) -> Option<Module> {
        let reason = match self.load_checked(path, key) {
            Ok(module) => return Some(module),
            Err(reason) => reason,
        };
        if path.exists() {
            log::warn!("cache file {} removed: {reason}", path.display());
            if let Err(e) = fs::remove_file(path) {
                log::warn!("could not remove bad cache file {}: {e}", path.display());
            }
        }
        None
    }

    fn load_checked(&self, path: &Path, key: &[u8; 32]) -> std::result::Result<Module, String> {
        let started = std::time::Instant::now();
        let file = File::open(path).map_err(|_| "cannot be opened")?;
        // The identity of the very file mapped, not of whatever the path names by now.
        let identity = file.metadata().ok().map(|m| identity(&m));
        let bytes = bytes::Bytes::from_owner(map(&file).ok_or("cannot be mapped")?);
        let stamp = self.dir.join("verified").join(path.file_name().unwrap_or_default());
        let trusted = identity.is_some() && fs::read_to_string(&stamp).ok() == identity;
        check(&bytes, key, !trusted)?;
        if let (false, Some(identity)) = (trusted, &identity) {
            // Best effort: without a stamp the next start checks the CRC again.
            let _ = fs::create_dir_all(stamp.parent().unwrap_or(&self.dir)).and_then(|()| fs::write(&stamp, identity));
        }
        // SAFETY: the payload was written by `write_atomically` for this exact key (wasmer
        // version, target, CPU) and its CRC matched, on this start or on one that saw this
        // same file; module files are only ever replaced by rename, never written in place,
        // so the mapping stays as checked. Slicing hands it over without a copy.
        let module = unsafe { Module::deserialize(&self.engine, bytes.slice(HEADER_LEN..)) }.map_err(|e| format!("did not load: {e}"))?;
        // Wasmer keeps the artifact for the module's lifetime but reads little of it
        // after loading: give the pages back (they come back from the page cache if
        // touched again).
        // SAFETY: a read-only private file mapping: pages refault from the file.
        unsafe { crate::memory_pages::release(&bytes) };
        log::debug!("loaded {} in {:.1?} (CRC {})", path.display(), started.elapsed(), if trusted { "checked before" } else { "checked" });
        Ok(module)
    }
}

/// Compiles `wasm` with the portable engine into `dir` (see [`SHIPPED_DIR`]) unless a
/// sound file for it is there. Returns the file and whether it was compiled.
pub fn ship(portable: &Engine, dir: &Path, name: &str, wasm_sha256: &str, wasm: impl FnOnce() -> Result<Vec<u8>>) -> Result<(PathBuf, bool)> {
    let (path, key) = shipped_entry(dir, name, wasm_sha256);
    if map_file(&path).is_some_and(|map| check(&map, &key, true).is_ok()) {
        return Ok((path, false));
    }
    fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    let artifact = compile(portable, name, &wasm()?)?.serialize().with_context(|| format!("serialize {name}"))?;
    write_atomically(&path, &key, &artifact).with_context(|| format!("write {}", path.display()))?;
    Ok((path, true))
}

fn compile(engine: &Engine, name: &str, wasm: &[u8]) -> Result<Module> {
    let started = std::time::Instant::now();
    let module = Module::new(engine, wasm).with_context(|| format!("compile {name}"))?;
    log::info!("compiled {name} in {:.1?}", started.elapsed());
    Ok(module)
}

/// Shipped files name the CPU baseline, not an engine: any engine of this wasmer
/// version loads them (wasmer itself refuses code for CPU features the host lacks).
fn shipped_entry(dir: &Path, name: &str, wasm_sha256: &str) -> (PathBuf, [u8; 32]) {
    entry(dir, name, wasm_sha256, &format!("portable {:?}", portable_cpu_features()))
}

/// The file for a module in `dir` and the key its header must carry.
fn entry(dir: &Path, name: &str, wasm_sha256: &str, cpu: &str) -> (PathBuf, [u8; 32]) {
    let identity = format!(
        "{}|{name}|{wasm_sha256}|wasmer {WASMER_VERSION}|{}-{}|{cpu}",
        String::from_utf8_lossy(MAGIC),
        std::env::consts::ARCH,
        std::env::consts::OS,
    );
    let key: [u8; 32] = Sha256::digest(identity.as_bytes()).into();
    (dir.join(format!("{name}-{}.module", &crate::assets::hex(&key)[..16])), key)
}

/// What tells a file from any other, or from a later version of it: a rename brings
/// another inode, a write changes the ctime (which no one can set).
fn identity(m: &fs::Metadata) -> String {
    use std::os::unix::fs::MetadataExt;
    format!("{} {} {} {}.{} {}.{}", m.dev(), m.ino(), m.len(), m.mtime(), m.mtime_nsec(), m.ctime(), m.ctime_nsec())
}

/// The cache file, mapped read-only (private: nothing we do reaches the file).
fn map_file(path: &Path) -> Option<memmap2::Mmap> {
    map(&File::open(path).ok()?)
}

fn map(file: &File) -> Option<memmap2::Mmap> {
    // SAFETY: see `load_checked`: module files are replaced by rename, never modified.
    unsafe { memmap2::MmapOptions::new().map_copy_read_only(file) }.ok()
}

/// The payload, if the header is ours for `key` and the length (and, with `crc`, the
/// CRC-32) match.
fn check<'a>(bytes: &'a [u8], key: &[u8; 32], crc: bool) -> std::result::Result<&'a [u8], &'static str> {
    if bytes.len() < HEADER_LEN || &bytes[..8] != MAGIC {
        return Err("not a pglite module cache file");
    }
    if &bytes[8..40] != key {
        return Err("written for another module, wasmer version or CPU");
    }
    let len = u64::from_le_bytes(bytes[40..48].try_into().expect("8 bytes"));
    let expected = u32::from_le_bytes(bytes[48..52].try_into().expect("4 bytes"));
    let payload = &bytes[HEADER_LEN..];
    if payload.len() as u64 != len {
        return Err("truncated");
    }
    if crc && crc32fast::hash(payload) != expected {
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
        assert_eq!(check(&good, &key, true).unwrap(), b"payload");
        assert!(check(&good, &[8u8; 32], true).is_err(), "foreign key");
        assert!(check(&good[..good.len() - 1], &key, false).is_err(), "truncated");
        let mut corrupt = good.clone();
        *corrupt.last_mut().unwrap() ^= 1;
        assert!(check(&corrupt, &key, true).is_err(), "corrupt");
        assert!(check(b"garbage", &key, false).is_err(), "garbage");
    }

    #[test]
    fn a_file_written_to_or_replaced_is_not_the_file_that_was_checked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.module");
        write_atomically(&path, &[7u8; 32], b"payload").unwrap();
        let of = |path: &Path| identity(&fs::metadata(path).unwrap());
        let checked = of(&path);
        assert_eq!(of(&path), checked, "the same file, untouched");
        fs::OpenOptions::new().append(true).open(&path).unwrap().write_all(b"!").unwrap();
        assert_ne!(of(&path), checked, "written in place");
        let now = of(&path);
        write_atomically(&path, &[7u8; 32], b"payload!").unwrap();
        assert_ne!(of(&path), now, "replaced by rename");
    }
}
