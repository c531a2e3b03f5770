//! The data directory behind `/pgdata`: in memory, over the template (copy on write),
//! or a host directory, initialised from the template on first use (atomically) and
//! held with an exclusive lock while the port runs.
//!
//! "In memory" is the port's own memory, or files in a directory that outlives the port
//! (`--memory-dir`, a RAM-backed one in the library's use): the layer over the template
//! is then that directory, so a port killed mid-write is started again on it and
//! PostgreSQL's crash recovery finds every commit, as on a data directory.
//!
//! The template is the bundled one, or a stopped data directory of the user's
//! (`--template`, e.g. one with the app's migrations applied): an in-memory instance
//! over it is a clone that copies nothing up front. Such a template is held with a
//! shared lock while it is read, so no port can run on it (and change it) meanwhile.

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

/// A user's template directory is locked by a running port, or was not stopped cleanly.
#[derive(Debug)]
pub struct TemplateNotStopped(pub PathBuf, pub &'static str);

impl std::fmt::Display for TemplateNotStopped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "template {} {}", self.0.display(), self.1)
    }
}

impl std::error::Error for TemplateNotStopped {}

/// What a new data directory starts from.
pub enum Template {
    /// The bundled template, unpacked (see `assets::pgdata_template_dir`).
    Bundled(PathBuf),
    /// A stopped data directory of the user's.
    Directory(PathBuf),
}

pub enum DataDir {
    /// The open directories carry the locks: shared on a user's template, exclusive on
    /// the memory directory (with its path).
    Memory { fs: Arc<dyn FileSystem + Send + Sync>, _template_lock: Option<File>, memory_dir: Option<(File, PathBuf)> },
    /// The open directory carries the lock; dropping it releases the directory.
    Directory { path: PathBuf, _lock: File },
}

impl DataDir {
    /// `memory_dir`: where an in-memory instance keeps what it writes (None: the port's
    /// own memory).
    pub fn open(location: &DataLocation, template: &Template, memory_dir: Option<&Path>, rt: &tokio::runtime::Handle) -> Result<Self> {
        let (dir, template_lock) = match (location, template) {
            (DataLocation::Directory(path), _) => return open_directory(path, template),
            (DataLocation::Memory, Template::Bundled(dir)) => (dir, None),
            (DataLocation::Memory, Template::Directory(dir)) => (dir, Some(lock_template(dir)?)),
        };
        let (fs, memory_dir) = match memory_dir {
            None => (memory_from_template(dir, rt)?, None),
            Some(upper) => {
                let lock = lock_directory(upper)?;
                // As for a data directory: a postmaster.pid a killed port left is stale.
                let _ = fs::remove_file(upper.join("postmaster.pid"));
                (files_over_template(dir, upper, rt)?, Some((lock, upper.to_path_buf())))
            }
        };
        Ok(DataDir::Memory { fs, _template_lock: template_lock, memory_dir })
    }

    /// After a clean shutdown the in-memory data is done with: its memory directory
    /// goes (only a crash leaves it, for the next port to recover from).
    pub fn remove_memory_dir(&self) -> Result<()> {
        match self {
            DataDir::Memory { memory_dir: Some((_, dir)), .. } => match fs::remove_dir_all(dir) {
                // Already removed by whoever made it: what a clean shutdown wants.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                other => other.with_context(|| format!("remove memory directory {}", dir.display())),
            },
            _ => Ok(()),
        }
    }

    /// The filesystem to mount at `/pgdata`.
    pub fn filesystem(&self, rt: &tokio::runtime::Handle) -> Result<Arc<dyn FileSystem + Send + Sync>> {
        match self {
            DataDir::Memory { fs, .. } => Ok(fs.clone()),
            DataDir::Directory { path, .. } => Ok(Arc::new(HostDir::new(rt, path)?)),
        }
    }
}

