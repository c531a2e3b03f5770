//! The guest's timed waits, cut short for a cancel.
//!
//! Why: PostgreSQL sleeps in latch waits (`pg_sleep`, and other waits with a timeout),
//! and on a server a cancel's signal handler sets the latch, which ends the wait. Inside
//! WASIX nothing ends it early: a blocked `epoll_wait`, `poll_oneoff` or `thread_sleep`
//! returns only when its timeout does (WASIX's deep sleep lets no signal through). Every
//! such timeout is a `sleep_now` of the task manager, so the runtime's task manager is
//! this wrapper, whose sleeps also end when [`SleepWaker::wake`] is called: the wait
//! returns as timed out, and PostgreSQL, back from WaitLatch, checks for interrupts and
//! raises the cancel (`interrupts`). A wait woken early for nothing is harmless:
//! PostgreSQL's waits re-check their condition.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use wasmer::{Memory, Module, StoreMut};
use wasmer_wasix::runtime::task_manager::tokio::TokioTaskManager;
use wasmer_wasix::runtime::task_manager::TaskWasm;
use wasmer_wasix::runtime::{SpawnType, VirtualTaskManager};
use wasmer_wasix::WasiThreadError;

/// Ends every guest sleep in progress.
#[derive(Clone, Debug, Default)]
pub struct SleepWaker(Arc<Notify>);

impl SleepWaker {
    pub fn wake(&self) {
        self.0.notify_waiters();
    }
}

/// Tokio's task manager, with sleeps that a [`SleepWaker`] ends early.
#[derive(Debug)]
pub struct WakeableTasks {
    inner: TokioTaskManager,
    waker: SleepWaker,
}

impl WakeableTasks {
    pub fn new(inner: TokioTaskManager, waker: SleepWaker) -> Self {
        Self { inner, waker }
    }
}

impl VirtualTaskManager for WakeableTasks {
    fn build_memory(&self, store: &mut StoreMut, spawn_type: SpawnType) -> Result<Option<Memory>, WasiThreadError> {
        self.inner.build_memory(store, spawn_type)
    }

    fn sleep_now(&self, time: Duration) -> Pin<Box<dyn Future<Output = ()> + Send + Sync + 'static>> {
        let sleep = self.inner.sleep_now(time);
        let notify = self.waker.0.clone();
        Box::pin(async move {
            let woken = notify.notified();
            tokio::select! {
                () = sleep => {}
                () = woken => {}
            }
        })
    }

    fn task_shared(
        &self,
        task: Box<dyn FnOnce() -> Pin<Box<dyn Future<Output = ()> + Send + 'static>> + Send + 'static>,
    ) -> Result<(), WasiThreadError> {
        self.inner.task_shared(task)
    }

    fn task_wasm(&self, task: TaskWasm) -> Result<(), WasiThreadError> {
        self.inner.task_wasm(task)
    }

    fn task_dedicated(&self, task: Box<dyn FnOnce() + Send + 'static>) -> Result<(), WasiThreadError> {
        self.inner.task_dedicated(task)
    }

    fn thread_parallelism(&self) -> Result<usize, WasiThreadError> {
        self.inner.thread_parallelism()
    }

    fn spawn_with_module(&self, module: Module, task: Box<dyn FnOnce(Module) + Send + 'static>) -> Result<(), WasiThreadError> {
        self.inner.spawn_with_module(module, task)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn a_sleep_ends_at_its_time_or_when_woken() {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let waker = SleepWaker::default();
        let tasks = WakeableTasks::new(TokioTaskManager::new(rt.handle().clone()), waker.clone());

        let started = Instant::now();
        rt.block_on(tasks.sleep_now(Duration::from_millis(50)));
        assert!(started.elapsed() >= Duration::from_millis(50), "an unwoken sleep lasts its time");

        let started = Instant::now();
        let sleep = tasks.sleep_now(Duration::from_secs(30));
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            waker.wake();
        });
        rt.block_on(sleep);
        assert!(started.elapsed() < Duration::from_secs(10), "a woken sleep ends at once");
    }
}
