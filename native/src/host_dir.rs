//! A host directory for the guest whose files are read and written on the calling
//! thread.
//!
//! Wasmer's host filesystem opens every file as a tokio file, which hands each read,
//! write and seek to tokio's blocking pool: the backend's thread sleeps and another
//! thread wakes for every one of them (~530 thread switches in a warm start, one per
//! page read or written in a data directory), and a write is reported done before it
//! happened. Here a read is `read(2)` and a write is `write(2)`, done when they return.
//! Directory operations and metadata stay Wasmer's; opening a file resolves its path as
//! Wasmer does (`..` never climbs above the root).

use std::fs;
use std::io::{self, Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::path::{Component, Path, PathBuf};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::SystemTime;

use anyhow::{Context as _, Result};
use virtual_fs::{
    AsyncRead, AsyncSeek, AsyncWrite, FileOpener, FileSystem, FsError, Metadata, OpenOptions, OpenOptionsConfig,
    ReadDir, VirtualFile,
};

use crate::no_space;

/// `root` on the host, seen by the guest as the root of a mount.
#[derive(Debug)]
pub struct HostDir {
    root: PathBuf,
    /// Everything but opening files.
    dirs: virtual_fs::host_fs::FileSystem,
}

impl HostDir {
    pub fn new(rt: &tokio::runtime::Handle, root: &Path) -> Result<Self> {
        let dirs = virtual_fs::host_fs::FileSystem::new(rt.clone(), root)
            .with_context(|| format!("open {} for the guest", root.display()))?;
        let root = fs::canonicalize(root).with_context(|| format!("resolve {}", root.display()))?;
        Ok(Self { root, dirs })
    }

    /// The host path of a guest path: `..` cannot climb above the root.
    fn host_path(&self, path: &Path) -> virtual_fs::Result<PathBuf> {
        let path = virtual_fs::host_fs::normalize_path(path);
        let relative: PathBuf = path
            .components()
            .map(|c| match c {
                Component::Normal(part) => Ok(Some(part)),
                Component::RootDir | Component::CurDir => Ok(None),
                Component::Prefix(_) | Component::ParentDir => Err(FsError::InvalidInput),
            })
            .filter_map(|c| c.transpose())
            .collect::<virtual_fs::Result<_>>()?;
        Ok(self.root.join(relative))
    }
}

impl FileSystem for HostDir {
    fn readlink(&self, path: &Path) -> virtual_fs::Result<PathBuf> {
        self.dirs.readlink(path)
    }
    fn read_dir(&self, path: &Path) -> virtual_fs::Result<ReadDir> {
        self.dirs.read_dir(path)
    }
    fn create_dir(&self, path: &Path) -> virtual_fs::Result<()> {
        self.dirs.create_dir(path)
    }
    fn create_symlink(&self, source: &Path, target: &Path) -> virtual_fs::Result<()> {
        self.dirs.create_symlink(source, target)
    }
    fn hard_link(&self, source: &Path, target: &Path) -> virtual_fs::Result<()> {
        self.dirs.hard_link(source, target)
    }
    fn remove_dir(&self, path: &Path) -> virtual_fs::Result<()> {
        self.dirs.remove_dir(path)
    }
    fn rename<'a>(&'a self, from: &'a Path, to: &'a Path) -> Pin<Box<dyn std::future::Future<Output = virtual_fs::Result<()>> + Send + 'a>> {
        self.dirs.rename(from, to)
    }
    fn metadata(&self, path: &Path) -> virtual_fs::Result<Metadata> {
        self.dirs.metadata(path)
    }
    fn symlink_metadata(&self, path: &Path) -> virtual_fs::Result<Metadata> {
        self.dirs.symlink_metadata(path)
    }
    fn remove_file(&self, path: &Path) -> virtual_fs::Result<()> {
        self.dirs.remove_file(path)
    }
    fn new_open_options(&self) -> OpenOptions<'_> {
        OpenOptions::new(self)
    }
}

impl FileOpener for HostDir {
    fn open(&self, path: &Path, conf: &OpenOptionsConfig) -> virtual_fs::Result<Box<dyn VirtualFile + Send + Sync + 'static>> {
        let path = self.host_path(path)?;
        // std refuses truncate with append; truncating first makes append moot.
        let append = conf.append() && !conf.truncate();
        let file = fs::OpenOptions::new()
            .read(conf.read())
            .write(conf.write())
            .create_new(conf.create_new())
            .create(conf.create())
            .append(append)
            .truncate(conf.truncate())
            .open(&path)?;
        Ok(Box::new(HostFile { file, path, seek: None }))
    }
}

#[derive(Debug)]
struct HostFile {
    file: fs::File,
    path: PathBuf,
    /// The result of the seek started by `start_seek`.
    seek: Option<io::Result<u64>>,
}

impl HostFile {
    fn time(&self, get: impl Fn(&fs::Metadata) -> io::Result<SystemTime>) -> u64 {
        self.file
            .metadata()
            .and_then(|m| get(&m))
            .ok()
            .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos() as u64)
    }
}

