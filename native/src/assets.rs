//! The PostgreSQL runtime files and the initialised data-directory template, both
//! embedded by the crate `pglite-oxide-assets` (pinned in Cargo.toml).

use std::fs;
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
    pub fn module_sha256(&self) -> Result<[u8; 32]> {
        let path = self.root.join("bin/pglite.sha256");
        let text = fs::read_to_string(&path).with_context(|| format!("read {}", path.display()))?;
        parse_sha256(&text).with_context(|| format!("read {}", path.display()))
    }

    pub fn lib_dir(&self) -> PathBuf {
        self.root.join("lib/postgresql")
    }

    /// Every side module PostgreSQL may dlopen (`lib/postgresql/*.so`), sorted.
    pub fn side_module_paths(&self) -> Result<Vec<PathBuf>> {
        let lib = self.lib_dir();
        let mut paths: Vec<_> = fs::read_dir(&lib)
            .with_context(|| format!("list {}", lib.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "so"))
            .collect();
        paths.sort();
        Ok(paths)
    }
}

/// The Snowball stop-word lists the runtime lacks (`native/tsearch_data/README.md`),
/// as `(file name, contents)`.
const STOP_WORDS: [(&str, &[u8]); 15] = {
    macro_rules! stop {
        ($($lang:literal),*) => {
            [$((concat!($lang, ".stop"), include_bytes!(concat!("../tsearch_data/", $lang, ".stop")).as_slice())),*]
        };
    }
    stop!(
        "danish", "dutch", "english", "finnish", "french", "german", "hungarian", "italian", "nepali", "norwegian",
        "portuguese", "russian", "spanish", "swedish", "turkish"
    )
};

/// PostgreSQL's encoding conversion procedures, which the runtime lacks, built for it
/// (`native/encodings/README.md`), as `(file name, contents)`: PostgreSQL dlopens one
/// when a client asks for an encoding other than UTF8 (`SET client_encoding`,
/// `convert()`).
const CONVERSIONS: [(&str, &[u8]); 24] = {
    macro_rules! conversions {
        ($($name:literal),*) => {
            [$((concat!($name, ".so"), include_bytes!(concat!("../encodings/", $name, ".so")).as_slice())),*]
        };
    }
    conversions!(
        "cyrillic_and_mic", "euc2004_sjis2004", "euc_cn_and_mic", "euc_jp_and_sjis", "euc_kr_and_mic", "euc_tw_and_big5", "latin2_and_win1250", "latin_and_mic", "utf8_and_big5", "utf8_and_cyrillic", "utf8_and_euc2004", "utf8_and_euc_cn", "utf8_and_euc_jp", "utf8_and_euc_kr", "utf8_and_euc_tw", "utf8_and_gb18030", "utf8_and_gbk", "utf8_and_iso8859", "utf8_and_iso8859_1", "utf8_and_johab", "utf8_and_sjis", "utf8_and_sjis2004", "utf8_and_uhc", "utf8_and_win"
    )
};

/// Unpacks the runtime into `<cache>/<ASSETS_VERSION>-<size>-<layout>` unless a complete
/// copy is there; the layout names what this program adds to the archive (`stop`: the
/// stop-word lists, `conv`: the conversion procedures), so a cache unpacked without them
/// is not taken for complete.
pub fn runtime(cache_dir: &Path) -> Result<Runtime> {
    let archive = pglite_oxide_assets::runtime_archive()
        .context("pglite-oxide-assets was built without its runtime payload")?;
    let started = std::time::Instant::now();
    let dir = unpacked_once(cache_dir, &format!("{ASSETS_VERSION}-{}-ext-stop-conv", archive.len()), |tmp| {
        // The archive's files sit under a top-level `pglite/`; so do the extensions'
        // (share/postgresql/extension/*, lib/postgresql/*.so). Most of the time goes into
        // creating ~900 files, so the extensions are unpacked beside the core.
        let root = tmp.join("pglite");
        std::thread::scope(|scope| {
            let extensions = scope.spawn(|| -> Result<()> {
                for name in extension_names()? {
                    let archive = pglite_oxide_assets::extension_archive(&name)
                        .with_context(|| format!("pglite-oxide-assets lists extension {name} but lacks its archive"))?;
                    unpack_tar_zst(archive, &root).with_context(|| format!("unpack extension {name}"))?;
                }
                log::debug!("unpacked the extensions in {:.1?}", started.elapsed());
                Ok(())
            });
            let core = unpack_tar_zst(archive, tmp).context("unpack the runtime").and_then(|()| {
                let tsearch = root.join("share/postgresql/tsearch_data");
                for (name, words) in STOP_WORDS {
                    fs::write(tsearch.join(name), words).with_context(|| format!("write {name} into {}", tsearch.display()))?;
                }
                let lib = root.join("lib/postgresql");
                for (name, module) in CONVERSIONS {
                    fs::write(lib.join(name), module).with_context(|| format!("write {name} into {}", lib.display()))?;
                }
                let module = fs::read(root.join("bin/pglite")).context("read unpacked pglite/bin/pglite")?;
                fs::write(root.join("bin/pglite.sha256"), hex(&Sha256::digest(&module)))?;
                log::debug!("unpacked the runtime's core in {:.1?}", started.elapsed());
                Ok(())
            });
            let extensions = extensions.join().map_err(|_| anyhow::anyhow!("the extension unpacker panicked"))?;
            core.and(extensions)
        })
    })?;
    Ok(Runtime { root: dir.join("pglite") })
}

