//! Runaway recursion ends in an ERROR, as on a server, not in the backend's death.
//!
//! PostgreSQL's `check_stack_depth` measures the C stack, which in wasm is the shadow
//! stack in linear memory (the `__stack_pointer` global). Two things kept it from
//! guarding anything here. The PGlite build never sets its reference point
//! (`stack_base_ptr` stayed 0, so the check was off): [`set_base`] sets it where the
//! main loop starts. And compiled wasm keeps most locals in registers and native
//! frames, not on the shadow stack: nested json (`repeat('[', 200000)::jsonb`) or a
//! deep regex grows only the native stack, which runs out while the shadow stack has
//! hardly moved. Wasmer then traps with "call stack exhausted". The trap has unwound
//! every wasm frame, as PostgreSQL's own longjmp out of an ERROR does, so [`raise`]
//! reports the server's ERROR 54001 from the top (errstart, errcode, errmsg, errhint,
//! errfinish) and the usual error recovery follows: the transaction is aborted and
//! the session goes on. Inside a critical section errstart turns it into a PANIC, as
//! PostgreSQL would.
//!
//! `error_context_stack` is cleared before the ERROR is raised: it points at callbacks
//! in unwound frames (an ERROR raised during a Bind called one of them and the backend
//! died). The portal the trap left running is `stray_portals`' to fail.

use anyhow::{bail, Context, Result};
use wasmer::{Instance, Module, RuntimeError, Store, TypedFunction};
use wasmer_wasix::WasiFunctionEnv;

use crate::guest_symbols::{poke, DataSymbols};

/// `ERROR` in PostgreSQL 17's elog.h.
const ERROR: i32 = 21;
/// MAKE_SQLSTATE('5','4','0','0','1'): ERRCODE_STATEMENT_TOO_COMPLEX.
const STACK_DEPTH_EXCEEDED: i32 = 5 | (4 << 6) | (1 << 24);
/// Message, hint, file and function name, NUL-terminated, copied into the guest once.
const TEXTS: [&str; 4] = [
    "stack depth limit exceeded",
    "The statement nests too deeply for the 8 MiB native stack pglite runs PostgreSQL on; raising max_stack_depth does not lift this limit.",
    "pglite-port",
    "native stack",
];

/// The functions that raise a PostgreSQL ERROR, and the texts in guest memory.
pub struct StackLimit {
    set_base: TypedFunction<(), i32>,
    errstart: TypedFunction<(i32, i32), i32>,
    errcode: TypedFunction<i32, i32>,
    errmsg: TypedFunction<(i32, i32), i32>,
    errhint: TypedFunction<(i32, i32), i32>,
    errfinish: TypedFunction<(i32, i32, i32), ()>,
    texts: [i32; 4],
    /// The address of `error_context_stack`.
    error_context: u32,
}

impl StackLimit {
    /// The exports it needs; None when the module lacks one (then a native stack
    /// overflow still ends the backend).
    pub fn load(store: &mut Store, module: &Module, instance: &Instance) -> Option<Self> {
        let error_context = DataSymbols::new(module).ok()?.address(store, instance, "error_context_stack").ok()?;
        let e = &instance.exports;
        Some(Self {
            error_context,
            set_base: e.get_typed_function(store, "set_stack_base").ok()?,
            errstart: e.get_typed_function(store, "errstart").ok()?,
            errcode: e.get_typed_function(store, "errcode").ok()?,
            errmsg: e.get_typed_function(store, "errmsg").ok()?,
            errhint: e.get_typed_function(store, "errhint").ok()?,
            errfinish: e.get_typed_function(store, "errfinish").ok()?,
            texts: [0; 4],
        })
    }

    /// Sets PostgreSQL's stack reference point to the shadow stack pointer now (call
    /// it where the main loop starts), and copies the texts into guest memory while
    /// the guest's allocator is surely in a sane state.
    pub fn set_base(&mut self, store: &mut Store, malloc: &TypedFunction<i32, i32>, env: &WasiFunctionEnv) -> Result<()> {
        self.set_base.call(store).context("set_stack_base")?;
        for (slot, text) in self.texts.iter_mut().zip(TEXTS) {
            let bytes = [text.as_bytes(), b"\0"].concat();
            let ptr = malloc.call(store, bytes.len() as i32).context("malloc")?;
            if ptr <= 0 {
                bail!("guest malloc({}) failed", bytes.len());
            }
            poke(store, env, ptr as u32, &bytes)?;
            *slot = ptr;
        }
        Ok(())
    }

    /// Raises ERROR 54001 in the guest. Returns the error that leaves errfinish (a
    /// PostgreSQL ERROR unwinding to the host), for the caller's usual recovery.
    pub fn raise(&self, store: &mut Store, env: &WasiFunctionEnv) -> Result<RuntimeError> {
        let [message, hint, file, function] = self.texts;
        poke(store, env, self.error_context, &0u32.to_le_bytes())?;
        self.errstart.call(store, ERROR, 0).context("errstart")?;
        self.errcode.call(store, STACK_DEPTH_EXCEEDED).context("errcode")?;
        self.errmsg.call(store, message, 0).context("errmsg")?;
        self.errhint.call(store, hint, 0).context("errhint")?;
        match self.errfinish.call(store, file, 0, function) {
            Err(e) => Ok(e),
            Ok(()) => bail!("errfinish returned from an ERROR"),
        }
    }
}

/// Whether a trap is the native stack running out.
pub fn is_stack_exhausted(err: &RuntimeError) -> bool {
    err.clone().to_trap() == Some(wasmer_types::TrapCode::StackOverflow)
}