impl AsyncRead for HostFile {
    fn poll_read(mut self: Pin<&mut Self>, _cx: &mut Context<'_>, buf: &mut tokio::io::ReadBuf<'_>) -> Poll<io::Result<()>> {
        let n = match self.file.read(buf.initialize_unfilled()) {
            Ok(n) => n,
            Err(e) => return Poll::Ready(Err(e)),
        };
        buf.advance(n);
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for HostFile {
    fn poll_write(mut self: Pin<&mut Self>, _cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Poll::Ready(self.file.write(buf).map_err(no_space::note))
    }
    fn poll_write_vectored(mut self: Pin<&mut Self>, _cx: &mut Context<'_>, bufs: &[io::IoSlice<'_>]) -> Poll<io::Result<usize>> {
        Poll::Ready(self.file.write_vectored(bufs).map_err(no_space::note))
    }
    fn is_write_vectored(&self) -> bool {
        true
    }
    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl AsyncSeek for HostFile {
    fn start_seek(mut self: Pin<&mut Self>, position: io::SeekFrom) -> io::Result<()> {
        let result = self.file.seek(position);
        self.seek = Some(result);
        Ok(())
    }
    fn poll_complete(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<u64>> {
        match self.seek.take() {
            Some(result) => Poll::Ready(result),
            None => Poll::Ready(self.file.stream_position()),
        }
    }
}

impl VirtualFile for HostFile {
    fn last_accessed(&self) -> u64 {
        self.time(fs::Metadata::accessed)
    }
    fn last_modified(&self) -> u64 {
        self.time(fs::Metadata::modified)
    }
    fn created_time(&self) -> u64 {
        self.time(fs::Metadata::created)
    }
    fn set_times(&mut self, atime: Option<u64>, mtime: Option<u64>) -> virtual_fs::Result<()> {
        let mut times = fs::FileTimes::new();
        let at = |nanos: u64| SystemTime::UNIX_EPOCH + std::time::Duration::from_nanos(nanos);
        if let Some(t) = atime {
            times = times.set_accessed(at(t));
        }
        if let Some(t) = mtime {
            times = times.set_modified(at(t));
        }
        self.file.set_times(times).map_err(|_| FsError::IOError)
    }
    fn size(&self) -> u64 {
        self.file.metadata().map_or(0, |m| m.len())
    }
    /// Growing reserves the space (posix_fallocate), as PostgreSQL's own
    /// `posix_fallocate` does when it extends a relation (WASIX's `fd_allocate` comes
    /// here): a full disk is an error now, not a later write that cannot be done.
    fn set_len(&mut self, new_size: u64) -> virtual_fs::Result<()> {
        let current = self.size();
        if new_size > current {
            let (Ok(offset), Ok(len)) = (libc::off_t::try_from(current), libc::off_t::try_from(new_size - current)) else {
                return Err(FsError::InvalidInput);
            };
            // SAFETY: the descriptor is this file's own, open for as long as `self`.
            match unsafe { libc::posix_fallocate(self.file.as_raw_fd(), offset, len) } {
                0 => return Ok(()),
                // A file system that cannot reserve space: extend as ftruncate does.
                libc::EOPNOTSUPP | libc::EINVAL => {}
                errno => return Err(no_space::note(io::Error::from_raw_os_error(errno)).into()),
            }
        }
        self.file.set_len(new_size).map_err(|e| no_space::note(e).into())
    }
    fn unlink(&mut self) -> virtual_fs::Result<()> {
        fs::remove_file(&self.path).map_err(Into::into)
    }
    fn poll_read_ready(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        let remaining = (|| {
            let at = self.file.stream_position()?;
            let len = self.file.metadata()?.len();
            Ok(len.saturating_sub(at) as usize)
        })();
        Poll::Ready(remaining)
    }
    fn poll_write_ready(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        Poll::Ready(Ok(8192))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread().build().unwrap()
    }

    #[test]
    fn reads_writes_and_seeks_land_in_the_host_file_at_once() {
        let rt = runtime();
        let dir = tempfile::tempdir().unwrap();
        let fs = HostDir::new(rt.handle(), dir.path()).unwrap();
        let mut file = fs.new_open_options().read(true).write(true).create(true).open("/a").unwrap();
        let mut cx = Context::from_waker(std::task::Waker::noop());
        assert!(matches!(Pin::new(&mut file).poll_write(&mut cx, b"hello world"), Poll::Ready(Ok(11))));
        // No flush, no runtime: the bytes are in the file when the write returns.
        assert_eq!(fs::read(dir.path().join("a")).unwrap(), b"hello world");
        Pin::new(&mut file).start_seek(io::SeekFrom::Start(6)).unwrap();
        assert!(matches!(Pin::new(&mut file).poll_complete(&mut cx), Poll::Ready(Ok(6))));
        let mut bytes = [0u8; 16];
        let mut buf = tokio::io::ReadBuf::new(&mut bytes);
        assert!(matches!(Pin::new(&mut file).poll_read(&mut cx, &mut buf), Poll::Ready(Ok(()))));
        assert_eq!(buf.filled(), b"world");
        assert_eq!(file.size(), 11);
    }

    #[test]
    fn paths_stay_inside_the_root() {
        let rt = runtime();
        let outer = tempfile::tempdir().unwrap();
        let root = outer.path().join("root");
        fs::create_dir(&root).unwrap();
        fs::write(outer.path().join("secret"), "outside").unwrap();
        fs::write(root.join("secret"), "inside").unwrap();
        let fs = HostDir::new(rt.handle(), &root).unwrap();
        let mut cx = Context::from_waker(std::task::Waker::noop());
        for path in ["/../secret", "/a/../../secret", "../secret"] {
            let mut file = fs.new_open_options().read(true).open(path).unwrap();
            let mut bytes = [0u8; 16];
            let mut buf = tokio::io::ReadBuf::new(&mut bytes);
            assert!(matches!(Pin::new(&mut file).poll_read(&mut cx, &mut buf), Poll::Ready(Ok(()))));
            assert_eq!(buf.filled(), b"inside", "{path}");
        }
    }
}
