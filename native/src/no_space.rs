//! A full disk reaches PostgreSQL as ENOSPC, so that it says what a server says
//! (`53100` "could not extend file ...: No space left on device", with its hint).
//!
//! Why: WASIX turns every host I/O error of a write into EIO (its `io::Error` to
//! `Errno` mapping has no case for a full disk), and PostgreSQL reports EIO as an
//! unexpected I/O error. The guest's files write through `host_dir`, which notes a
//! host ENOSPC or EDQUOT here; the write imports (`fd_write`, `fd_pwrite`,
//! `fd_allocate`) are wrapped so that the error they return for it is ENOSPC.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};

use wasmer::{Extern, Function, FunctionEnv, FunctionEnvMut, Imports, RuntimeError, StoreMut, Value};
use wasmer_wasix::runtime::{InstantiationHook, InstantiationState};
use wasmer_wasix::types::wasi::Errno;

/// A write failed for lack of space since the last wrapped call returned.
static NO_SPACE: AtomicBool = AtomicBool::new(false);

const WRAPPED: [&str; 3] = ["fd_write", "fd_pwrite", "fd_allocate"];
const MODULE: &str = "wasi_snapshot_preview1";

/// Notes a host error that means the disk (or quota) is full; returns it unchanged.
pub fn note(err: io::Error) -> io::Error {
    if matches!(err.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT)) {
        NO_SPACE.store(true, Ordering::Relaxed);
    }
    err
}

/// Wraps the write imports of every instance the runtime makes.
#[derive(Debug)]
pub struct NoSpaceHook;

impl InstantiationHook for NoSpaceHook {
    fn prepare_imports(
        &self,
        _module: &wasmer::Module,
        store: &mut StoreMut,
        imports: &mut Imports,
    ) -> anyhow::Result<InstantiationState> {
        for name in WRAPPED {
            if let Some(Extern::Function(original)) = imports.get_export(MODULE, name) {
                let ty = original.ty(store);
                let env = FunctionEnv::new(store, original);
                imports.define(MODULE, name, Function::new_with_env(store, &env, ty, call));
            }
        }
        Ok(InstantiationState::empty())
    }
}

/// The original import; its error becomes ENOSPC when a host write ran out of space.
fn call(mut env: FunctionEnvMut<Function>, args: &[Value]) -> Result<Vec<Value>, RuntimeError> {
    let original = env.data().clone();
    NO_SPACE.store(false, Ordering::Relaxed);
    let mut results = original.call(&mut env, args)?.into_vec();
    if let Some(Value::I32(errno)) = results.first_mut() {
        if *errno != Errno::Success as i32 && NO_SPACE.swap(false, Ordering::Relaxed) {
            *errno = Errno::Nospc as i32;
        }
    }
    Ok(results)
}
