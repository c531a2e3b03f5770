//! The data directory behind `/pgdata`: in memory, over the template (copy on write),
//! or a host directory, initialised from the template on first use (atomically) and
//! held with an exclusive lock while the port runs.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use virtual_fs::{AsyncWriteExt, FileSystem};

use crate::assets;
use crate::config::DataLocation;
use crate::host_dir::HostDir;

/// Another port holds this directory; the port exits with status 4.
#[derive(Debug)]
pub struct DataDirInUse(pub PathBuf);

impl std::fmt::Display for DataDirInUse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "data directory {} is in use by another pglite-port", self.0.display())
    }
}

impl std::error::Error for DataDirInUse {}

pub enum DataDir {
    Memory(Arc<dyn FileSystem + Send + Sync>),
    /// The open directory carries the lock; dropping it releases the directory.
    Directory { path: PathBuf, _lock: File },
}

impl DataDir {
    /// `template` is the unpacked template directory (see `assets::pgdata_template_dir`).
    pub fn open(location: &DataLocation, template: &Path, rt: &tokio::runtime::Handle) -> Result<Self> {
        match location {
            DataLocation::Memory => Ok(DataDir::Memory(memory_from_template(template, rt)?)),
            DataLocation::Directory(path) => open_directory(path),
        }
    }

    /// The filesystem to mount at `/pgdata`.
    pub fn filesystem(&self, rt: &tokio::runtime::Handle) -> Result<Arc<dyn FileSystem + Send + Sync>> {
        match self {
            DataDir::Memory(fs) => Ok(fs.clone()),
            DataDir::Directory { path, .. } => Ok(Arc::new(HostDir::new(rt, path)?)),
        }
    }
}

/// An in-memory data directory over the unpacked template: files are read from the
/// template until PostgreSQL writes them, then copied into memory (copy on write), so
/// a start copies nothing and memory holds only what changed. The template itself is
/// never written: the overlay writes only to its in-memory layer.
fn memory_from_template(template: &Path, rt: &tokio::runtime::Handle) -> Result<Arc<dyn FileSystem + Send + Sync>> {
    let base = HostDir::new(rt, template).context("open the data template")?;
    let memory = virtual_fs::mem_fs::FileSystem::default();
    // pg_wal is rewritten at every start: copying it up through the overlay costs more
    // than copying it in now.
    create_dir_all(&memory, Path::new("/pg_wal"))?;
    copy_into(&memory, &template.join("pg_wal"), Path::new("/pg_wal"), rt)?;
    let overlay = virtual_fs::OverlayFileSystem::new(memory, [base]);
    Ok(Arc::new(overlay))
}

fn copy_into(fs: &dyn FileSystem, host: &Path, guest: &Path, rt: &tokio::runtime::Handle) -> Result<()> {
    for entry in fs::read_dir(host).with_context(|| format!("read {}", host.display()))? {
        let entry = entry?;
        let target = guest.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            create_dir_all(fs, &target)?;
            copy_into(fs, &entry.path(), &target, rt)?;
        } else {
            let data = read_for_memory(&entry.path()).with_context(|| format!("read {}", entry.path().display()))?;
            let mut file = fs
                .new_open_options()
                .write(true)
                .create(true)
                .truncate(true)
                .open(&target)
                .with_context(|| format!("create {} in memory", target.display()))?;
            rt.block_on(file.write_all(&data)).with_context(|| format!("write {} into memory", target.display()))?;
        }
    }
    Ok(())
}

/// What of a file must be held in memory: all of it, but for a WAL segment only its
/// written part. The template's segment is 16 MiB of which 4.6 MiB hold WAL and the rest
/// is the zeros PostgreSQL filled it with ahead of use. PostgreSQL reads no further than
/// the end of the log and appends after it, so one zero WAL page is kept past the last
/// record (the end of the log is found there) and the file grows as WAL is written.
fn read_for_memory(path: &Path) -> std::io::Result<Vec<u8>> {
    let is_segment = path
        .file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.len() == 24 && n.bytes().all(|b| b.is_ascii_hexdigit()));
    if !is_segment {
        return fs::read(path);
    }
    let file = File::open(path)?;
    let len = written_len(&file, file.metadata()?.len())?;
    let mut data = vec![0u8; len as usize];
    std::os::unix::fs::FileExt::read_exact_at(&file, &mut data, 0)?;
    Ok(data)
}

