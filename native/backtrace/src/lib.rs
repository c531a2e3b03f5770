//! Stands in for the `backtrace` crate in this build (the `[patch.crates-io]` in the
//! top-level Cargo.toml), with only the part of its API that Wasmer uses:
//! `new_unresolved`, `frames`, `ip`, `From<Vec<BacktraceFrame>>`, `Clone`, `Debug`.
//!
//! Why: Wasmer captures a native backtrace for every wasm exception it allocates, and
//! PostgreSQL's PGlite build throws many (one per pgbench `-S` lookup on a vacuumed
//! table, one per ERROR): walking the stack took ~13% of the port's CPU time on that
//! query. Nobody reads
//! those backtraces unless a wasm trap is reported, so here a backtrace is empty unless
//! `PGLITE_WASM_BACKTRACE=1` is set; then the instruction pointers are collected with
//! the system unwinder, as the real crate does on Linux and macOS, and a trap's message
//! names its wasm frames again.

use std::sync::OnceLock;

/// Instruction pointers of a native stack, innermost first (empty unless enabled).
#[derive(Clone, Debug, Default)]
pub struct Backtrace {
    frames: Vec<BacktraceFrame>,
}

/// One native stack frame: only its instruction pointer.
#[derive(Clone, Debug)]
pub struct BacktraceFrame {
    ip: usize,
}

impl Backtrace {
    /// The current stack without symbols (they are never resolved here).
    pub fn new_unresolved() -> Self {
        if !enabled() {
            return Self::default();
        }
        Self { frames: unwind::ips().into_iter().map(|ip| BacktraceFrame { ip }).collect() }
    }

    pub fn frames(&self) -> &[BacktraceFrame] {
        &self.frames
    }
}

impl From<Vec<BacktraceFrame>> for Backtrace {
    fn from(frames: Vec<BacktraceFrame>) -> Self {
        Self { frames }
    }
}

impl BacktraceFrame {
    pub fn ip(&self) -> *mut std::ffi::c_void {
        self.ip as *mut std::ffi::c_void
    }
}

fn enabled() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| std::env::var_os("PGLITE_WASM_BACKTRACE").is_some_and(|v| v == "1"))
}

/// The system unwinder's walk (libgcc_s on Linux, libunwind on macOS).
mod unwind {
    use std::ffi::c_void;

    #[repr(C)]
    pub struct Context {
        _private: [u8; 0],
    }

    // _URC_NO_REASON: go on to the next frame.
    const NO_REASON: i32 = 0;

    extern "C" {
        fn _Unwind_Backtrace(trace: extern "C" fn(*mut Context, *mut c_void) -> i32, data: *mut c_void) -> i32;
        fn _Unwind_GetIP(context: *mut Context) -> usize;
    }

    extern "C" fn push(context: *mut Context, data: *mut c_void) -> i32 {
        // SAFETY: `data` is the Vec passed by `ips` below, alive for the whole walk, and
        // `context` is the unwinder's own for the frame it visits.
        let ips = unsafe { &mut *(data as *mut Vec<usize>) };
        ips.push(unsafe { _Unwind_GetIP(context) });
        NO_REASON
    }

    pub fn ips() -> Vec<usize> {
        let mut ips: Vec<usize> = Vec::new();
        // SAFETY: `push` only writes to the Vec it is given.
        unsafe { _Unwind_Backtrace(push, &mut ips as *mut Vec<usize> as *mut c_void) };
        ips
    }
}

