//! Cancel and statement_timeout for a backend that gets no signals.
//!
//! PostgreSQL cancels a statement when a signal handler sets `QueryCancelPending` and
//! `InterruptPending`; the next CHECK_FOR_INTERRUPTS raises the error. Inside WASIX
//! neither the client's CancelRequest (the port has no postmaster) nor SIGALRM (nothing
//! fires the guest's interval timers) reaches it, so the host does what the handlers
//! would: it writes those flags into the guest's memory from another thread. Work that
//! checks for interrupts stops within milliseconds; a backend asleep in a timed wait
//! (`pg_sleep`) has that wait ended too ([`crate::guest_sleep`]), as the handler's
//! SetLatch would end it on a server.
//!
//! A [`StatementClock`] follows the backend: busy from the moment it takes an input
//! frame, idle when it waits for the next one. The thread that watches stdin while a
//! statement runs ([`crate::stdin_frames`]) also calls [`StatementClock::check_timeout`],
//! which cancels a statement that has been busy longer than the session's
//! `statement_timeout` (read live from the guest), with the indicator set so that the
//! error says "statement timeout".

use std::sync::atomic::{AtomicU32, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use wasmer::{Instance, Module, Store};
use wasmer_wasix::WasiFunctionEnv;

use crate::guest_sleep::SleepWaker;
use crate::guest_symbols::DataSymbols;

/// `STATEMENT_TIMEOUT` in PostgreSQL 17's `TimeoutId`.
const STATEMENT_TIMEOUT: u32 = 3;
/// `MAX_TIMEOUTS` (USER_TIMEOUT 13 + 10).
const MAX_TIMEOUTS: u32 = 23;
/// `sizeof(timeout_params)` on wasm32: index, active, indicator, handler, start_time,
/// fin_time, interval_in_ms.
const TIMEOUT_PARAMS_SIZE: u32 = 40;
const INDICATOR_OFFSET: u32 = 5;
/// How often the watchdog looks. It is never woken from the request path, which stays
/// a lock and a store; a statement_timeout fires up to this much late.
const TICK: Duration = Duration::from_millis(20);

/// Why a statement is cancelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    User,
    StatementTimeout,
}

/// Addresses of PostgreSQL's interrupt state in the guest's linear memory.
pub struct GuestInterrupts {
    /// The linear memory's base. Wasmer reserves the whole 4 GiB range of a 32-bit
    /// memory up front, so growing it never moves the base.
    base: usize,
    size: usize,
    interrupt_pending: u32,
    query_cancel_pending: u32,
    statement_timeout: u32,
    /// `all_timeouts[STATEMENT_TIMEOUT].indicator`, when the layout checks out.
    timeout_indicator: Option<u32>,
    /// Ends the guest's timed waits, so that a sleeping statement sees its cancel.
    sleeps: SleepWaker,
}

// SAFETY: `base` points into the guest's linear memory, which lives as long as the
// backend; every access goes through atomics on aligned, bounds-checked addresses.
unsafe impl Send for GuestInterrupts {}
unsafe impl Sync for GuestInterrupts {}

impl GuestInterrupts {
    /// Finds the exported globals; called once PostgreSQL has started.
    pub fn locate(store: &mut Store, module: &Module, instance: &Instance, env: &WasiFunctionEnv, sleeps: SleepWaker) -> Result<Self> {
        let symbols = DataSymbols::new(module)?;
        let mut address = |name: &str| symbols.address(&mut *store, instance, name);
        let interrupt_pending = address("InterruptPending")?;
        let query_cancel_pending = address("QueryCancelPending")?;
        let statement_timeout = address("StatementTimeout")?;
        // A static array: its export name carries a compiler suffix.
        let all_timeouts = instance
            .exports
            .iter()
            .find(|(name, _)| name.starts_with("all_timeouts."))
            .map(|(name, _)| name.clone())
            .map(|name| address(&name))
            .transpose()?;
        let view = env.data(&*store).try_memory_view(&*store).context("guest memory")?;
        let mut this = Self {
            base: view.data_ptr() as usize,
            size: view.data_size() as usize,
            interrupt_pending,
            query_cancel_pending,
            statement_timeout,
            timeout_indicator: None,
            sleeps,
        };
        // InitializeTimeouts numbers every slot: check the layout before writing into it.
        this.timeout_indicator = all_timeouts.filter(|&at| this.timeouts_layout_ok(at)).map(|at| at + STATEMENT_TIMEOUT * TIMEOUT_PARAMS_SIZE + INDICATOR_OFFSET);
        if this.timeout_indicator.is_none() {
            log::warn!("all_timeouts not found or not as expected: statement timeouts will read as user cancels");
        }
        Ok(this)
    }