/// A WAL segment's written pages are a prefix (each starts with a non-zero page
/// header; the rest of the segment is zero-filled), found by bisection instead of
/// reading 16 MiB; plus one zero page.
fn written_len(file: &File, len: u64) -> std::io::Result<u64> {
    const WAL_PAGE: u64 = 8192;
    let mut page = vec![0u8; WAL_PAGE as usize];
    // Pages below `written` hold WAL; pages from `zero` on are zeros.
    let (mut written, mut zero) = (0, len / WAL_PAGE);
    while written < zero {
        let mid = (written + zero) / 2;
        std::os::unix::fs::FileExt::read_exact_at(file, &mut page, mid * WAL_PAGE)?;
        if page.iter().all(|&b| b == 0) {
            zero = mid;
        } else {
            written = mid + 1;
        }
    }
    Ok(((written + 1) * WAL_PAGE).min(len))
}

fn create_dir_all(fs: &dyn FileSystem, path: &Path) -> Result<()> {
    let mut at = std::path::PathBuf::from("/");
    for part in path.components().skip(1) {
        at.push(part);
        match fs.create_dir(&at) {
            Ok(()) | Err(virtual_fs::FsError::AlreadyExists) => {}
            Err(e) => return Err(e).with_context(|| format!("create {} in memory", at.display())),
        }
    }
    Ok(())
}

fn open_directory(path: &Path) -> Result<DataDir> {
    if !path.join("PG_VERSION").is_file() {
        initialise(path)?;
    }
    let dir = File::open(path).with_context(|| format!("open data directory {}", path.display()))?;
    match dir.try_lock() {
        Ok(()) => {}
        Err(fs::TryLockError::WouldBlock) => return Err(DataDirInUse(path.to_path_buf()).into()),
        Err(fs::TryLockError::Error(e)) => {
            return Err(e).with_context(|| format!("lock data directory {}", path.display()))
        }
    }
    // We hold the only lock, so a postmaster.pid left by a killed port is stale.
    let _ = fs::remove_file(path.join("postmaster.pid"));
    Ok(DataDir::Directory { path: path.to_path_buf(), _lock: dir })
}

/// Unpacks the template beside `path` and renames it into place, so a crash mid-way
/// never leaves a half-made data directory. An existing empty directory is replaced.
fn initialise(path: &Path) -> Result<()> {
    if path.exists() {
        let mut entries = fs::read_dir(path).with_context(|| format!("read {}", path.display()))?;
        if entries.next().is_some() {
            bail!(
                "{} exists, is not empty, and is not a PostgreSQL data directory (no PG_VERSION)",
                path.display()
            );
        }
    }
    let parent = path.parent().context("data directory has no parent")?;
    fs::create_dir_all(parent).with_context(|| format!("create {}", parent.display()))?;
    let tmp = tempfile::Builder::new()
        .prefix(".pglite-init-")
        .tempdir_in(parent)
        .with_context(|| format!("create a temporary directory in {}", parent.display()))?;
    assets::unpack_tar_zst(assets::pgdata_template()?, tmp.path()).context("unpack the data directory template")?;
    File::open(tmp.path())?.sync_all()?;
    match fs::rename(tmp.path(), path) {
        Ok(()) => {
            let _ = tmp.keep();
            log::info!("initialised data directory {}", path.display());
            Ok(())
        }
        // Another port initialised it at the same moment: use theirs.
        Err(_) if path.join("PG_VERSION").is_file() => Ok(()),
        Err(e) => Err(e).with_context(|| format!("move the new data directory to {}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_written_part_of_a_wal_segment_is_read() {
        let tmp = tempfile::tempdir().unwrap();
        let mut segment = vec![0u8; 16 << 20];
        segment[..20_000].fill(7);
        for name in ["000000010000000000000001", "pg_control"] {
            fs::write(tmp.path().join(name), &segment).unwrap();
        }
        // 20,000 bytes end in the third 8 KiB page; one zero page follows.
        let wal = read_for_memory(&tmp.path().join("000000010000000000000001")).unwrap();
        assert_eq!(wal, segment[..4 * 8192]);
        assert_eq!(read_for_memory(&tmp.path().join("pg_control")).unwrap(), segment);
    }

    #[test]
    fn directory_is_created_from_template_and_locked() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("data");
        let first = open_directory(&path).unwrap();
        assert!(path.join("PG_VERSION").is_file());
        let second = open_directory(&path);
        assert!(second.err().unwrap().downcast_ref::<DataDirInUse>().is_some());
        drop(first);
        assert!(open_directory(&path).is_ok());
        let leftovers: Vec<_> = fs::read_dir(tmp.path()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temporary directories are left behind");
    }

    #[test]
    fn refuses_a_foreign_non_empty_directory() {
        let tmp = tempfile::tempdir().unwrap();
        fs::write(tmp.path().join("notes.txt"), "mine").unwrap();
        let err = open_directory(tmp.path()).err().unwrap();
        assert!(err.to_string().contains("not a PostgreSQL data directory"));
        assert!(tmp.path().join("notes.txt").is_file());
    }
}
