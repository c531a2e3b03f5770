//! How a thread waits for one of a few descriptors to become readable, and how the
//! backend's thread waits for its next frame: it polls for a short window before it
//! sleeps.
//!
//! Why poll: a round trip through pglite wakes this process once, and on a virtual
//! machine waking a sleeping thread is dear (the writer's wake-up call and the
//! sleeper's return from the scheduler cost tens of microseconds each). When frames
//! come back to back (one client's next query, pgbench) the next one is usually there
//! within a few hundred microseconds; polling for it saved 15-50% of the time per
//! transaction (bench/round_trip_ladder.exs, docs/PERFORMANCE.md). The window only
//! applies while frames come that fast: a wait that outlasted it makes the next wait
//! sleep at once, until a gap shorter than the window is seen again, so an instance
//! used now and then does not burn a core.

use std::io;
use std::os::fd::RawFd;
use std::time::{Duration, Instant};

/// Polls for up to `window` before sleeping, while the gaps between frames are short.
#[derive(Debug)]
pub struct SpinThenSleep {
    window: Duration,
    /// Whether the last gap was shorter than the window.
    spin: bool,
}

impl SpinThenSleep {
    /// A zero window never polls.
    pub fn new(window: Duration) -> Self {
        Self { window, spin: false }
    }

    /// Waits until one of `fds` is readable (or closed) and returns its index; None
    /// when `timeout` (if any) passed first.
    pub fn wait(&mut self, fds: &[RawFd], timeout: Option<Duration>) -> io::Result<Option<usize>> {
        let start = Instant::now();
        if self.spin {
            let window = timeout.map_or(self.window, |t| t.min(self.window));
            loop {
                if let Some(ready) = wait_readable(fds, 0)? {
                    return Ok(Some(ready));
                }
                if start.elapsed() >= window {
                    break;
                }
                // The writer we wait for may be runnable on this very core: let it run.
                std::thread::yield_now();
            }
        }
        let remaining_ms = timeout.map_or(-1, |t| {
            let left = t.saturating_sub(start.elapsed());
            i32::try_from(left.as_micros().div_ceil(1000)).unwrap_or(i32::MAX)
        });
        let ready = wait_readable(fds, remaining_ms)?;
        // A timeout says nothing of the gaps between frames.
        if ready.is_some() {
            self.spin = start.elapsed() < self.window;
        }
        Ok(ready)
    }
}

/// Waits until one of `fds` is readable (or closed): its index, or None on timeout
/// (`timeout_ms` < 0 waits for ever).
pub fn wait_readable(fds: &[RawFd], timeout_ms: i32) -> io::Result<Option<usize>> {
    let mut polls: Vec<libc::pollfd> = fds.iter().map(|&fd| libc::pollfd { fd, events: libc::POLLIN, revents: 0 }).collect();
    loop {
        // SAFETY: `polls` is a valid array of pollfd for the length given.
        let n = unsafe { libc::poll(polls.as_mut_ptr(), polls.len() as libc::nfds_t, timeout_ms) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        return Ok(polls.iter().position(|p| p.revents != 0));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

    fn pipe() -> (OwnedFd, OwnedFd) {
        let mut fds = [0; 2];
        // SAFETY: pipe() fills two new descriptors that we then own.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        // SAFETY: both were just created and are owned by nothing else.
        unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
    }

    fn write_byte(fd: &OwnedFd) {
        // SAFETY: writes one byte from a valid buffer to a pipe we own.
        assert_eq!(unsafe { libc::write(fd.as_raw_fd(), b"x".as_ptr().cast(), 1) }, 1);
    }

    fn read_byte(fd: &OwnedFd) {
        let mut b = [0u8; 1];
        // SAFETY: reads one byte into a valid buffer from a pipe we own.
        assert_eq!(unsafe { libc::read(fd.as_raw_fd(), b.as_mut_ptr().cast(), 1) }, 1);
    }

    #[test]
    fn polls_only_after_a_short_gap() {
        let (r, w) = pipe();
        let mut waiter = SpinThenSleep::new(Duration::from_millis(50));
        assert!(!waiter.spin, "the first wait sleeps");

        write_byte(&w);
        assert_eq!(waiter.wait(&[r.as_raw_fd()], None).unwrap(), Some(0));
        read_byte(&r);
        assert!(waiter.spin, "a frame that was there at once makes the next wait poll");

        // A gap longer than the window: the poll gives up, and the next wait sleeps.
        let writer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(150));
            write_byte(&w);
            w
        });
        assert_eq!(waiter.wait(&[r.as_raw_fd()], None).unwrap(), Some(0));
        read_byte(&r);
        assert!(!waiter.spin, "a long gap stops the polling");
        drop(writer.join().unwrap());
    }

    #[test]
    fn a_zero_window_never_polls() {
        let (r, w) = pipe();
        let mut waiter = SpinThenSleep::new(Duration::ZERO);
        write_byte(&w);
        assert_eq!(waiter.wait(&[r.as_raw_fd()], None).unwrap(), Some(0));
        assert!(!waiter.spin);
    }

    #[test]
    fn a_wait_with_a_timeout_ends_empty_and_keeps_the_polling_state() {
        let (r, w) = pipe();
        let mut waiter = SpinThenSleep::new(Duration::from_millis(50));
        write_byte(&w);
        assert_eq!(waiter.wait(&[r.as_raw_fd()], None).unwrap(), Some(0));
        read_byte(&r);
        let started = Instant::now();
        assert_eq!(waiter.wait(&[r.as_raw_fd()], Some(Duration::from_millis(20))).unwrap(), None);
        assert!(started.elapsed() >= Duration::from_millis(20));
        assert!(waiter.spin, "a timeout is not a gap between frames");
        write_byte(&w);
        assert_eq!(waiter.wait(&[r.as_raw_fd()], Some(Duration::from_secs(10))).unwrap(), Some(0));
    }

    #[test]
    fn a_closed_writer_counts_as_readable() {
        let (r, w) = pipe();
        drop(w);
        assert_eq!(wait_readable(&[r.as_raw_fd()], -1).unwrap(), Some(0));
    }
}
