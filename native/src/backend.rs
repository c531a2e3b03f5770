//! One PostgreSQL backend inside Wasmer, driven through the PGlite exports:
//! instantiate, `_start`, open the session (startup packet), serve the protocol in
//! stream mode (guest stdin/stdout), recover from ERRORs, shut down cleanly.

use std::sync::Arc;

use anyhow::{bail, Context, Result};
use virtual_fs::FileSystem;
use wasmer::{Engine, Instance, Module, RuntimeError, Store, TypedFunction};
use wasmer_wasix::runtime::task_manager::tokio::TokioTaskManager;
use wasmer_wasix::runtime::PluggableRuntime;
use wasmer_wasix::{WasiEnvBuilder, WasiError, WasiFunctionEnv};

use crate::guest_fs::PGDATA;
use crate::guest_heap::HeapTrim;
use crate::guest_sleep::{SleepWaker, WakeableTasks};
use crate::side_modules::SideModules;
use crate::guest_symbols::{peek, poke, DataSymbols};
use crate::interrupts::GuestInterrupts;
use crate::memory_pages::ZeroPageSweep;
use crate::stack_limit::{self, StackLimit};
use crate::stray_portals::StrayPortals;
use crate::stdio_bridge::{GuestStderr, GuestStdin, GuestStdout};
use crate::wire;

const EXE_PATH: &str = "/bin/pglite";
/// `_start` and the main loop exit with 99 to say "alive, input ended".
const EXIT_ALIVE: i32 = 99;
/// The host-longjmp fallback: a PostgreSQL ERROR to recover from.
const EXIT_LONGJMP: i32 = 100;
/// `pgl_set_protocol_transport` mode: the backend reads fd 0 and writes fd 1.
const TRANSPORT_STREAM: i32 = 1;

/// The backend exited for good (FATAL, PANIC, or a trap that is not an ERROR).
#[derive(Debug)]
pub struct BackendDied {
    pub reason: String,
    pub log_tail: String,
}

impl std::fmt::Display for BackendDied {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the PostgreSQL backend died: {}", self.reason)?;
        if !self.log_tail.is_empty() {
            write!(f, "\nlast server log lines:\n{}", self.log_tail)?;
        }
        Ok(())
    }
}

impl std::error::Error for BackendDied {}

/// Everything a backend needs that outlives one instance.
pub struct Host {
    pub engine: Engine,
    pub module: Module,
    pub module_sha256: [u8; 32],
    pub wasix: Arc<PluggableRuntime>,
    pub fs: Arc<dyn FileSystem + Send + Sync>,
    /// `-c name=value` settings and flags for the postgres command line.
    pub postgres_args: Vec<String>,
    pub username: String,
    /// Ends the guest's timed waits (given to `wasix_runtime` too).
    pub sleeps: SleepWaker,
}

impl Host {
    pub fn wasix_runtime(
        rt: &tokio::runtime::Runtime,
        engine: &Engine,
        side_modules: Arc<SideModules>,
        sleeps: SleepWaker,
    ) -> Arc<PluggableRuntime> {
        let tasks = Arc::new(WakeableTasks::new(TokioTaskManager::new(rt.handle().clone()), sleeps));
        let mut runtime = PluggableRuntime::new(tasks);
        runtime.set_engine(engine.clone());
        runtime.set_module_cache(side_modules);
        runtime.with_instantiation_hook(crate::no_space::NoSpaceHook);
        Arc::new(runtime)
    }
}

/// The guest's three standard streams.
pub struct Stdio {
    pub stdin: GuestStdin,
    pub stdout: GuestStdout,
    pub stderr: GuestStderr,
}

struct Exports {
    start: TypedFunction<(), ()>,
    set_active: TypedFunction<i32, i32>,
    start_pglite: TypedFunction<(), ()>,
    force_host_recovery: Option<TypedFunction<i32, i32>>,
    run_atexit: Option<TypedFunction<(), ()>>,
    input_reset: TypedFunction<(), i32>,
    input_write: TypedFunction<(i32, i32), i32>,
    output_reset: TypedFunction<(), i32>,
    output_len: TypedFunction<(), i32>,
    output_read: TypedFunction<(i32, i32), i32>,
    malloc: TypedFunction<i32, i32>,
    free: TypedFunction<i32, ()>,
    get_port: TypedFunction<(), i32>,
    process_startup: TypedFunction<(i32, i32, i32), i32>,
    send_conn_data: TypedFunction<(), ()>,
    pq_flush: TypedFunction<(), ()>,
    main_loop: TypedFunction<(), ()>,
    send_ready: TypedFunction<(), ()>,
    recover_error: TypedFunction<(), ()>,
    get_stack_pointer: TypedFunction<(), i32>,
    set_stack_pointer: TypedFunction<i32, ()>,
    set_transport: TypedFunction<i32, i32>,
}

