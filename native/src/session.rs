//! Opening the port's session on a fresh backend, creating the configured database on
//! first start, and running a list of statements to completion (for `--sql`).

use std::collections::VecDeque;

use anyhow::{bail, Context, Result};

use crate::backend::{quote_ident, Backend, Host, Stdio};
use crate::guest_fs::PGDATA;
use crate::interrupts::StatementClock;
use crate::stdin_frames::{EndReason, Input};
use crate::stdio_bridge::{Collect, GuestStderr, GuestStdin, GuestStdout, Sink, Source};
use crate::wire;

/// A backend with its session open on `database`, reading `source` and writing `sink`.
/// The startup reply has been sent to the sink as its first frame.
pub fn open(
    host: &Host,
    database: &str,
    source: Source,
    sink: Box<dyn Sink>,
    clock: StatementClock,
) -> Result<(Backend, GuestStdin)> {
    let stdout = GuestStdout::new(sink);
    let stdin = GuestStdin::new(source, stdout.clone(), clock);
    let stdio = || Stdio { stdin: stdin.clone(), stdout: stdout.clone(), stderr: GuestStderr::default() };
    let mut backend = match Backend::start(host, database, stdio()) {
        Ok(backend) => backend,
        Err(e) if is_missing_database(&e, database) => {
            log::info!("database {database:?} does not exist yet: creating it");
            // The failed start left its lock file behind; no other backend runs here.
            let _ = host.fs.remove_file(&std::path::Path::new(PGDATA).join("postmaster.pid"));
            create_database(host, database)?;
            Backend::start(host, database, stdio())?
        }
        Err(e) => return Err(e),
    };
    backend.open_session(&host.username, database)?;
    Ok((backend, stdin))
}

/// Runs each statement as a simple Query and returns the backend's whole reply.
pub fn run_statements(host: &Host, database: &str, statements: &[String]) -> Result<Vec<u8>> {
    let mut inputs: VecDeque<Input> = statements.iter().zip(1..).map(|(sql, n)| Input::Data(wire::query(sql), n)).collect();
    inputs.push_back(Input::End(EndReason::Eof));
    let collected = Collect::default();
    let (mut backend, _) = open(host, database, Source::List(inputs), Box::new(collected.clone()), StatementClock::default())?;
    backend.serve()?;
    backend.shutdown()?;
    let bytes = collected.0.lock().map_err(|_| anyhow::anyhow!("output lock poisoned"))?.clone();
    Ok(bytes)
}

fn create_database(host: &Host, database: &str) -> Result<()> {
    let sql = format!("CREATE DATABASE {}", quote_ident(database));
    let reply = run_statements(host, "postgres", &[sql]).context("create the database")?;
    if let Some(message) = wire::first_error(&reply) {
        bail!("could not create database {database:?}: {message}");
    }
    Ok(())
}

fn is_missing_database(err: &anyhow::Error, database: &str) -> bool {
    let text = format!("{err:#}");
    text.contains(&format!("database \"{database}\" does not exist"))
}