/// The SQL names of the extensions bundled with the runtime.
pub fn extension_names() -> Result<Vec<String>> {
    let manifest = pglite_oxide_assets::manifest().context("read the pglite-oxide-assets manifest")?;
    Ok(manifest.extensions.into_iter().map(|e| e.sql_name).collect())
}

/// The data-directory template, unpacked once into the cache directory.
pub fn pgdata_template_dir(cache_dir: &Path) -> Result<PathBuf> {
    let archive = pgdata_template()?;
    let started = std::time::Instant::now();
    unpacked_once(cache_dir, &format!("{ASSETS_VERSION}-pgdata-{}", archive.len()), |tmp| {
        unpack_tar_zst(archive, tmp).context("unpack the data template")?;
        log::debug!("unpacked the data template in {:.1?}", started.elapsed());
        Ok(())
    })
}

/// Fills `<cache_dir>/<name>` with `fill` unless a complete copy is there. The copy is
/// made in a temporary sibling, marked complete, and renamed into place, so a crash
/// mid-way never leaves a half-made directory that looks whole.
fn unpacked_once(cache_dir: &Path, name: &str, fill: impl FnOnce(&Path) -> Result<()>) -> Result<PathBuf> {
    const COMPLETE: &str = ".pglite-complete";
    let dir = cache_dir.join(name);
    if dir.join(COMPLETE).is_file() {
        return Ok(dir);
    }
    fs::create_dir_all(cache_dir).with_context(|| format!("create cache directory {}", cache_dir.display()))?;
    let tmp = tempfile::Builder::new()
        .prefix(".unpack-")
        .tempdir_in(cache_dir)
        .with_context(|| format!("create a temporary directory in {}", cache_dir.display()))?;
    fill(tmp.path()).with_context(|| format!("unpack {name}"))?;
    fs::write(tmp.path().join(COMPLETE), "")?;
    if dir.exists() && !dir.join(COMPLETE).is_file() {
        // Left by an interrupted or older copy: not trustworthy, replace it.
        let _ = fs::remove_dir_all(&dir);
    }
    match fs::rename(tmp.path(), &dir) {
        Ok(()) => {
            let _ = tmp.keep();
            Ok(dir)
        }
        // Another process finished first: use its copy.
        Err(_) if dir.join(COMPLETE).is_file() => Ok(dir),
        Err(e) => Err(e).with_context(|| format!("move {name} to {}", dir.display())),
    }
}

/// The template PGDATA archive (tar.zst).
pub fn pgdata_template() -> Result<&'static [u8]> {
    pglite_oxide_assets::pgdata_template_archive()
        .context("pglite-oxide-assets was built without its PGDATA template")
}

/// Unpacks a tar.zst archive into a host directory (entries with `..` are skipped).
pub fn unpack_tar_zst(archive: &[u8], dest: &Path) -> Result<()> {
    let decoder = zstd::stream::read::Decoder::new(archive).context("open zstd stream")?;
    let mut tar = tar::Archive::new(decoder);
    for entry in tar.entries().context("read tar entries")? {
        let mut entry = entry.context("read tar entry")?;
        let path = entry.path().context("tar entry path")?.into_owned();
        let path = path.strip_prefix("./").unwrap_or(&path).to_path_buf();
        if path.as_os_str().is_empty() || path.components().any(|c| matches!(c, std::path::Component::ParentDir)) {
            continue;
        }
        let target = dest.join(&path);
        let kind = entry.header().entry_type();
        if kind.is_dir() {
            fs::create_dir_all(&target)?;
        } else if kind.is_file() {
            if let Some(parent) = target.parent() {
                fs::create_dir_all(parent)?;
            }
            let mut out = fs::File::create(&target).with_context(|| format!("create {}", target.display()))?;
            std::io::copy(&mut entry, &mut out).with_context(|| format!("write {}", target.display()))?;
        }
    }
    Ok(())
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn parse_sha256(text: &str) -> Result<[u8; 32]> {
    let text = text.trim();
    let mut out = [0u8; 32];
    anyhow::ensure!(text.len() == 64, "bad module hash {text:?}");
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).context("bad module hash")?;
    }
    Ok(out)
}
