//! Holding the backend's output while the front end cannot take more.
//!
//! The front end may ask the port to pause its output (a PauseOutput packet, when the
//! client it writes to has stopped reading and too many of its bytes wait in the
//! BEAM) and later to resume it. While paused, the next stdout frame waits here, so
//! the guest blocks in its write, exactly as a server's backend blocks on the socket
//! of a client that does not read: memory stays bounded. The end of input opens the
//! gate for good, so a shutdown never waits for it.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};

#[derive(Clone, Default)]
pub struct OutputGate(Arc<(Mutex<Gate>, Condvar)>);

#[derive(Default)]
struct Gate {
    paused: bool,
    ended: bool,
}

impl OutputGate {
    pub fn pause(&self) {
        let mut gate = self.lock();
        gate.paused = !gate.ended;
    }

    pub fn resume(&self) {
        self.lock().paused = false;
        self.0 .1.notify_all();
    }

    /// Opens the gate for good: input has ended.
    pub fn end(&self) {
        self.lock().ended = true;
        self.resume();
    }

    /// Whether output is held now.
    pub fn paused(&self) -> bool {
        self.lock().paused
    }

    /// Returns once output may flow.
    pub fn wait_open(&self) {
        let mut gate = self.lock();
        while gate.paused {
            gate = self.0 .1.wait(gate).unwrap_or_else(|poisoned| poisoned.into_inner());
        }
    }

    fn lock(&self) -> MutexGuard<'_, Gate> {
        self.0 .0.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_paused_gate_holds_the_writer_until_resumed_and_the_end_opens_it_for_good() {
        let gate = OutputGate::default();
        gate.pause();
        let (tx, rx) = std::sync::mpsc::channel();
        let waiter = gate.clone();
        std::thread::spawn(move || {
            waiter.wait_open();
            tx.send(()).unwrap();
        });
        assert!(rx.recv_timeout(Duration::from_millis(100)).is_err(), "held while paused");
        gate.resume();
        assert!(rx.recv_timeout(Duration::from_secs(5)).is_ok(), "released on resume");
        gate.end();
        gate.pause();
        gate.wait_open();
    }
}
