//! Portals an ERROR left running.
//!
//! When an ERROR leaves PortalRun, its handler marks the portal failed and restores
//! `ActivePortal`. Some ERRORs reach the top without it: a native stack overflow unwinds
//! every wasm frame (`stack_limit`), and so, in this build, does an ERROR raised while a
//! transaction-control statement runs in an already aborted transaction (`BEGIN`, an
//! error, `ROLLBACK TO SAVEPOINT` of none, then Execute: a PostgreSQL 15 server goes on;
//! found by the fuzzer). The portal then stays active for good: PostgreSQL takes it for a
//! multi-transaction command, and every later query fails with "cannot drop active
//! portal", ROLLBACK included; on a shared backend every client's.
//!
//! So before the error recovery the host does what the handler would: the portal still
//! in `ActivePortal` (none is, at the top of the main loop, unless a handler was
//! skipped) is marked failed and `ActivePortal` cleared. The recovery itself runs with
//! `shmem_exit_inprogress` set, which makes the transaction's abort mark every other
//! active portal failed, as it does when a FATAL ends a running statement.

use anyhow::{Context, Result};
use wasmer::{Instance, Module, Store, TypedFunction};
use wasmer_wasix::WasiFunctionEnv;

use crate::guest_symbols::{peek, poke, DataSymbols};

pub struct StrayPortals {
    /// Addresses of `ActivePortal` (a pointer) and `shmem_exit_inprogress` (a bool).
    active_portal: u32,
    exit_in_progress: u32,
    mark_failed: TypedFunction<i32, ()>,
}

impl StrayPortals {
    /// None when the module lacks one of the exports (a `--wasm-path` module may).
    pub fn load(store: &mut Store, module: &Module, instance: &Instance) -> Option<Self> {
        let symbols = DataSymbols::new(module).ok()?;
        Some(Self {
            active_portal: symbols.address(store, instance, "ActivePortal").ok()?,
            exit_in_progress: symbols.address(store, instance, "shmem_exit_inprogress").ok()?,
            mark_failed: instance.exports.get_typed_function(&*store, "MarkPortalFailed").ok()?,
        })
    }

    /// Runs `recover`, PostgreSQL's error recovery at the top of its main loop, with
    /// no portal left active by the ERROR it recovers from.
    pub fn recover<T>(&self, store: &mut Store, env: &WasiFunctionEnv, recover: impl FnOnce(&mut Store) -> T) -> Result<T> {
        let mut pointer = [0; 4];
        peek(store, env, self.active_portal, &mut pointer)?;
        let stray = u32::from_le_bytes(pointer);
        if stray != 0 {
            log::debug!("an ERROR skipped PortalRun's handler: its portal is marked failed");
            self.mark_failed.call(store, stray as i32).context("MarkPortalFailed")?;
            poke(store, env, self.active_portal, &0u32.to_le_bytes())?;
        }
        poke(store, env, self.exit_in_progress, &[1])?;
        let result = recover(store);
        poke(store, env, self.exit_in_progress, &[0])?;
        Ok(result)
    }
}
