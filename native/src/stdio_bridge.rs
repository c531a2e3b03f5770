//! The guest's stdin, stdout and stderr, wired to frames.
//!
//! In stream mode PostgreSQL reads its client from fd 0 with blocking reads and writes
//! replies to fd 1. The guest's stdin hands over the bytes of [`Input`]s from a
//! [`Source`] (the port's stdin frames, or a list for `--sql`) and blocks when there are
//! none. Output is gathered and sent as one frame when the backend is about to wait for
//! input (its reply is complete), when it ends with a ReadyForQuery (where a server
//! flushes: the reply to a request pipelined ahead of a slow one comes at once), or
//! when it grows large, so every request gets its whole reply without further input.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::mem::ManuallyDrop;
use std::os::fd::{FromRawFd, RawFd};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use virtual_fs::{AsyncRead, AsyncSeek, AsyncWrite, VirtualFile};

use crate::frame::{write_frame, MAX_FRAME_LEN};
use crate::frontend_guard::IDLE_REPLY;
use crate::interrupts::StatementClock;
use crate::memory_pages;
use crate::output_gate::OutputGate;
use crate::stdin_frames::{EndReason, Input, StdinFrames};
use crate::wire;

/// Output larger than this is sent without waiting for the reply to finish.
const FLUSH_THRESHOLD: usize = 256 * 1024;
/// A buffer bigger than this was made by one big message: its memory goes back.
const BIG: usize = 2 * FLUSH_THRESHOLD;

/// Where finished output goes: stdout frames, or memory for `--sql`.
pub trait Sink: Send {
    fn send(&mut self, bytes: &[u8]) -> io::Result<()>;
}

/// The port's stdout, one `write` per frame.
///
/// Not `io::stdout()`: that is line-buffered, and it wrote a frame holding a newline
/// byte (text with a line break, a binary 10, a length of 10) in two pieces, up to the
/// last newline and then the rest: two wake-ups of the reader for one reply.
pub struct StdoutFrames(BufWriter<RawWriter>, OutputGate);

impl StdoutFrames {
    /// Frames on stdout, each waiting while `gate` is paused.
    pub fn new(gate: OutputGate) -> Self {
        Self::on_fd(libc::STDOUT_FILENO, gate)
    }

    /// Frames written to `fd`, which must stay open as long as this lives (it is not
    /// closed on drop).
    fn on_fd(fd: RawFd, gate: OutputGate) -> Self {
        // SAFETY: the File is never dropped (ManuallyDrop), so the descriptor is only
        // written through, never closed.
        let file = ManuallyDrop::new(unsafe { File::from_raw_fd(fd) });
        Self(BufWriter::with_capacity(FLUSH_THRESHOLD + 64 * 1024, RawWriter(file)), gate)
    }
}

/// A descriptor written with plain `write` calls, no buffering of its own.
struct RawWriter(ManuallyDrop<File>);

impl Write for RawWriter {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        (&*self.0).write(bytes)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Sink for StdoutFrames {
    fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.1.wait_open();
        write_frame(&mut self.0, bytes)?;
        self.0.flush()
    }
}

/// Collects the backend's bytes in memory.
#[derive(Clone, Default)]
pub struct Collect(pub Arc<Mutex<Vec<u8>>>);

impl Sink for Collect {
    fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.0.lock().map_err(|_| io::Error::other("poisoned"))?.extend_from_slice(bytes);
        Ok(())
    }
}

struct Output {
    sink: Box<dyn Sink>,
    pending: Vec<u8>,
    /// Before the session opens, the guest prints a banner: that is not protocol.
    attached: bool,
    tracker: wire::StatusTracker,
}

/// The guest's fd 1.
#[derive(Clone)]
pub struct GuestStdout(Arc<Mutex<Output>>);

impl std::fmt::Debug for GuestStdout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GuestStdout")
    }
}

impl GuestStdout {
    pub fn new(sink: Box<dyn Sink>) -> Self {
        Self(Arc::new(Mutex::new(Output {
            sink,
            pending: Vec::new(),
            attached: false,
            tracker: wire::StatusTracker::default(),
        })))
    }

    fn lock(&self) -> io::Result<std::sync::MutexGuard<'_, Output>> {
        self.0.lock().map_err(|_| io::Error::other("stdout lock poisoned"))
    }

    /// Sends `first` (the startup reply) as the first frame; later guest writes follow.
    pub fn attach(&self, first: &[u8]) -> io::Result<()> {
        let mut out = self.lock()?;
        out.tracker.observe(first);
        out.sink.send(first)?;
        out.attached = true;
        Ok(())
    }

    fn is_attached(&self) -> bool {
        self.0.lock().map(|out| out.attached).unwrap_or(false)
    }

    /// Sends what the backend has written so far as one frame.
    pub fn flush_frame(&self) -> io::Result<()> {
        let mut out = self.lock()?;
        flush_pending(&mut out)
    }

    /// Answers an IdleProbe, after what the backend has written so far.
    fn idle_reply(&self) -> io::Result<()> {
        let mut out = self.lock()?;
        flush_pending(&mut out)?;
        out.sink.send(IDLE_REPLY)
    }

    /// Answers a refused frame: ErrorResponse 08P01 and ReadyForQuery, as one frame.
    fn reject(&self, reason: &str) -> io::Result<()> {
        let mut out = self.lock()?;
        flush_pending(&mut out)?;
        let mut reply = wire::error_response("08P01", reason);
        reply.extend(wire::ready_for_query(out.tracker.status()));
        out.sink.send(&reply)
    }
}