pub struct Backend {
    store: Store,
    module: Module,
    instance: Instance,
    env: WasiFunctionEnv,
    x: Exports,
    /// Turns a native stack overflow into ERROR 54001 (None: the module cannot).
    stack: Option<StackLimit>,
    /// Fails the portals an ERROR left running (None: the module cannot).
    portals: Option<StrayPortals>,
    stdout: GuestStdout,
    stderr: GuestStderr,
    active: bool,
}

enum Trap {
    Alive,
    PgError,
    /// The native stack ran out (`stack_limit`).
    StackExhausted,
    Exit(i32),
    Other(String),
}

fn classify(err: &RuntimeError) -> Trap {
    if let Some(WasiError::Exit(code)) = err.downcast_ref::<WasiError>() {
        return match code.raw() {
            EXIT_ALIVE => Trap::Alive,
            EXIT_LONGJMP => Trap::PgError,
            other => Trap::Exit(other),
        };
    }
    if stack_limit::is_stack_exhausted(err) {
        return Trap::StackExhausted;
    }
    let message = err.message();
    if message.contains("uncaught exception") {
        Trap::PgError
    } else if err.trace().is_empty() {
        Trap::Other(message)
    } else {
        // Only with PGLITE_WASM_BACKTRACE=1 (native/backtrace): the wasm frames, one a line.
        Trap::Other(err.to_string())
    }
}

impl Backend {
    /// Instantiates the module and runs PostgreSQL's start-up on `database`.
    pub fn start(host: &Host, database: &str, stdio: Stdio) -> Result<Self> {
        let mut store = Store::new(host.engine.clone());
        let mut builder = WasiEnvBuilder::new(EXE_PATH);
        builder.set_runtime(host.wasix.clone());
        builder.set_fs(host.fs.clone());
        builder.set_current_dir("/");
        builder.set_stdin(Box::new(stdio.stdin));
        builder.set_stdout(Box::new(stdio.stdout.clone()));
        builder.set_stderr(Box::new(stdio.stderr.clone()));
        // Guest paths resolve through preopens: "/" for everything, /pgdata for the data.
        builder
            .add_preopen_build(|p| p.directory("/").read(true).write(true).create(true))
            .context("preopen /")?;
        builder
            .add_preopen_build(|p| p.directory(PGDATA).alias(PGDATA.trim_start_matches('/')).read(true).write(true).create(true))
            .context("preopen /pgdata")?;
        for (key, value) in [
            ("PREFIX", "/"),
            ("PGDATA", PGDATA),
            ("PGSYSCONFDIR", PGDATA),
            ("PGUSER", host.username.as_str()),
            ("PGDATABASE", database),
            ("MODE", "REACT"),
            ("REPL", "N"),
            ("PGCLIENTENCODING", "UTF8"),
            ("LC_CTYPE", "C.UTF-8"),
            ("TZ", "UTC"),
            ("PGTZ", "UTC"),
            ("PG_COLOR", "never"),
            ("HOME", "/home"),
        ] {
            builder.add_env(key, value);
        }
        builder.add_args(host.postgres_args.iter().cloned());
        builder.add_args(["-D", PGDATA, database]);
        let module_hash = wasmer_types_hash(host.module_sha256);
        let started = std::time::Instant::now();
        let (instance, env) = builder
            .instantiate_ext(host.module.clone(), module_hash, &mut store)
            .context("instantiate the PostgreSQL module")?;
        let x = Exports::load(&mut store, &instance)?;
        let stack = StackLimit::load(&mut store, &host.module, &instance);
        let portals = StrayPortals::load(&mut store, &host.module, &instance);
        seed_exec_path(&mut store, &host.module, &instance, &env)?;

        log::debug!("instantiated in {:.1?}", started.elapsed());
        let mut backend = Backend { store, module: host.module.clone(), instance, env, x, stack, portals, stdout: stdio.stdout, stderr: stdio.stderr, active: false };
        let started = std::time::Instant::now();
        backend.boot().map_err(|e| backend.explain(e))?;
        log::debug!("PostgreSQL started in {:.1?} after that", started.elapsed());
        Ok(backend)
    }

