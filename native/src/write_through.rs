//! Writes to a host data directory that have reached the operating system when the
//! write returns.
//!
//! Wasmer's host filesystem hands each write to tokio's blocking pool and reports it
//! done at once. PostgreSQL then sends ReadyForQuery for a COMMIT whose WAL write may
//! still sit in that pool, and a `kill -9` at that moment loses an acknowledged commit
//! (seen under load in the durability test). This wrapper waits for every write to
//! leave the pool before it returns, which is what `write(2)` promises.

use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use virtual_fs::{
    AsyncRead, AsyncSeek, AsyncWrite, FileOpener, FileSystem, Metadata, OpenOptions, OpenOptionsConfig, ReadDir,
    VirtualFile,
};

/// A filesystem whose files' writes complete before they return.
#[derive(Debug)]
pub struct WriteThrough<F>(pub F);

impl<F: FileSystem> FileSystem for WriteThrough<F> {
    fn readlink(&self, path: &Path) -> virtual_fs::Result<PathBuf> {
        self.0.readlink(path)
    }
    fn read_dir(&self, path: &Path) -> virtual_fs::Result<ReadDir> {
        self.0.read_dir(path)
    }
    fn create_dir(&self, path: &Path) -> virtual_fs::Result<()> {
        self.0.create_dir(path)
    }
    fn create_symlink(&self, source: &Path, target: &Path) -> virtual_fs::Result<()> {
        self.0.create_symlink(source, target)
    }
    fn hard_link(&self, source: &Path, target: &Path) -> virtual_fs::Result<()> {
        self.0.hard_link(source, target)
    }
    fn remove_dir(&self, path: &Path) -> virtual_fs::Result<()> {
        self.0.remove_dir(path)
    }
    fn rename<'a>(&'a self, from: &'a Path, to: &'a Path) -> Pin<Box<dyn std::future::Future<Output = virtual_fs::Result<()>> + Send + 'a>> {
        self.0.rename(from, to)
    }
    fn metadata(&self, path: &Path) -> virtual_fs::Result<Metadata> {
        self.0.metadata(path)
    }
    fn symlink_metadata(&self, path: &Path) -> virtual_fs::Result<Metadata> {
        self.0.symlink_metadata(path)
    }
    fn remove_file(&self, path: &Path) -> virtual_fs::Result<()> {
        self.0.remove_file(path)
    }
    fn new_open_options(&self) -> OpenOptions<'_> {
        OpenOptions::new(self)
    }
}

impl<F: FileSystem> FileOpener for WriteThrough<F> {
    fn open(&self, path: &Path, conf: &OpenOptionsConfig) -> virtual_fs::Result<Box<dyn VirtualFile + Send + Sync + 'static>> {
        let file = self.0.new_open_options().options(conf.clone()).open(path)?;
        Ok(Box::new(WriteThroughFile(file)))
    }
}

#[derive(Debug)]
struct WriteThroughFile(Box<dyn VirtualFile + Send + Sync + 'static>);

/// Wakes the thread that waits for a write to leave the blocking pool.
struct Unpark(std::thread::Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

impl WriteThroughFile {
    /// Blocks until the inner file has no write in flight.
    fn settle(&mut self) -> io::Result<()> {
        let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
        let mut cx = Context::from_waker(&waker);
        loop {
            match Pin::new(&mut *self.0).poll_flush(&mut cx) {
                Poll::Ready(result) => return result,
                Poll::Pending => std::thread::park_timeout(std::time::Duration::from_millis(1)),
            }
        }
    }
}

impl AsyncWrite for WriteThroughFile {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match Pin::new(&mut *self.0).poll_write(cx, buf) {
            Poll::Ready(Ok(n)) => Poll::Ready(self.settle().map(|()| n)),
            other => other,
        }
    }
    fn poll_write_vectored(mut self: Pin<&mut Self>, cx: &mut Context<'_>, bufs: &[io::IoSlice<'_>]) -> Poll<io::Result<usize>> {
        match Pin::new(&mut *self.0).poll_write_vectored(cx, bufs) {
            Poll::Ready(Ok(n)) => Poll::Ready(self.settle().map(|()| n)),
            other => other,
        }
    }
    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0).poll_shutdown(cx)
    }
}

impl AsyncRead for WriteThroughFile {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut tokio::io::ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0).poll_read(cx, buf)
    }
}

impl AsyncSeek for WriteThroughFile {
    fn start_seek(mut self: Pin<&mut Self>, position: io::SeekFrom) -> io::Result<()> {
        Pin::new(&mut *self.0).start_seek(position)
    }
    fn poll_complete(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<u64>> {
        Pin::new(&mut *self.0).poll_complete(cx)
    }
}

impl VirtualFile for WriteThroughFile {
    fn last_accessed(&self) -> u64 {
        self.0.last_accessed()
    }
    fn last_modified(&self) -> u64 {
        self.0.last_modified()
    }
    fn created_time(&self) -> u64 {
        self.0.created_time()
    }
    fn set_times(&mut self, atime: Option<u64>, mtime: Option<u64>) -> virtual_fs::Result<()> {
        self.0.set_times(atime, mtime)
    }
    fn size(&self) -> u64 {
        self.0.size()
    }
    fn set_len(&mut self, new_size: u64) -> virtual_fs::Result<()> {
        self.0.set_len(new_size)
    }
    fn unlink(&mut self) -> virtual_fs::Result<()> {
        self.0.unlink()
    }
    fn is_open(&self) -> bool {
        self.0.is_open()
    }
    fn poll_read_ready(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.0).poll_read_ready(cx)
    }
    fn poll_write_ready(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.0).poll_write_ready(cx)
    }
}