    fn timeouts_layout_ok(&self, at: u32) -> bool {
        (0..MAX_TIMEOUTS).all(|i| self.load_u32(at + i * TIMEOUT_PARAMS_SIZE) == Some(i))
    }

    fn word(&self, addr: u32) -> Option<&AtomicU32> {
        let addr = addr as usize;
        if addr % 4 != 0 || addr + 4 > self.size {
            return None;
        }
        // SAFETY: in bounds and aligned (checked above); the memory outlives `self`.
        Some(unsafe { AtomicU32::from_ptr((self.base + addr) as *mut u32) })
    }

    fn byte(&self, addr: u32) -> Option<&AtomicU8> {
        let addr = addr as usize;
        if addr >= self.size {
            return None;
        }
        // SAFETY: in bounds; the memory outlives `self`.
        Some(unsafe { AtomicU8::from_ptr((self.base + addr) as *mut u8) })
    }

    fn load_u32(&self, addr: u32) -> Option<u32> {
        self.word(addr).map(|w| w.load(Ordering::SeqCst))
    }

    fn store_u32(&self, addr: u32, value: u32) {
        if let Some(w) = self.word(addr) {
            w.store(value, Ordering::SeqCst);
        }
    }

    /// The session's statement_timeout in ms (0 = none).
    pub fn statement_timeout_ms(&self) -> u64 {
        self.load_u32(self.statement_timeout).map_or(0, |v| v as i32).max(0) as u64
    }

    /// Does what StatementCancelHandler (or the statement timeout's handler) does.
    pub fn cancel(&self, reason: Reason) {
        if reason == Reason::StatementTimeout {
            if let Some(at) = self.timeout_indicator {
                if let Some(b) = self.byte(at) {
                    b.store(1, Ordering::SeqCst);
                }
            }
        }
        self.store_u32(self.query_cancel_pending, 1);
        self.store_u32(self.interrupt_pending, 1);
        self.sleeps.wake();
    }

    /// Withdraws a cancel the backend never acted on, so it cannot hit a later request.
    fn withdraw(&self) {
        self.store_u32(self.query_cancel_pending, 0);
        if let Some(b) = self.timeout_indicator.and_then(|at| self.byte(at)) {
            b.store(0, Ordering::SeqCst);
        }
    }
}

#[derive(Default)]
struct ClockState {
    interrupts: Option<Arc<GuestInterrupts>>,
    /// When the backend took the frame it works on; None while it waits for input.
    busy_since: Option<Instant>,
    /// A cancel was raised for the current frame.
    raised: bool,
    /// The number of the frame taken last.
    frame: u32,
    /// A cancel aimed at frames not taken yet (queued behind the current one).
    pending: Option<(u32, u32)>,
    /// The current frame's cancel came ahead of it: raised by the watcher, because
    /// PostgreSQL drops a cancel that arrives while it reads its command.
    deferred: bool,
    /// The frame the front end marked as its own (an Untimed packet), if still ahead.
    untimed: Option<u32>,
    /// The current frame is that one: statement_timeout does not apply to it.
    exempt: bool,
}