    fn boot(&mut self) -> Result<()> {
        let s = &mut self.store;
        ensure_zero(self.x.input_reset.call(s)?, "pgl_wasix_input_reset")?;
        ensure_zero(self.x.output_reset.call(s)?, "pgl_wasix_output_reset")?;
        // ERRORs unwind as wasm exceptions we catch, not as process exits.
        if let Some(force) = &self.x.force_host_recovery {
            force.call(s, 0).context("pgl_set_force_host_error_recovery")?;
        }
        self.x.set_active.call(s, 1).context("pgl_setPGliteActive(1)")?;
        self.active = true;
        // The guest zeroes its shared memory here: faulted in on another core meanwhile.
        match crate::guest_memory::populating(|| self.x.start.call(s)) {
            Ok(()) => {}
            Err(e) => match classify(&e) {
                Trap::Alive => {}
                _ => return Err(anyhow::Error::new(e).context("_start")),
            },
        }
        self.x.start_pglite.call(s).context("pgl_startPGlite")?;
        Ok(())
    }

    /// Adds the server log's tail to a start-up error.
    fn explain(&self, err: anyhow::Error) -> anyhow::Error {
        let tail = self.stderr.tail();
        match (tail.is_empty(), crate::data_dir::why_it_cannot_start(&tail)) {
            (true, _) => err,
            // The reason and what to do first, on the line users read.
            (false, Some(why)) => err.context(format!("PostgreSQL did not start:\n{tail}")).context(format!("the data directory cannot start: {why}")),
            (false, None) => err.context(format!("PostgreSQL did not start:\n{tail}")),
        }
    }

    /// Where to poke PostgreSQL's interrupt flags from another thread (after start-up);
    /// `sleeps` ends the guest's timed waits (the host's, given to its runtime).
    pub fn interrupts(&mut self, sleeps: SleepWaker) -> Result<GuestInterrupts> {
        GuestInterrupts::locate(&mut self.store, &self.module, &self.instance, &self.env, sleeps)
    }

    /// A sweep that hands back to the OS the pages of guest memory that hold only
    /// zeros. PostgreSQL zeroes its shared memory at start (calloc inside the guest),
    /// which made all of shared_buffers resident before a single page was used. Wasmer's
    /// linear memory is a private anonymous mapping, so a released page reads back as
    /// zeros.
    ///
    /// # Safety
    /// Step the sweep only while the guest does not run (it waits for input), and not
    /// after the backend is gone.
    pub unsafe fn zero_page_sweep(&mut self) -> Result<ZeroPageSweep> {
        let view = self.env.data(&self.store).try_memory_view(&self.store).context("guest memory")?;
        // SAFETY: the guest's linear memory, which stays where it is for the instance's
        // life (static style) and which Wasmer maps private and anonymous; the caller
        // steps the sweep only while nothing touches it.
        Ok(unsafe { ZeroPageSweep::new(std::slice::from_raw_parts(view.data_ptr(), view.data_size() as usize)) })
    }

    /// What hands the guest heap's free pages back to the OS a step at a time
    /// ([`HeapTrim`]), once the offset of the module's malloc state in its data is known
    /// ([`crate::guest_heap::allocator_state_offset`]: read from the module's code, it
    /// may come from another thread later).
    ///
    /// # Safety
    /// Step the trim only while the guest does not run (it waits for input), and not
    /// after the backend is gone.
    pub unsafe fn heap_trim(&mut self) -> Result<impl FnOnce(u32) -> HeapTrim + Send> {
        let view = self.env.data(&self.store).try_memory_view(&self.store).context("guest memory")?;
        let (base, data_base) = (view.data_ptr() as usize, DataSymbols::new(&self.module)?.memory_base());
        // SAFETY: the guest's memory, made by our tunables; the caller's promise is passed on.
        Ok(move |state_offset: u32| unsafe { HeapTrim::new(base as *const u8, data_base.saturating_add(state_offset)) })
    }

    pub fn log_tail(&self) -> String {
        self.stderr.tail()
    }

