//! pglite-port: configuration in, runtime up, frame loop, clean shutdown.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Parser;
use sha2::{Digest, Sha256};

use pglite_port::backend::{BackendDied, Host};
use pglite_port::config::Config;
use pglite_port::data_dir::{DataDir, DataDirInUse, Template};
use pglite_port::guest_sleep::SleepWaker;
use pglite_port::interrupts::StatementClock;
use pglite_port::module_cache::{self, ModuleCache};
use pglite_port::stdin_frames::{Idle, StdinFrames};
use pglite_port::output_gate::OutputGate;
use pglite_port::stdin_frames::EndReason;
use pglite_port::stdio_bridge::{Source, StdoutFrames};
use pglite_port::{assets, export_trim, guest_fs, guest_heap, memory_pages, pg_dump, precompile, session, side_modules, sql_cli};

fn main() -> ExitCode {
    let config = Config::parse();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(config.log_filter()))
        .target(env_logger::Target::Stderr)
        .init();
    match run(&config) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("pglite-port: {e:#}");
            ExitCode::from(if e.downcast_ref::<BackendDied>().is_some() {
                3
            } else if e.downcast_ref::<DataDirInUse>().is_some() {
                4
            } else {
                1
            })
        }
    }
}

/// The native stack compiled PostgreSQL runs on (Wasmer's default: 1 MiB, where a
/// PL/pgSQL function calling itself ran out at 300-500 levels). Running out is ERROR
/// 54001 now (`stack_limit`), so this sets how deep statements may nest: with 8 MiB
/// a PL/pgSQL recursion stops at max_stack_depth first (2,400 levels at our 4MB; a
/// PostgreSQL 15 server at its 2MB default: between 500 and 1,000), nested json, which
/// hardly touches the C stack, deeper than 40,000 levels (server: 5,000 to 20,000).
const WASM_STACK_BYTES: usize = 8 << 20;