fn flush_pending(out: &mut Output) -> io::Result<()> {
    if out.pending.is_empty() {
        return Ok(());
    }
    let pending = std::mem::take(&mut out.pending);
    let result = pending
        .chunks(MAX_FRAME_LEN)
        .try_for_each(|chunk| out.sink.send(chunk));
    // The buffer is kept for the next reply, unless one big message made it big: that
    // memory goes back (a 100 MB value stayed in the port's heap for good before).
    if pending.capacity() <= BIG {
        out.pending = pending;
        out.pending.clear();
    } else {
        drop(pending);
        memory_pages::ask_for_heap_trim();
    }
    result
}

impl AsyncWrite for GuestStdout {
    fn poll_write(self: Pin<&mut Self>, _cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let result = self.lock().and_then(|mut out| {
            if !out.attached {
                log::debug!(target: "postgres", "{}", String::from_utf8_lossy(buf).trim_end());
                return Ok(buf.len());
            }
            out.tracker.observe(buf);
            out.pending.extend_from_slice(buf);
            if out.pending.len() >= FLUSH_THRESHOLD || out.tracker.at_ready() {
                flush_pending(&mut out)?;
            }
            Ok(buf.len())
        });
        Poll::Ready(result)
    }
    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// Where the guest's stdin takes its input from.
pub enum Source {
    /// A fixed list (`--sql`).
    List(VecDeque<Input>),
    /// The port's stdin frames, read on the backend's thread.
    Frames(Arc<StdinFrames>),
}

impl Source {
    /// An input available without waiting.
    fn ready(&mut self) -> Option<Input> {
        match self {
            Source::List(items) => Some(items.pop_front().unwrap_or(Input::End(EndReason::Eof))),
            Source::Frames(frames) => frames.queued(),
        }
    }

    fn wait(&mut self) -> Input {
        match self {
            Source::List(_) => Input::End(EndReason::Eof),
            Source::Frames(frames) => frames.next(),
        }
    }
}

struct InputState {
    source: Source,
    current: Vec<u8>,
    pos: usize,
    ended: Option<EndReason>,
}

/// The guest's fd 0.
#[derive(Clone)]
pub struct GuestStdin {
    state: Arc<Mutex<InputState>>,
    stdout: GuestStdout,
    clock: StatementClock,
}

impl std::fmt::Debug for GuestStdin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GuestStdin")
    }
}

impl GuestStdin {
    pub fn new(source: Source, stdout: GuestStdout, clock: StatementClock) -> Self {
        let state = InputState { source, current: Vec::new(), pos: 0, ended: None };
        Self { state: Arc::new(Mutex::new(state)), stdout, clock }
    }

    /// Why input ended, once it has.
    pub fn end_reason(&self) -> Option<EndReason> {
        self.state.lock().ok().and_then(|s| s.ended.clone())
    }

    /// Fills `buf` with at least one byte, blocking for the next frame; 0 means EOF.
    fn read_blocking(&self, buf: &mut [u8]) -> io::Result<usize> {
        // During `_start` the single-user loop reads stdin once: it must see EOF, so it
        // returns "alive" instead of eating the client's frames.
        if !self.stdout.is_attached() {
            return Ok(0);
        }
        let mut st = self.state.lock().map_err(|_| io::Error::other("stdin lock poisoned"))?;
        loop {
            if st.pos < st.current.len() {
                let n = buf.len().min(st.current.len() - st.pos);
                buf[..n].copy_from_slice(&st.current[st.pos..st.pos + n]);
                st.pos += n;
                return Ok(n);
            }
            if st.ended.is_some() {
                return Ok(0);
            }
            // What the last frame asked for is answered: send it before the next one
            // runs, which may be another client's request queued right behind.
            self.stdout.flush_frame()?;
            // Read to the end: a big frame's memory goes back before the wait.
            if std::mem::take(&mut st.current).capacity() > BIG {
                memory_pages::ask_for_heap_trim();
            }
            let next = match st.source.ready() {
                Some(item) => item,
                None => {
                    self.clock.idle();
                    st.source.wait()
                }
            };
            match next {
                Input::Data(bytes, number) => {
                    self.clock.frame_taken(number);
                    st.current = bytes;
                    st.pos = 0;
                }
                Input::Reject(reason) => self.stdout.reject(&reason)?,
                Input::Probe => self.stdout.idle_reply()?,
                Input::End(reason) => {
                    log::debug!("input ended: {reason:?}");
                    st.ended = Some(reason);
                }
            }
        }
    }
}

