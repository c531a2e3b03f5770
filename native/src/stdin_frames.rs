//! The port's stdin frames, read on the backend's own thread.
//!
//! The backend reads the next frame itself when it waits for input: a reader thread
//! handing frames over would add a thread wake-up to every round trip (measured ~15% of
//! a `SELECT 1` round trip through the pipes). While a statement runs nobody else would
//! read stdin, so a watcher thread does then, to act on a CancelRequest frame at once;
//! frames it reads that are not cancels wait in a queue for the backend. The same thread
//! enforces statement_timeout. It looks at the backend every 20 ms while it is idle, so
//! a cancel sent in a statement's first 20 ms can wait that long. SIGTERM and SIGINT
//! queue the end of input and wake a backend blocked on stdin. Work that must run while
//! the guest is still but need not delay a reply ([`StdinFrames::when_idle`]) is done
//! a step at a time while the backend waits and no frame is there.

use std::collections::VecDeque;
use std::fs::File;
use std::io;
use std::mem::ManuallyDrop;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::frame::{read_frame, ReadFrame, MAX_FRAME_LEN};
use crate::frontend_guard::{FrontendGuard, Verdict};
use crate::interrupts::StatementClock;
use crate::output_gate::OutputGate;
use crate::stdin_wait::{wait_readable, SpinThenSleep};

/// One item for the guest's stdin.
#[derive(Debug)]
pub enum Input {
    /// A frame's bytes and its number (see [`crate::frontend_guard::Verdict::Cancel`]).
    Data(Vec<u8>, u32),
    /// A frame refused by the [`FrontendGuard`]: answer 08P01 when the backend is idle.
    Reject(String),
    /// The front end asks whether everything before this was answered: it was, once
    /// the backend reads its next input, so answer then.
    Probe,
    End(EndReason),
}

/// Why the input ended; decides the exit status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndReason {
    Eof,
    Terminate,
    Signal,
    FrameTooLarge(u64),
    Truncated(String),
}

impl EndReason {
    pub fn exit_code(&self) -> i32 {
        match self {
            EndReason::Eof | EndReason::Terminate | EndReason::Signal => 0,
            EndReason::FrameTooLarge(_) | EndReason::Truncated(_) => 2,
        }
    }
}

/// The reader of fd 0, shared by the backend's thread (while it waits for input) and
/// the statement watcher (while a statement runs).
pub struct StdinFrames {
    reader: Mutex<Reader>,
    /// Frames the watcher read while a statement ran, and the end a signal asked for.
    queue: Mutex<VecDeque<Input>>,
    /// Written by the signal thread to wake a backend blocked on stdin.
    wake: (OwnedFd, OwnedFd),
    clock: StatementClock,
    idle_work: Mutex<Vec<IdleWork>>,
    /// While it holds the backend's reply, the ResumeOutput that opens it is read by the
    /// watcher: the backend's thread, blocked writing that reply, cannot read it.
    gate: OutputGate,
}

/// One step of work for the backend's thread while it waits for input, given when this
/// wait began (the guest ran before it, not since); says when it wants the next. It
/// runs while the guest is blocked reading its stdin, so it may touch the guest's memory.
pub type IdleWork = Box<dyn FnMut(Instant) -> Idle + Send>;

/// When an idle work wants its next step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Idle {
    /// At once, unless a frame came.
    More,
    /// Once the backend has waited this long in all (or at its next wait).
    At(Duration),
    /// At the backend's next wait.
    Rest,
    /// Never again.
    Done,
}

struct Reader {
    // Unbuffered: a byte buffered here would be invisible to poll().
    stdin: ManuallyDrop<File>,
    guard: FrontendGuard,
    ended: bool,
    /// The number of the last frame read that was not a cancel.
    numbered: u32,
    /// How the backend's thread waits for its next frame.
    waiter: SpinThenSleep,
    /// Paused and resumed by the front end's packets; opened for good at the end.
    gate: OutputGate,
}