fn run(config: &Config) -> Result<u8> {
    wasmer::sys::vm::set_stack_size(WASM_STACK_BYTES);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("start the tokio runtime")?;
    let _entered = rt.enter();

    let started = std::time::Instant::now();
    let phase = |name: &str| log::debug!("start-up: {name} done at {:.1?}", started.elapsed());
    let cache_dir = config.cache_dir();
    let location = config.data_location()?;
    // On a machine's first start both are unpacked (0.5-1 s each here): side by side.
    // Every way out waits for the template, so no unpacking is cut short.
    let template = {
        let cache_dir = cache_dir.clone();
        in_background("template", move || assets::pgdata_template_dir(&cache_dir))?
    };
    let runtime = match assets::runtime(&cache_dir) {
        Ok(runtime) => runtime,
        Err(e) => {
            let _ = template();
            return Err(e);
        }
    };
    if let Some(dir) = &config.precompile_to {
        template()?;
        let (fresh, kept) = precompile::into_dir(dir, &runtime)?;
        eprintln!("pglite-port: {fresh} modules compiled, {kept} already there, in {}", dir.display());
        return Ok(0);
    }
    let modules = ModuleCache::new(cache_dir.join("modules"), module_cache::engine())
        .with_shipped(ModuleCache::shipped_beside_executable());
    if let (Some(out), Some(port)) = (&config.pg_dump, config.dump_port) {
        template()?;
        let target = pg_dump::Target {
            host: config.dump_host.clone(),
            port,
            username: config.username.clone(),
            database: config.database.clone(),
        };
        pg_dump::run(&rt, &modules, &target, out)?;
        log::info!("dumped {:?} into {}", config.database, out.display());
        return Ok(0);
    }
    // The data directory gets ready (the WAL copied into memory, or the directory
    // locked) while the modules load. --precompile opens none.
    let data = {
        let (handle, precompile, user_template) = (rt.handle().clone(), config.precompile, config.template.clone());
        // Empty: the port's own memory, as without it.
        let memory_dir = config.memory_dir.clone().filter(|dir| !dir.as_os_str().is_empty());
        in_background("data directory", move || {
            let bundled = template()?;
            let template = user_template.map_or(Template::Bundled(bundled), Template::Directory);
            (!precompile).then(|| DataDir::open(&location, &template, memory_dir.as_deref(), &handle)).transpose()
        })?
    };
    let loaded = load_modules(config, &rt, &modules, &runtime);
    let data = data();
    let (module, module_sha256, side) = loaded?;
    phase("modules");
    let Some(data) = data? else {
        eprintln!("pglite-port: module cache is ready in {}", cache_dir.join("modules").display());
        return Ok(0);
    };
    phase("data directory");
    let sleeps = SleepWaker::default();
    let host = Host {
        wasix: Host::wasix_runtime(&rt, modules.engine(), side, sleeps.clone()),
        sleeps,
        engine: modules.engine().clone(),
        module,
        module_sha256,
        fs: guest_fs::build(&rt, &runtime.root, data.filesystem(rt.handle())?)?,
        postgres_args: postgres_args(config)?,
        username: config.username.clone(),
    };

    if !config.sql.is_empty() {
        let reply = session::run_statements(&host, &config.database, &config.sql)?;
        let (text, failed) = sql_cli::render(&reply);
        print!("{text}");
        return Ok(u8::from(failed));
    }

    let clock = StatementClock::default();
    let gate = OutputGate::default();
    let frames = StdinFrames::start(clock.clone(), Duration::from_micros(config.spin_us.into()), gate.clone())?;
    let (mut backend, stdin) = session::open(&host, &config.database, Source::Frames(frames.clone()), Box::new(StdoutFrames::new(gate)), clock.clone())?;
    // Declared after the backend, so dropped before it on every way out.
    let _armed = match backend.interrupts(host.sleeps.clone()) {
        Ok(interrupts) => Some(clock.install(interrupts)),
        Err(e) => {
            log::warn!("cancel and statement_timeout are off: {e:#}");
            None
        }
    };
    phase("session open");
    // In the backend's idle moments, so that it delays neither the start nor a request
    // (the first comes at once); a step of 1 MiB takes well under a millisecond.
    // SAFETY: the frames' idle work runs only while the guest waits for input, and not
    // after `serve` returns (nothing reads the frames then).
    match unsafe { backend.zero_page_sweep() } {
        Ok(mut sweep) => frames.when_idle(Box::new(move |_| {
            if sweep.step(1 << 20) {
                return Idle::More;
            }
            log::debug!("released {} MiB of zero guest pages at {:.1?}", sweep.released() >> 20, started.elapsed());
            Idle::Done
        })),
        Err(e) => log::warn!("could not release zero guest pages: {e:#}"),
    }
    // SAFETY: as for the sweep above.
    match unsafe { backend.heap_trim() } {
        Ok(trim_at) => hand_back_free_heap(trim_at, config.wasm_path.clone().unwrap_or_else(|| runtime.module_path()), frames.clone()),
        Err(e) => log::warn!("free guest heap memory stays resident: {e:#}"),
    }
    // Read-only pages and free heap only: safe beside the backend, and off its path.
    let spawned = std::thread::Builder::new().name("trim".into()).spawn(move || {
        let dropped = memory_pages::release_start_up_leftovers();
        log::debug!("dropped {} MiB of start-up mappings at {:.1?}", dropped >> 20, started.elapsed());
    });
    if let Err(e) = spawned {
        log::warn!("could not drop start-up mappings: {e}");
    }
    log::info!("ready: database {:?} as {:?} in {}", config.database, config.username, config.data_dir);
    backend.serve()?;
    backend.shutdown()?;
    if !config.keep_memory_dir {
        data.remove_memory_dir()?;
    }
    let end = stdin.end_reason().unwrap_or(EndReason::Eof);
    log::info!("shut down cleanly ({end:?})");
    Ok(end.exit_code() as u8)
}