/// Why PostgreSQL could not start on a data directory, and what to do, in one line,
/// read from its log: the cases a user meets (another major version, a damaged control
/// file or WAL, a directory it cannot write). None for anything else.
pub fn why_it_cannot_start(log: &str) -> Option<&'static str> {
    let has = |needle: &str| log.contains(needle);
    // First: a full disk also fails whatever start-up step wrote last.
    if has("No space left on device") {
        Some("its disk is full (No space left on device): free space on it; nothing committed is lost")
    } else if has("was initialized by PostgreSQL version") {
        Some("it was made by another PostgreSQL major version (this is 17): dump it with that version's pg_dump and load the dump into a new data directory")
    } else if has("PG_CONTROL_VERSION") || has("incorrect checksum in control file") || has("global/pg_control") {
        Some("its control file (global/pg_control) is damaged: restore the directory from a backup, or load a dump into a new one")
    } else if has("checkpoint record") || (has("pg_wal/") && has("No such file")) {
        Some("its write-ahead log (pg_wal) is missing or damaged: restore the directory from a backup, or load a dump into a new one")
    } else if has("Permission denied") || has("Read-only file system") {
        Some("it cannot be written (read-only, or another user's): make it writable by this user, or start from a copy")
    } else {
        None
    }
}

/// Holds a user's template with a shared lock (many clones may read it at once; a port
/// running on it holds it exclusively), after checking that it was stopped cleanly: a
/// clone of a directory caught mid-write could start from a torn state.
fn lock_template(dir: &Path) -> Result<File> {
    if !dir.join("PG_VERSION").is_file() {
        bail!("template {} is not a PostgreSQL data directory (no PG_VERSION)", dir.display());
    }
    let file = File::open(dir).with_context(|| format!("open template {}", dir.display()))?;
    match file.try_lock_shared() {
        Ok(()) => {}
        Err(fs::TryLockError::WouldBlock) => {
            return Err(TemplateNotStopped(dir.to_path_buf(), "is in use by a running instance: stop it first").into())
        }
        Err(fs::TryLockError::Error(e)) => return Err(e).with_context(|| format!("lock template {}", dir.display())),
    }
    if dir.join("postmaster.pid").exists() {
        return Err(TemplateNotStopped(
            dir.to_path_buf(),
            "was not stopped cleanly (postmaster.pid is there): start and stop it once as a data directory",
        )
        .into());
    }
    Ok(file)
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

/// The same over a host directory `upper` that outlives the port. Its `pg_wal` is
/// made from the template's only when it has none: after a crash it holds the WAL that
/// recovery replays. Made beside and renamed into place, so a crash mid-copy leaves
/// no half a WAL.
fn files_over_template(template: &Path, upper: &Path, rt: &tokio::runtime::Handle) -> Result<Arc<dyn FileSystem + Send + Sync>> {
    let wal = upper.join("pg_wal");
    if !wal.is_dir() {
        let fresh = upper.join(".pg_wal.new");
        let _ = fs::remove_dir_all(&fresh);
        fs::create_dir(&fresh).with_context(|| format!("create {}", fresh.display()))?;
        copy_dir(&template.join("pg_wal"), &fresh, read_for_memory).context("copy the template's WAL")?;
        fs::rename(&fresh, &wal).with_context(|| format!("create {}", wal.display()))?;
    }
    let base = HostDir::new(rt, template).context("open the data template")?;
    let files = HostDir::new(rt, upper).with_context(|| format!("open memory directory {}", upper.display()))?;
    Ok(Arc::new(virtual_fs::OverlayFileSystem::new(files, [base])))
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

fn open_directory(path: &Path, template: &Template) -> Result<DataDir> {
    if !path.join("PG_VERSION").is_file() {
        initialise(path, template)?;
    }
    let lock = lock_directory(path)?;
    // We hold the only lock, so a postmaster.pid left by a killed port is stale.
    let _ = fs::remove_file(path.join("postmaster.pid"));
    Ok(DataDir::Directory { path: path.to_path_buf(), _lock: lock })
}

/// Holds `path` (created if missing) exclusively while the returned file is open.
fn lock_directory(path: &Path) -> Result<File> {
    fs::create_dir_all(path).with_context(|| format!("create {}", path.display()))?;
    let dir = File::open(path).with_context(|| format!("open {}", path.display()))?;
    match dir.try_lock() {
        Ok(()) => Ok(dir),
        Err(fs::TryLockError::WouldBlock) => Err(DataDirInUse(path.to_path_buf()).into()),
        Err(fs::TryLockError::Error(e)) => Err(e).with_context(|| format!("lock {}", path.display())),
    }
}

/// Unpacks (or copies) the template beside `path` and renames it into place, so a
/// crash mid-way never leaves a half-made data directory. An existing empty directory
/// is replaced.
fn initialise(path: &Path, template: &Template) -> Result<()> {
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
    match template {
        Template::Bundled(_) => {
            assets::unpack_tar_zst(assets::pgdata_template()?, tmp.path()).context("unpack the data directory template")?
        }
        Template::Directory(dir) => {
            let _lock = lock_template(dir)?;
            copy_dir(dir, tmp.path(), |p| fs::read(p)).with_context(|| format!("copy template {}", dir.display()))?;
        }
    }
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

/// Copies the tree `from` into the directory `to`, each file's bytes as `read` gives them.
fn copy_dir(from: &Path, to: &Path, read: fn(&Path) -> std::io::Result<Vec<u8>>) -> std::io::Result<()> {
    for entry in fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            fs::create_dir(&target)?;
            copy_dir(&entry.path(), &target, read)?;
        } else {
            fs::write(&target, read(&entry.path())?)?;
        }
    }
    Ok(())
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
        let bundled = Template::Bundled(PathBuf::new());
        let first = open_directory(&path, &bundled).unwrap();
        assert!(path.join("PG_VERSION").is_file());
        let second = open_directory(&path, &bundled);
        assert!(second.err().unwrap().downcast_ref::<DataDirInUse>().is_some());
        // A running directory cannot be a template; a stopped one can.
        let err = lock_template(&path).err().unwrap();
        assert!(err.to_string().contains("is in use by a running instance"), "{err}");
        drop(first);
        let template = lock_template(&path).unwrap();
        assert!(open_directory(&path, &bundled).err().unwrap().downcast_ref::<DataDirInUse>().is_some());
        let copy = tmp.path().join("copy");
        drop(open_directory(&copy, &Template::Directory(path.clone())).unwrap());
        assert!(copy.join("PG_VERSION").is_file());
        drop(template);
        assert!(open_directory(&path, &bundled).is_ok());
        let leftovers: Vec<_> = fs::read_dir(tmp.path()).unwrap().collect();
        assert_eq!(leftovers.len(), 2, "no temporary directories are left behind");
    }

    #[test]
    fn a_directory_that_cannot_start_is_explained_in_one_line() {
        let cases = [
            ("DETAIL:  The data directory was initialized by PostgreSQL version 9, which is not compatible", "major version"),
            ("DETAIL:  The database cluster was initialized with PG_CONTROL_VERSION 1687907575", "control file"),
            ("LOG:  invalid checkpoint record\nPANIC:  could not locate a valid checkpoint record at 0/147A1A8", "write-ahead log"),
            ("FATAL:  could not open file \"global/pg_filenode.map\": Permission denied", "cannot be written"),
            ("LOG:  redo done at 0/1497128\nPANIC:  could not write to file \"pg_logical/replorigin_checkpoint.tmp\": No space left on device", "disk is full"),
        ];
        for (log, expected) in cases {
            let why = why_it_cannot_start(log).unwrap_or_default();
            assert!(why.contains(expected) && !why.contains('\n'), "{log} -> {why}");
        }
        assert_eq!(why_it_cannot_start("FATAL:  something else"), None);
    }

    #[test]
    fn refuses_a_foreign_non_empty_directory() {
        let tmp = tempfile::tempdir().unwrap();
        fs::write(tmp.path().join("notes.txt"), "mine").unwrap();
        let err = open_directory(tmp.path(), &Template::Bundled(PathBuf::new())).err().unwrap();
        assert!(err.to_string().contains("not a PostgreSQL data directory"));
        assert!(tmp.path().join("notes.txt").is_file());
    }
}