impl StdinFrames {
    /// Takes over fd 0 and starts the watcher and signal threads. The backend's thread
    /// polls for its next frame for up to `spin` before it sleeps.
    pub fn start(clock: StatementClock, spin: Duration, gate: OutputGate) -> anyhow::Result<Arc<Self>> {
        let mut fds = [0; 2];
        // SAFETY: pipe() fills two new descriptors that we then own.
        if unsafe { libc::pipe(fds.as_mut_ptr()) } != 0 {
            return Err(io::Error::last_os_error()).context("create the wake-up pipe");
        }
        // SAFETY: both were just created and are owned by nothing else.
        let wake = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        let reader = Reader {
            // SAFETY: fd 0 stays open for the life of the process; ManuallyDrop never closes it.
            stdin: ManuallyDrop::new(unsafe { File::from_raw_fd(0) }),
            guard: FrontendGuard::default(),
            ended: false,
            numbered: 0,
            waiter: SpinThenSleep::new(spin),
            gate: gate.clone(),
        };
        let frames = Arc::new(Self {
            reader: Mutex::new(reader),
            queue: Mutex::default(),
            wake,
            clock,
            idle_work: Mutex::default(),
            gate: gate.clone(),
        });

        let watcher = frames.clone();
        std::thread::Builder::new()
            .name("statement-watch".into())
            .spawn(move || watcher.watch())
            .context("spawn the statement watcher")?;

        let mut signals = signal_hook::iterator::Signals::new([signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT])
            .context("install the SIGTERM/SIGINT handler")?;
        let on_signal = frames.clone();
        std::thread::Builder::new()
            .name("signals".into())
            .spawn(move || {
                if let Some(sig) = signals.forever().next() {
                    log::info!("signal {sig}: shutting down");
                    lock(&on_signal.queue).push_back(Input::End(EndReason::Signal));
                    gate.end();
                    // SAFETY: writes one byte from a valid buffer to the pipe we own.
                    unsafe { libc::write(on_signal.wake.1.as_raw_fd(), b"!".as_ptr().cast(), 1) };
                }
            })
            .context("spawn the signal thread")?;
        Ok(frames)
    }

    /// The next input for the backend, blocking until there is one. Called on the
    /// backend's thread when it waits for input (after `queued` found nothing and the
    /// reply so far was sent).
    pub fn next(&self) -> Input {
        let waiting_since = Instant::now();
        loop {
            if let Some(item) = self.queued() {
                return item;
            }
            let mut reader = lock(&self.reader);
            // The watcher may have queued a frame while we waited for the reader.
            if let Some(item) = self.queued() {
                return item;
            }
            if reader.ended {
                return Input::End(EndReason::Eof);
            }
            let fds = [reader.stdin.as_raw_fd(), self.wake.0.as_raw_fd()];
            let wake_at = self.work_while_idle(&fds, waiting_since);
            let timeout = wake_at.map(|at| at.saturating_sub(waiting_since.elapsed()));
            match reader.waiter.wait(&fds, timeout) {
                Ok(Some(0)) => {
                    let mut items = reader.read_one(&self.clock).into_iter();
                    if let Some(first) = items.next() {
                        lock(&self.queue).extend(items);
                        return first;
                    }
                }
                // Woken by a signal (its End is in the queue), or an idle work's time came.
                Ok(_) => continue,
                Err(e) => return reader.fail(e),
            }
        }
    }

    /// Has `work` done a step at a time whenever the backend waits for input and none is
    /// there, as it asks, until it says it is done. A frame that comes meanwhile waits
    /// for one step.
    pub fn when_idle(&self, work: IdleWork) {
        lock(&self.idle_work).push(work);
    }

    /// Runs the idle works' steps that are due; returns how long after `since` the
    /// earliest one wants its next step, if any does.
    fn work_while_idle(&self, fds: &[RawFd], since: Instant) -> Option<Duration> {
        let mut works = lock(&self.idle_work);
        let mut wake_at = None;
        let mut i = 0;
        while i < works.len() {
            match works[i](since) {
                // Checked only between steps: most calls only say when (a poll each
                // would cost every round trip a system call).
                Idle::More if matches!(wait_readable(fds, 0), Ok(None)) => continue,
                Idle::More => return None,
                Idle::At(at) => wake_at = Some(wake_at.map_or(at, |w: Duration| w.min(at))),
                Idle::Rest => {}
                Idle::Done => {
                    drop(works.remove(i));
                    continue;
                }
            }
            i += 1;
        }
        wake_at
    }

    /// An input already read (by the watcher) or queued (by a signal), if any.
    pub fn queued(&self) -> Option<Input> {
        lock(&self.queue).pop_front()
    }