    /// Opens the session (the startup packet goes through the buffered transport),
    /// sends its reply as the first output frame, and switches to stream mode.
    pub fn open_session(&mut self, username: &str, database: &str) -> Result<Vec<u8>> {
        let packet = wire::startup_packet(username, database);
        self.push_input(&packet)?;
        let s = &mut self.store;
        let port = self.x.get_port.call(s).context("pgl_getMyProcPort")?;
        if port <= 0 {
            bail!("pgl_getMyProcPort returned no port");
        }
        let status = self.x.process_startup.call(s, port, 1, 1).context("ProcessStartupPacket")?;
        if status == 0 {
            self.x.send_conn_data.call(s).context("pgl_sendConnData")?;
        }
        self.x.pq_flush.call(s).context("pgl_pq_flush")?;
        let reply = self.take_output()?;
        let refusal = wire::first_error(&reply).or_else(|| (status != 0).then(|| format!("ProcessStartupPacket returned {status}")));
        if let Some(detail) = refusal {
            bail!("the session was refused: {detail}");
        }
        let started = std::time::Instant::now();
        let updates = self.prepare_session(username).context("prepare the session")?;
        log::debug!("session prepared in {:.1?}", started.elapsed());
        let reply = wire::with_parameters(&reply, &updates);
        self.x.set_transport.call(&mut self.store, TRANSPORT_STREAM).context("pgl_set_protocol_transport")?;
        self.stdout.attach(&reply).context("write the startup reply")?;
        Ok(reply)
    }

    /// Runs one query over the buffered transport (before stream mode starts).
    fn buffered_query(&mut self, sql: &str) -> Result<Vec<u8>> {
        self.push_input(&wire::query(sql))?;
        match self.main_loop_once() {
            Ok(None) => {}
            Ok(Some(Trap::PgError)) => self.recover()?,
            Ok(Some(_)) => bail!("{sql}: the backend left its main loop"),
            Err(e) => return Err(anyhow::Error::new(e).context("PostgresMainLoopOnce")),
        }
        let s = &mut self.store;
        self.x.send_ready.call(s).context("PostgresSendReadyForQueryIfNecessary")?;
        self.x.pq_flush.call(s).context("pgl_pq_flush")?;
        let reply = self.take_output()?;
        if let Some(error) = wire::first_error(&reply) {
            bail!("{sql}: {error}");
        }
        if !wire::messages(&reply).any(|(tag, _)| tag == b'Z') {
            bail!("{sql}: no ReadyForQuery");
        }
        Ok(reply)
    }

    /// Makes the session `username`'s (single-user mode logs in as the bootstrap
    /// superuser), creating the role on first use, and absorbs what the first query
    /// re-reports. Returns the replies, whose ParameterStatus values are the current ones.
    fn prepare_session(&mut self, username: &str) -> Result<Vec<u8>> {
        let mut replies = self.buffered_query("SELECT 1")?;
        let literal = username.replace('\'', "''");
        let exists = self.buffered_query(&format!("SELECT 1 FROM pg_roles WHERE rolname = '{literal}'"))?;
        if !wire::messages(&exists).any(|(tag, _)| tag == b'D') {
            log::info!("creating role {username:?}");
            self.buffered_query(&format!("CREATE ROLE {} SUPERUSER LOGIN", quote_ident(username)))?;
        }
        replies.extend(self.buffered_query(&format!("SET SESSION AUTHORIZATION {}", quote_ident(username)))?);
        Ok(replies)
    }

    /// Serves the stream until input ends. ERRORs are recovered in place.
    pub fn serve(&mut self) -> std::result::Result<(), BackendDied> {
        if let Some(stack) = &mut self.stack {
            if let Err(e) = stack.set_base(&mut self.store, &self.x.malloc, &self.env) {
                return Err(self.died(format!("setting the stack base failed: {e:#}")));
            }
        }
        loop {
            match self.main_loop_once() {
                Ok(None) => {}
                Ok(Some(Trap::Alive)) => break,
                Ok(Some(Trap::PgError)) => {
                    if let Err(e) = self.recover() {
                        return Err(self.died(format!("error recovery failed: {e:#}")));
                    }
                }
                Ok(Some(Trap::StackExhausted)) => {
                    if let Err(reason) = self.report_stack_exhausted() {
                        return Err(self.died(reason));
                    }
                }
                Ok(Some(Trap::Exit(code))) => return Err(self.died(format!("exit status {code}"))),
                Ok(Some(Trap::Other(message))) => return Err(self.died(message)),
                Err(e) => return Err(self.died(format!("reading the stack pointer failed: {}", e.message()))),
            }
            let s = &mut self.store;
            if let Err(e) = self.x.send_ready.call(s).and_then(|_| self.x.pq_flush.call(s)) {
                return Err(self.died(format!("sending ReadyForQuery failed: {}", e.message())));
            }
        }
        self.stdout.flush_frame().map_err(|e| self.died(format!("stdout: {e}")))?;
        Ok(())
    }

