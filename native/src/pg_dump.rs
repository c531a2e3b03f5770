//! PostgreSQL 17's own pg_dump (the WASIX build bundled with the runtime), run under
//! Wasmer against a server reachable over TCP (a pglite instance's loopback listener),
//! writing a plain-SQL dump to a host file.
//!
//! The dump is written beside its destination and renamed into place only when pg_dump
//! succeeded, so a failed dump never leaves a file that looks whole.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{anyhow, Context, Result};
use sha2::{Digest, Sha256};
use wasmer_wasix::runners::wasi::{RuntimeOrEngine, WasiRunner};
use wasmer_wasix::runtime::task_manager::tokio::TokioTaskManager;
use wasmer_wasix::{LocalNetworking, PluggableRuntime};

use crate::assets::hex;
use crate::host_dir::HostDir;
use crate::module_cache::ModuleCache;
use crate::stdio_bridge::GuestStderr;

/// Whom to dump.
pub struct Target {
    pub host: String,
    pub port: u16,
    pub username: String,
    pub database: String,
}

pub fn run(rt: &tokio::runtime::Runtime, modules: &ModuleCache, target: &Target, out: &Path) -> Result<()> {
    let wasm = pglite_oxide_assets::pg_dump_wasm().context("pglite-oxide-assets was built without pg_dump")?;
    let digest: [u8; 32] = Sha256::digest(wasm).into();
    let (module, _) = modules.load_or_compile("pg_dump", &hex(&digest), || Ok(wasm.to_vec()))?;

    // Fail on an unwritable destination before anything runs.
    let dir = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let partial = tempfile::Builder::new()
        .prefix(".pglite-dump-")
        .suffix(".sql")
        .tempfile_in(&dir)
        .with_context(|| format!("cannot write the dump into {}", dir.display()))?;
    let partial_name = partial.path().file_name().context("temporary dump file name")?.to_string_lossy().into_owned();

    // Written on pg_dump's thread, each write done when it returns (see HostDir).
    let host_dir = HostDir::new(rt.handle(), &dir)?;
    let mut runtime = PluggableRuntime::new(Arc::new(TokioTaskManager::new(rt.handle().clone())));
    runtime.set_engine(modules.engine().clone());
    runtime.set_networking_implementation(LocalNetworking::new());

    // Its messages go to our log, and the last lines into the error.
    let stderr = GuestStderr::default();
    let mut runner = WasiRunner::new();
    runner
        .with_mount("/out".to_owned(), Arc::new(host_dir))
        .with_current_dir("/")
        .with_args([
            "-h".to_owned(),
            target.host.clone(),
            "-p".to_owned(),
            target.port.to_string(),
            "-U".to_owned(),
            target.username.clone(),
            "--no-password".to_owned(),
            "-f".to_owned(),
            format!("/out/{partial_name}"),
            target.database.clone(),
        ])
        .with_envs([("PGSSLMODE", "disable"), ("PGCONNECT_TIMEOUT", "30")])
        .with_stderr(Box::new(stderr.clone()));
    if let Ok(password) = std::env::var("PGPASSWORD") {
        runner.with_envs([("PGPASSWORD", password)]);
    }

    let _entered = rt.enter();
    runner
        .run_wasm(RuntimeOrEngine::Runtime(Arc::new(runtime)), "pg_dump", module, wasmer_types::ModuleHash::from_bytes(digest))
        .map_err(|e| match stderr.tail() {
            text if text.is_empty() => anyhow!("pg_dump failed: {e}"),
            text => anyhow!("pg_dump failed: {}", text.trim()),
        })?;
    partial.persist(out).with_context(|| format!("move the dump to {}", out.display()))?;
    Ok(())
}