    /// Reads stdin only while a statement runs or output is held (the backend's thread
    /// may be blocked writing a reply then, even between statements) and the backend is
    /// not reading it, and keeps the statement's time.
    fn watch(&self) {
        loop {
            let next_check = self.clock.check_timeout();
            if !self.clock.busy() && !self.gate.paused() {
                std::thread::sleep(next_check);
                continue;
            }
            let timeout_ms = i32::try_from(next_check.as_millis()).unwrap_or(i32::MAX).max(1);
            match wait_readable(&[0], timeout_ms) {
                Ok(Some(_)) => {}
                Ok(None) => continue,
                Err(e) => {
                    log::warn!("cancel watcher stops: {e}");
                    return;
                }
            }
            // The backend holds the reader while it waits for input: the data is its.
            let Ok(mut reader) = self.reader.try_lock() else {
                std::thread::sleep(Duration::from_millis(1));
                continue;
            };
            if reader.ended {
                return;
            }
            if !(self.clock.busy() || self.gate.paused()) || !matches!(wait_readable(&[0], 0), Ok(Some(_))) {
                continue;
            }
            let items = reader.read_one(&self.clock);
            lock(&self.queue).extend(items);
        }
    }
}

impl Reader {
    /// Reads one frame and says what it means for the backend: nothing for a
    /// CancelRequest (acted on here), the messages before a Terminate and then the end.
    fn read_one(&mut self, clock: &StatementClock) -> Vec<Input> {
        let item = match read_frame(&mut *self.stdin) {
            Ok(ReadFrame::Frame(frame)) => match self.guard.inspect(&frame) {
                Verdict::Cancel { first, last } => {
                    clock.cancel(first, last);
                    return Vec::new();
                }
                // Not numbered, like a cancel: the front end numbers only what it submits.
                Verdict::Probe => Input::Probe,
                // Acted on at once, even while a statement runs (it is what writes).
                Verdict::Pause => {
                    self.gate.pause();
                    return Vec::new();
                }
                Verdict::Resume => {
                    self.gate.resume();
                    return Vec::new();
                }
                Verdict::Untimed => {
                    clock.untimed(self.numbered.checked_add(1).unwrap_or(1));
                    return Vec::new();
                }
                Verdict::Forward { held, forward, terminate } => {
                    let frame = forwarded(frame, held, forward);
                    let number = self.number();
                    let data = (!frame.is_empty()).then(|| Input::Data(frame, number));
                    self.ended = terminate;
                    if terminate {
                        self.gate.end();
                    }
                    let end = terminate.then_some(Input::End(EndReason::Terminate));
                    return data.into_iter().chain(end).collect();
                }
                Verdict::Reject { held, forward, reason } => {
                    let frame = forwarded(frame, held, forward);
                    let number = self.number();
                    log::warn!("refused a stdin frame: {reason}");
                    let data = (!frame.is_empty()).then(|| Input::Data(frame, number));
                    return data.into_iter().chain([Input::Reject(reason)]).collect();
                }
            },
            Ok(ReadFrame::Eof) => Input::End(EndReason::Eof),
            Ok(ReadFrame::TooLarge(len)) => {
                eprintln!("pglite-port: stdin frame of {len} bytes exceeds the limit of {MAX_FRAME_LEN} bytes; shutting down");
                Input::End(EndReason::FrameTooLarge(len))
            }
            Err(e) => return vec![self.fail(e)],
        };
        if matches!(item, Input::End(_)) {
            self.ended = true;
            self.gate.end();
        }
        vec![item]
    }

    /// Numbers the frame just read (every frame but a cancel): the front end counts its
    /// frames the same way to aim its cancels. 0 is skipped when the count wraps: a
    /// cancel aimed at 0..=0 means whatever runs.
    fn number(&mut self) -> u32 {
        self.numbered = self.numbered.checked_add(1).unwrap_or(1);
        self.numbered
    }

    fn fail(&mut self, e: io::Error) -> Input {
        eprintln!("pglite-port: reading stdin failed: {e}; shutting down");
        self.ended = true;
        self.gate.end();
        Input::End(EndReason::Truncated(e.to_string()))
    }
}

/// `held` bytes, then the first `forward` bytes of `frame`.
fn forwarded(mut frame: Vec<u8>, held: Vec<u8>, forward: usize) -> Vec<u8> {
    frame.truncate(forward);
    if !held.is_empty() {
        frame.splice(0..0, held);
    }
    frame
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