    /// One turn of PostgreSQL's main loop: None when it returned, else how it left.
    ///
    /// An ERROR leaves as a wasm exception, which unwinds the wasm frames but not the C
    /// shadow stack (the `__stack_pointer` global): a native longjmp would restore it,
    /// so this does, else every ERROR leaked the stack it was raised at and a few
    /// thousand of them ran the stack into the heap (a hang or SIGSEGV).
    fn main_loop_once(&mut self) -> std::result::Result<Option<Trap>, RuntimeError> {
        let sp = self.x.get_stack_pointer.call(&mut self.store)?;
        match self.x.main_loop.call(&mut self.store) {
            Ok(()) => Ok(None),
            Err(e) => {
                let trap = classify(&e);
                if matches!(trap, Trap::PgError | Trap::StackExhausted) {
                    self.x.set_stack_pointer.call(&mut self.store, sp)?;
                }
                Ok(Some(trap))
            }
        }
    }

    /// The native stack ran out (see `stack_limit`): ERROR 54001 from the top, then the
    /// usual recovery. Without the exports that takes, the backend dies as before.
    fn report_stack_exhausted(&mut self) -> std::result::Result<(), String> {
        let Some(stack) = &self.stack else {
            return Err("call stack exhausted".into());
        };
        let call = |e: RuntimeError| e.message();
        let sp = self.x.get_stack_pointer.call(&mut self.store).map_err(call)?;
        let err = stack.raise(&mut self.store, &self.env).map_err(|e| format!("call stack exhausted, and raising the ERROR failed: {e:#}"))?;
        if !matches!(classify(&err), Trap::PgError) {
            return Err(format!("call stack exhausted, and raising the ERROR ended in: {}", err.message()));
        }
        self.x.set_stack_pointer.call(&mut self.store, sp).map_err(call)?;
        self.recover().map_err(|e| format!("error recovery failed: {e:#}"))?;
        log::warn!("a statement ran out of native stack: ERROR 54001, the session goes on");
        Ok(())
    }

    /// PostgreSQL's error recovery at the top of its main loop (PostgresMainLongJmp),
    /// with no portal left running by the ERROR (`stray_portals`).
    fn recover(&mut self) -> Result<()> {
        let recover = |store: &mut Store| self.x.recover_error.call(store).context("PostgresMainLongJmp");
        match &self.portals {
            Some(portals) => portals.recover(&mut self.store, &self.env, recover)?,
            None => recover(&mut self.store),
        }
    }

    fn died(&mut self, reason: String) -> BackendDied {
        self.active = false;
        let _ = self.stdout.flush_frame();
        BackendDied { reason, log_tail: self.stderr.tail() }
    }

    /// Runs PostgreSQL's exit hooks (shutdown checkpoint) once.
    pub fn shutdown(&mut self) -> Result<()> {
        if !self.active {
            return Ok(());
        }
        self.active = false;
        self.x.set_active.call(&mut self.store, 0).context("pgl_setPGliteActive(0)")?;
        if let Some(atexit) = &self.x.run_atexit {
            match atexit.call(&mut self.store) {
                Ok(()) => {}
                Err(e) => match classify(&e) {
                    Trap::Alive | Trap::Exit(0) => {}
                    _ => return Err(anyhow::Error::new(e).context("pgl_run_atexit_funcs")),
                },
            }
        }
        Ok(())
    }

    fn push_input(&mut self, bytes: &[u8]) -> Result<()> {
        let s = &mut self.store;
        ensure_zero(self.x.input_reset.call(s)?, "pgl_wasix_input_reset")?;
        ensure_zero(self.x.output_reset.call(s)?, "pgl_wasix_output_reset")?;
        let len = i32::try_from(bytes.len()).context("input too large")?;
        let ptr = self.x.malloc.call(s, len).context("malloc")?;
        if ptr <= 0 {
            bail!("guest malloc({len}) failed");
        }
        poke(&mut self.store, &self.env, ptr as u32, bytes)?;
        let written = self.x.input_write.call(&mut self.store, ptr, len).context("pgl_wasix_input_write")?;
        self.x.free.call(&mut self.store, ptr).context("free")?;
        if written != len {
            bail!("pgl_wasix_input_write took {written} of {len} bytes");
        }
        Ok(())
    }