impl AsyncRead for GuestStdin {
    fn poll_read(self: Pin<&mut Self>, _cx: &mut Context<'_>, buf: &mut tokio::io::ReadBuf<'_>) -> Poll<io::Result<()>> {
        let result = self.read_blocking(buf.initialize_unfilled()).map(|n| buf.advance(n));
        Poll::Ready(result)
    }
}

/// The guest's fd 2: PostgreSQL's server log. Lines go to our log (stderr); the tail is
/// kept to explain a failed start.
#[derive(Clone, Default)]
pub struct GuestStderr {
    tail: Arc<Mutex<VecDeque<String>>>,
    partial: Arc<Mutex<Vec<u8>>>,
}

impl std::fmt::Debug for GuestStderr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GuestStderr")
    }
}

impl GuestStderr {
    pub fn tail(&self) -> String {
        self.tail.lock().map(|t| t.iter().cloned().collect::<Vec<_>>().join("\n")).unwrap_or_default()
    }
}

impl AsyncWrite for GuestStderr {
    fn poll_write(self: Pin<&mut Self>, _cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        if let (Ok(mut partial), Ok(mut tail)) = (self.partial.lock(), self.tail.lock()) {
            partial.extend_from_slice(buf);
            while let Some(nl) = partial.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = partial.drain(..=nl).collect();
                let line = String::from_utf8_lossy(&line).trim_end().to_string();
                if line.starts_with("FATAL") || line.starts_with("PANIC") {
                    log::error!(target: "postgres", "{line}");
                } else {
                    log::info!(target: "postgres", "{line}");
                }
                if tail.len() == 20 {
                    tail.pop_front();
                }
                tail.push_back(line);
            }
        }
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// The rest of what wasix asks of a file, identical for the three streams.
macro_rules! stream_file {
    ($ty:ty, read: $readable:expr) => {
        impl AsyncSeek for $ty {
            fn start_seek(self: Pin<&mut Self>, _position: io::SeekFrom) -> io::Result<()> {
                Ok(())
            }
            fn poll_complete(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<u64>> {
                Poll::Ready(Ok(0))
            }
        }
        impl VirtualFile for $ty {
            fn last_accessed(&self) -> u64 { 0 }
            fn last_modified(&self) -> u64 { 0 }
            fn created_time(&self) -> u64 { 0 }
            fn size(&self) -> u64 { 0 }
            fn set_len(&mut self, _new_size: u64) -> virtual_fs::Result<()> {
                Err(virtual_fs::FsError::PermissionDenied)
            }
            fn unlink(&mut self) -> virtual_fs::Result<()> { Ok(()) }
            fn poll_read_ready(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
                Poll::Ready(if $readable { Ok(1) } else { Err(io::ErrorKind::Unsupported.into()) })
            }
            fn poll_write_ready(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
                Poll::Ready(Ok(FLUSH_THRESHOLD))
            }
        }
    };
}

impl AsyncWrite for GuestStdin {
    fn poll_write(self: Pin<&mut Self>, _cx: &mut Context<'_>, _buf: &[u8]) -> Poll<io::Result<usize>> {
        Poll::Ready(Err(io::ErrorKind::Unsupported.into()))
    }
    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

macro_rules! write_only {
    ($ty:ty) => {
        impl AsyncRead for $ty {
            fn poll_read(self: Pin<&mut Self>, _cx: &mut Context<'_>, _buf: &mut tokio::io::ReadBuf<'_>) -> Poll<io::Result<()>> {
                Poll::Ready(Ok(()))
            }
        }
    };
}
write_only!(GuestStdout);
write_only!(GuestStderr);
stream_file!(GuestStdin, read: true);
stream_file!(GuestStdout, read: false);
stream_file!(GuestStderr, read: false);

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::{AsRawFd, OwnedFd};

    /// A socket pair that keeps each write a record of its own, so a read shows how
    /// the frame was written.
    fn records() -> (OwnedFd, OwnedFd) {
        let mut fds = [0; 2];
        // SAFETY: socketpair fills two new descriptors that we then own.
        assert_eq!(unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_SEQPACKET, 0, fds.as_mut_ptr()) }, 0);
        // SAFETY: both were just created and are owned by nothing else.
        unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
    }

    #[test]
    fn a_frame_with_newlines_is_written_in_one_piece() {
        let (reader, writer) = records();
        let body = b"D\0\0\0\x0a\0\x01\0\0\0\x0a line\nbreak\n and after".to_vec();
        StdoutFrames::on_fd(writer.as_raw_fd(), OutputGate::default()).send(&body).unwrap();

        let mut buf = [0u8; 256];
        // SAFETY: reads into a valid buffer of the length given.
        let n = unsafe { libc::read(reader.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        assert_eq!(n as usize, 4 + body.len(), "the whole frame in one write");
        assert_eq!(&buf[..4], &(body.len() as u32).to_be_bytes());
        assert_eq!(&buf[4..n as usize], &body[..]);
    }
}
