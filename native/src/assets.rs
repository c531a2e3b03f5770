//! The PostgreSQL runtime files and the initialised data-directory template, both
//! embedded by the crate `pglite-oxide-assets` (pinned in Cargo.toml).

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};

/// Must match the `=` pin in Cargo.toml: it names the unpacked runtime directory.
pub const ASSETS_VERSION: &str = "pglite-oxide-assets-0.5.1";

/// The runtime (module, share/, lib/) unpacked once into the cache directory.
pub struct Runtime {
    pub root: PathBuf,
}

impl Runtime {
    pub fn module_path(&self) -> PathBuf {
        self.root.join("bin/pglite")
    }

    /// SHA-256 of the bundled module, computed once at unpack time.
    pub fn module_sha256(&self) -> Result<String> {
        let path = self.root.join("bin/pglite.sha256");
        fs::read_to_string(&path).with_context(|| format!("read {}", path.display()))
    }

    pub fn lib_dir(&self) -> PathBuf {
        self.root.join("lib/postgresql")
    }
}

/// Unpacks the runtime into `<cache>/<ASSETS_VERSION>` unless a complete copy is there.
/// The copy is made in a temporary sibling and renamed into place, so a crash mid-way
/// leaves no half-made runtime.
pub fn runtime(cache_dir: &Path) -> Result<Runtime> {
    let archive = pglite_oxide_assets::runtime_archive()
        .context("pglite-oxide-assets was built without its runtime payload")?;
    let dir = cache_dir.join(format!("{ASSETS_VERSION}-{}", archive.len()));
    // The archive's files sit under a top-level `pglite/`.
    let root = dir.join("pglite");
    if !root.join("bin/pglite.sha256").is_file() {
        fs::create_dir_all(cache_dir)
            .with_context(|| format!("create cache directory {}", cache_dir.display()))?;
        let tmp = tempfile::Builder::new()
            .prefix(".runtime-")
            .tempdir_in(cache_dir)
            .with_context(|| format!("create a temporary directory in {}", cache_dir.display()))?;
        unpack_tar_zst(archive, tmp.path()).context("unpack the PostgreSQL runtime")?;
        let bin = tmp.path().join("pglite/bin");
        let module = fs::read(bin.join("pglite")).context("read unpacked pglite/bin/pglite")?;
        fs::write(bin.join("pglite.sha256"), hex(&Sha256::digest(&module)))?;
        match fs::rename(tmp.path(), &dir) {
            Ok(()) => {
                let _ = tmp.keep();
            }
            // Another process finished first: use its copy.
            Err(_) if root.join("bin/pglite.sha256").is_file() => {}
            Err(e) => return Err(e).with_context(|| format!("move runtime to {}", dir.display())),
        }
    }
    Ok(Runtime { root })
}

/// The template PGDATA archive (tar.zst).
pub fn pgdata_template() -> Result<&'static [u8]> {
    pglite_oxide_assets::pgdata_template_archive()
        .context("pglite-oxide-assets was built without its PGDATA template")
}

/// Calls `visit` for each entry of a tar.zst archive with its relative path.
pub fn for_each_entry(
    archive: &[u8],
    mut visit: impl FnMut(&Path, tar::EntryType, &mut dyn Read) -> Result<()>,
) -> Result<()> {
    let decoder = zstd::stream::read::Decoder::new(archive).context("open zstd stream")?;
    let mut tar = tar::Archive::new(decoder);
    for entry in tar.entries().context("read tar entries")? {
        let mut entry = entry.context("read tar entry")?;
        let path = entry.path().context("tar entry path")?.into_owned();
        let path = path.strip_prefix("./").unwrap_or(&path).to_path_buf();
        if path.as_os_str().is_empty() || path.components().any(|c| matches!(c, std::path::Component::ParentDir)) {
            continue;
        }
        let kind = entry.header().entry_type();
        visit(&path, kind, &mut entry)?;
    }
    Ok(())
}

/// Unpacks a tar.zst archive into a host directory.
pub fn unpack_tar_zst(archive: &[u8], dest: &Path) -> Result<()> {
    for_each_entry(archive, |path, kind, reader| {
        let target = dest.join(path);
        if kind.is_dir() {
            fs::create_dir_all(&target)?;
        } else if kind.is_file() {
            if let Some(parent) = target.parent() {
                fs::create_dir_all(parent)?;
            }
            let mut out = fs::File::create(&target).with_context(|| format!("create {}", target.display()))?;
            std::io::copy(reader, &mut out).with_context(|| format!("write {}", target.display()))?;
        }
        Ok(())
    })
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