    fn take_output(&mut self) -> Result<Vec<u8>> {
        let s = &mut self.store;
        let len = self.x.output_len.call(s).context("pgl_wasix_output_len")?;
        if len <= 0 {
            return Ok(Vec::new());
        }
        let ptr = self.x.malloc.call(s, len).context("malloc")?;
        if ptr <= 0 {
            bail!("guest malloc({len}) failed");
        }
        let read = self.x.output_read.call(s, ptr, len).context("pgl_wasix_output_read")?;
        let mut out = vec![0u8; read.max(0) as usize];
        peek(&self.store, &self.env, ptr as u32, &mut out)?;
        self.x.free.call(&mut self.store, ptr).context("free")?;
        ensure_zero(self.x.output_reset.call(&mut self.store)?, "pgl_wasix_output_reset")?;
        Ok(out)
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        if let Err(e) = self.shutdown() {
            log::error!("shutdown: {e:#}");
        }
    }
}

/// `name` as an SQL identifier.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn ensure_zero(status: i32, what: &str) -> Result<()> {
    if status != 0 {
        bail!("{what} returned {status}");
    }
    Ok(())
}

fn wasmer_types_hash(sha256: [u8; 32]) -> wasmer_types::ModuleHash {
    wasmer_types::ModuleHash::from_bytes(sha256)
}

/// PostgreSQL finds its share/ and lib/ relative to `my_exec_path`; the module exports
/// it as a buffer to fill in before `_start`.
fn seed_exec_path(store: &mut Store, module: &Module, instance: &Instance, env: &WasiFunctionEnv) -> Result<()> {
    if instance.exports.get_global("my_exec_path").is_err() {
        return Ok(());
    }
    let ptr = DataSymbols::new(module)?.address(store, instance, "my_exec_path")?;
    poke(store, env, ptr, format!("{EXE_PATH}\0").as_bytes()).context("write my_exec_path")
}

impl Exports {
    fn load(store: &mut Store, instance: &Instance) -> Result<Self> {
        fn f<A: wasmer::WasmTypeList, R: wasmer::WasmTypeList>(
            store: &Store,
            instance: &Instance,
            name: &str,
        ) -> Result<TypedFunction<A, R>> {
            instance
                .exports
                .get_typed_function(store, name)
                .with_context(|| format!("the PostgreSQL module lacks the export {name}"))
        }
        let s = &*store;
        Ok(Self {
            start: f(s, instance, "_start")?,
            set_active: f(s, instance, "pgl_setPGliteActive")?,
            start_pglite: f(s, instance, "pgl_startPGlite")?,
            run_atexit: f(s, instance, "pgl_run_atexit_funcs").ok(),
            force_host_recovery: f(s, instance, "pgl_set_force_host_error_recovery").ok(),
            input_reset: f(s, instance, "pgl_wasix_input_reset")?,
            input_write: f(s, instance, "pgl_wasix_input_write")?,
            output_reset: f(s, instance, "pgl_wasix_output_reset")?,
            output_len: f(s, instance, "pgl_wasix_output_len")?,
            output_read: f(s, instance, "pgl_wasix_output_read")?,
            malloc: f(s, instance, "malloc")?,
            free: f(s, instance, "pg_free").or_else(|_| f(s, instance, "free"))?,
            get_port: f(s, instance, "pgl_getMyProcPort")?,
            process_startup: f(s, instance, "ProcessStartupPacket")?,
            send_conn_data: f(s, instance, "pgl_sendConnData")?,
            pq_flush: f(s, instance, "pgl_pq_flush")?,
            main_loop: f(s, instance, "PostgresMainLoopOnce")?,
            send_ready: f(s, instance, "PostgresSendReadyForQueryIfNecessary")?,
            recover_error: f(s, instance, "PostgresMainLongJmp")?,
            get_stack_pointer: f(s, instance, "__wasilibc_get_stack_pointer")?,
            set_stack_pointer: f(s, instance, "__wasilibc_set_stack_pointer")?,
            set_transport: f(s, instance, "pgl_set_protocol_transport")?,
        })
    }
}