/// The PostgreSQL module (from the shipped or cached compiled files, or compiled now),
/// its SHA-256, and the side modules a dlopen will ask for.
fn load_modules(
    config: &Config,
    rt: &tokio::runtime::Runtime,
    modules: &ModuleCache,
    runtime: &assets::Runtime,
) -> Result<(wasmer::Module, [u8; 32], std::sync::Arc<side_modules::SideModules>)> {
    let (module, module_sha256) = match &config.wasm_path {
        Some(path) => {
            let bytes = std::fs::read(path).with_context(|| format!("read PGLITE_WASM_PATH {}", path.display()))?;
            let sha256: [u8; 32] = Sha256::digest(&bytes).into();
            (modules.load_or_compile("pglite", &assets::hex(&sha256), || Ok(bytes))?.0, sha256)
        }
        None => {
            let (key, trimmed) = export_trim::bundled(runtime, runtime.module_sha256()?);
            (modules.load_or_compile("pglite", &assets::hex(&key), trimmed)?.0, key)
        }
    };
    let side = side_modules::seed(rt, modules, runtime)?;
    Ok((module, module_sha256, side))
}

/// From when a thread has read where the guest's malloc keeps its state from the module
/// at `module_path` (5-20 ms, kept off the start's path: a start took 6 ms longer with it
/// there), the backend's idle moments hand back its free heap.
fn hand_back_free_heap(trim_at: impl FnOnce(u32) -> guest_heap::HeapTrim + Send + 'static, module_path: PathBuf, frames: Arc<StdinFrames>) {
    let located = move || {
        let wasm = std::fs::read(&module_path).with_context(|| format!("read {}", module_path.display()))?;
        guest_heap::allocator_state_offset(&wasm)
    };
    let spawned = std::thread::Builder::new().name("heap state".into()).spawn(move || match located() {
        Ok(offset) => {
            let mut trim = trim_at(offset);
            frames.when_idle(Box::new(move |waiting_since| trim.idle_step(waiting_since)));
        }
        Err(e) => log::warn!("free guest heap memory stays resident: {e:#}"),
    });
    if let Err(e) = spawned {
        log::warn!("free guest heap memory stays resident: {e}");
    }
}

/// Runs `work` on a thread of its own; calling the result waits for it.
fn in_background<T: Send + 'static>(
    name: &str,
    work: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<impl FnOnce() -> Result<T>> {
    let name = name.to_string();
    let thread = std::thread::Builder::new().name(name.clone()).spawn(work).with_context(|| format!("spawn the {name} thread"))?;
    Ok(move || thread.join().map_err(|_| anyhow::anyhow!("the {name} thread panicked"))?)
}

/// The postgres command line: single-user backend, our settings, then the user's.
fn postgres_args(config: &Config) -> Result<Vec<String>> {
    // -F: fsync off. Writes still reach the OS before a commit is acknowledged (kill -9
    // safe); fsync on cannot work here: the runtime cannot fsync a directory and
    // PostgreSQL PANICs at its checkpoint.
    let mut args: Vec<String> = ["--single", "-O", "-j", "-F"].map(String::from).to_vec();
    let mut settings: Vec<(String, String)> = [
        ("exit_on_error", "false"),
        ("log_checkpoints", "false"),
        ("max_worker_processes", "0"),
        ("max_parallel_workers", "0"),
        ("max_parallel_workers_per_gather", "0"),
        ("wal_buffers", "4MB"),
        ("min_wal_size", "80MB"),
        // Of the guest's 8 MiB C stack (see WASM_STACK_BYTES): PL/pgSQL recursion goes
        // 2,400 levels deep before ERROR 54001 (a server at its 2MB default: 500 to 1,000).
        ("max_stack_depth", "4MB"),
    ]
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .to_vec();
    settings.push(("shared_buffers".into(), config.shared_buffers.clone()));
    if config.debug >= 5 {
        settings.push(("log_min_messages".into(), "debug1".into()));
    }
    settings.extend(config.extra_settings()?);
    for (name, value) in settings {
        args.push("-c".into());
        args.push(format!("{name}={value}"));
    }
    Ok(args)
}