/// Where frame `n` stands against the range `first..=last`, in wrapping arithmetic.
fn position(n: u32, first: u32, last: u32) -> Position {
    if (n.wrapping_sub(first) as i32) < 0 {
        Position::Before
    } else if n.wrapping_sub(first) <= last.wrapping_sub(first) {
        Position::Inside
    } else {
        Position::After
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Position {
    Before,
    Inside,
    After,
}

/// Follows whether the backend is working on a frame, for cancels and timeouts.
#[derive(Clone, Default)]
pub struct StatementClock(Arc<Mutex<ClockState>>);

impl StatementClock {
    /// Arms cancels and statement_timeout until the guard is dropped. Drop it before
    /// the backend: the watcher pokes guest memory while a request runs, and a request
    /// the backend died in never ends (a use after free killed the port with SIGSEGV).
    #[must_use = "dropping the guard disarms at once"]
    pub fn install(&self, interrupts: GuestInterrupts) -> Armed {
        self.with(|st| st.interrupts = Some(Arc::new(interrupts)));
        Armed(self.clone())
    }

    fn with<T>(&self, f: impl FnOnce(&mut ClockState) -> T) -> T {
        let mut st = self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        f(&mut st)
    }

    /// The backend took frame `number`: a new request starts, a cancel raised for the
    /// previous one is withdrawn, and one aimed at this frame ahead of time is handed
    /// to the watcher to raise (see `check_timeout`).
    pub fn frame_taken(&self, number: u32) {
        self.with(|st| {
            between_requests(st, Some(Instant::now()));
            st.frame = number;
            st.exempt = st.untimed == Some(number);
            if st.untimed.is_some_and(|n| position(number, n, n) != Position::Before) {
                st.untimed = None;
            }
            if let Some((first, last)) = st.pending {
                match position(number, first, last) {
                    Position::Before => {}
                    Position::Inside => {
                        st.pending = None;
                        st.deferred = true;
                    }
                    Position::After => st.pending = None,
                }
            }
        });
    }

    /// Frame `number` is the front end's own work between clients (restoring a session,
    /// rolling back what a departed client left): the session's statement_timeout, a
    /// client's setting, must not cancel it.
    pub fn untimed(&self, number: u32) {
        self.with(|st| st.untimed = Some(number));
    }

    /// True while the backend works on a frame (from `frame_taken` to `idle`).
    pub fn busy(&self) -> bool {
        self.with(|st| st.busy_since.is_some())
    }

    /// The backend waits for input: nothing to cancel.
    pub fn idle(&self) {
        self.with(|st| between_requests(st, None));
    }

    /// A CancelRequest for the request in frames `first..=last` (0, 0: whatever runs):
    /// cancels it if it runs, remembers it if it is still queued, else ignores it, so a
    /// cancel never hits another client's request.
    pub fn cancel(&self, first: u32, last: u32) {
        self.with(|st| {
            let aim = if (first, last) == (0, 0) { Position::Inside } else { position(st.frame, first, last) };
            match aim {
                Position::Inside if st.busy_since.is_some() => raise(st),
                Position::Before => {
                    log::debug!("cancel for frames {first}..={last} kept until they run");
                    st.pending = Some((first, last));
                }
                _ => log::debug!("cancel requested with nothing of it running: ignored"),
            }
        });
    }

    /// Raises a cancel that came ahead of the running frame, or cancels the running
    /// statement if it has run past the session's statement_timeout; returns how long
    /// until it should be called again.
    pub fn check_timeout(&self) -> Duration {
        self.with(|st| {
            if std::mem::take(&mut st.deferred) && st.busy_since.is_some() {
                raise(st);
                return TICK;
            }
            // A cancel raised just before the backend went to sleep missed the wake.
            if let (true, Some(_), Some(i)) = (st.raised, st.busy_since, &st.interrupts) {
                i.sleeps.wake();
            }
            statement_timeout(st)
        })
    }
}

/// Cancels and statement_timeout stay armed while this lives (`StatementClock::install`).
pub struct Armed(StatementClock);

impl Drop for Armed {
    fn drop(&mut self) {
        self.0.with(|st| st.interrupts = None);
    }
}

/// Cancels the running statement if it has run past the session's statement_timeout.
fn statement_timeout(st: &mut ClockState) -> Duration {
    match (&st.interrupts, st.busy_since, st.raised || st.exempt) {
        (Some(i), Some(since), false) => {
            let limit = Duration::from_millis(i.statement_timeout_ms());
            let elapsed = since.elapsed();
            if !limit.is_zero() && elapsed >= limit {
                log::debug!("statement_timeout ({limit:?}) reached");
                i.cancel(Reason::StatementTimeout);
                st.raised = true;
                TICK
            } else if !limit.is_zero() {
                (limit - elapsed).min(TICK)
            } else {
                TICK
            }
        }
        _ => TICK,
    }
}

/// One request ends: a cancel raised for it and not acted on is withdrawn.
fn between_requests(st: &mut ClockState, busy_since: Option<Instant>) {
    if std::mem::take(&mut st.raised) {
        if let Some(i) = &st.interrupts {
            i.withdraw();
        }
    }
    st.busy_since = busy_since;
    st.deferred = false;
}

fn raise(st: &mut ClockState) {
    if let Some(i) = &st.interrupts {
        log::debug!("cancel requested");
        i.cancel(Reason::User);
        st.raised = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_positions_wrap_around() {
        assert_eq!(position(5, 7, 9), Position::Before);
        assert_eq!(position(8, 7, 9), Position::Inside);
        assert_eq!(position(10, 7, 9), Position::After);
        assert_eq!(position(u32::MAX, 1, 2), Position::Before);
        assert_eq!(position(1, u32::MAX, 1), Position::Inside);
        assert_eq!(position(2, u32::MAX, 1), Position::After);
    }
}
