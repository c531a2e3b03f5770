//! Environment variables and flags, turned into one [`Config`].

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Parser;

/// PostgreSQL 17 (the PGlite WASIX build) running in Wasmer, spoken to through
/// length-prefixed frames on stdin/stdout.
///
/// stdin: frames of a 4-byte big-endian length followed by that many bytes of the
/// PostgreSQL v3 frontend stream (no StartupMessage: the port opens its session itself).
/// stdout: the first frame holds the session's startup reply (AuthenticationOk,
/// ParameterStatus..., BackendKeyData, ReadyForQuery); later frames carry the backend's
/// byte stream in order; each request's reply is sent before the next frame runs. A
/// frame holding only a CancelRequest packet (16 bytes) cancels the request in the
/// stdin frames numbered by its pid..=key fields (every other frame counts, from 1), or
/// whatever runs if both are 0; the session's statement_timeout is enforced. A frame
/// holding only an IdleProbe packet (8 bytes: length 8, code 80877124) is answered with
/// the frame "\0pglite:idle" once every frame before it has been answered and the
/// backend waits for input (not numbered either). PauseOutput (length 8, code
/// 80877125) holds the backend's output until ResumeOutput (80877126); the end of
/// input releases it. Untimed (length 8, code 80877127) exempts the next frame from
/// statement_timeout (the front end's own cleanup between clients).
/// Statements run on an 8 MiB native stack; one that nests deeper (runaway recursion,
/// deeply nested json or regex) gets ERROR 54001 "stack depth limit exceeded" and the
/// session goes on. max_stack_depth is 4MB (the guest's C stack is 8 MiB: keep it
/// below 6MB).
/// Logs go to stderr only. PGLITE_WASM_BACKTRACE=1 makes a wasm trap's message name
/// the wasm frames it happened in, at the cost of walking the native stack at every
/// wasm exception (every ERROR, and many ordinary requests): for debugging only.
///
/// Exit status: 0 clean shutdown (stdin EOF, Terminate, SIGTERM/SIGINT); 1 start-up or
/// runtime error; 2 a frame longer than 1 GiB or a truncated frame; 3 the backend died;
/// 4 the data directory is in use by another pglite-port.
#[derive(Parser, Debug, Clone)]
#[command(name = "pglite-port", version, verbatim_doc_comment)]
pub struct Config {
    /// Where the data lives: `memory://` (nothing touches disk) or a directory
    /// (`./path`, `/abs/path`, `file://path`), created from the template on first use.
    #[arg(long, env = "PGLITE_DATA_DIR", default_value = "memory://")]
    pub data_dir: String,

    /// Start from this stopped data directory instead of the bundled template (e.g. one
    /// with an app's migrations applied): a memory:// instance reads it copy on write
    /// (nothing is copied up front and it is never written), a new data directory is a
    /// copy of it. It is locked shared while read, so no port can run on it meanwhile.
    #[arg(long, env = "PGLITE_TEMPLATE_DIR", value_name = "DIR")]
    pub template: Option<PathBuf>,

    /// For memory://: keep the files PostgreSQL writes in DIR (created if missing; best
    /// a RAM-backed directory such as one under /dev/shm) instead of the port's own
    /// memory, so that they outlive the port: a port started again on DIR after a crash
    /// recovers every commit, as on a data directory. A clean shutdown (end of input,
    /// Terminate, SIGTERM) removes DIR unless --keep-memory-dir. Locked while the port
    /// runs. Empty: the port's own memory.
    #[arg(long, env = "PGLITE_MEMORY_DIR", value_name = "DIR")]
    pub memory_dir: Option<PathBuf>,

    /// Leave the memory directory at a clean shutdown too: its owner removes it, and a
    /// port started on it later goes on with the data (the front end restarts the port
    /// on another database that way).
    #[arg(long, env = "PGLITE_KEEP_MEMORY_DIR", action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true",
          value_parser = clap::builder::BoolishValueParser::new(), default_value_t = false)]
    pub keep_memory_dir: bool,

    /// The session's user.
    #[arg(long, env = "PGLITE_USERNAME", default_value = "postgres")]
    pub username: String,

    /// The session's database; created on first start if missing.
    #[arg(long, env = "PGLITE_DATABASE", default_value = "postgres")]
    pub database: String,

    /// Log verbosity 0-5 (0 errors only ... 5 trace, including PostgreSQL's debug
    /// output). RUST_LOG, when set, wins.
    #[arg(long, env = "PGLITE_DEBUG", default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=5))]
    pub debug: u8,

    /// Use this PostgreSQL WASIX module instead of the bundled one.
    #[arg(long, env = "PGLITE_WASM_PATH")]
    pub wasm_path: Option<PathBuf>,

    /// Where compiled modules and unpacked runtime files are cached
    /// [default: $XDG_CACHE_HOME/pglite or ~/.cache/pglite].
    #[arg(long, env = "PGLITE_CACHE_DIR")]
    pub cache_dir: Option<PathBuf>,

    /// PostgreSQL shared_buffers.
    #[arg(long, env = "PGLITE_SHARED_BUFFERS", default_value = "32MB")]
    pub shared_buffers: String,

    /// Microseconds the backend polls stdin for the next frame before it sleeps, while
    /// frames come that fast (a wait that outlasts this sleeps at once next time):
    /// waking a sleeping process costs more, most of all on a virtual machine. 0 never
    /// polls.
    #[arg(long, env = "PGLITE_SPIN_US", default_value_t = 300, value_parser = clap::value_parser!(u32).range(0..=100_000))]
    pub spin_us: u32,

    /// Extra PostgreSQL setting NAME=VALUE (repeatable), e.g. `-c work_mem=8MB`.
    #[arg(short = 'c', long = "set", value_name = "NAME=VALUE")]
    pub settings: Vec<String>,

    /// Compile the PostgreSQL module into the cache, then exit.
    #[arg(long)]
    pub precompile: bool,

    /// Compile every bundled module (PostgreSQL, its extensions, pg_dump) for any CPU
    /// of this architecture (x86-64-v2 or aarch64 NEON) into DIR, then exit. A
    /// pglite-port loads modules from `pglite-modules/` beside its own binary before
    /// its cache, so that a first start compiles nothing.
    #[arg(long, value_name = "DIR", conflicts_with = "precompile")]
    pub precompile_to: Option<std::path::PathBuf>,

    /// Run this SQL (repeatable) on the data directory, print the results, then exit.
    #[arg(long, value_name = "SQL")]
    pub sql: Vec<String>,

    /// Run PostgreSQL 17's own pg_dump (bundled) against the server at --dump-host and
    /// --dump-port as --username (password from PGPASSWORD), dump --database as plain
    /// SQL into FILE, then exit. The file appears only when the dump succeeded.
    #[arg(long, value_name = "FILE", requires = "dump_port")]
    pub pg_dump: Option<PathBuf>,

    /// The host pg_dump connects to (TCP).
    #[arg(long, value_name = "HOST", default_value = "127.0.0.1")]
    pub dump_host: String,

    /// The TCP port pg_dump connects to.
    #[arg(long, value_name = "PORT")]
    pub dump_port: Option<u16>,
}

/// Where the data directory lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataLocation {
    Memory,
    Directory(PathBuf),
}

impl Config {
    pub fn data_location(&self) -> Result<DataLocation> {
        let raw = self.data_dir.trim();
        if raw == "memory://" || raw == "memory" {
            return Ok(DataLocation::Memory);
        }
        let path = raw.strip_prefix("file://").unwrap_or(raw);
        if path.is_empty() {
            bail!("PGLITE_DATA_DIR is empty: use memory:// or a directory path");
        }
        if raw.contains("://") && !raw.starts_with("file://") {
            bail!("PGLITE_DATA_DIR {raw:?}: only memory:// and file:// are supported");
        }
        let path = PathBuf::from(path);
        let path = if path.is_absolute() {
            path
        } else {
            std::env::current_dir().context("read the current directory")?.join(path)
        };
        Ok(DataLocation::Directory(path))
    }

    pub fn cache_dir(&self) -> PathBuf {
        if let Some(dir) = &self.cache_dir {
            return dir.clone();
        }
        if let Some(xdg) = std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()) {
            return PathBuf::from(xdg).join("pglite");
        }
        if let Some(home) = std::env::var_os("HOME").filter(|v| !v.is_empty()) {
            return PathBuf::from(home).join(".cache").join("pglite");
        }
        std::env::temp_dir().join("pglite-cache")
    }

    /// `-c` settings validated as NAME=VALUE.
    pub fn extra_settings(&self) -> Result<Vec<(String, String)>> {
        self.settings
            .iter()
            .map(|s| match s.split_once('=') {
                Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
                _ => bail!("setting {s:?} is not NAME=VALUE"),
            })
            .collect()
    }

    pub fn log_filter(&self) -> &'static str {
        match self.debug {
            0 => "error",
            1 => "warn",
            2 => "info",
            3 => "debug",
            _ => "trace",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(data_dir: &str) -> Config {
        Config::parse_from(["pglite-port", "--data-dir", data_dir])
    }

    #[test]
    fn data_dir_forms() {
        assert_eq!(cfg("memory://").data_location().unwrap(), DataLocation::Memory);
        assert_eq!(
            cfg("file:///x/y").data_location().unwrap(),
            DataLocation::Directory("/x/y".into())
        );
        assert_eq!(cfg("/abs").data_location().unwrap(), DataLocation::Directory("/abs".into()));
        assert!(matches!(cfg("./rel").data_location().unwrap(), DataLocation::Directory(p) if p.is_absolute()));
        assert!(cfg("s3://bucket").data_location().is_err());
    }

    #[test]
    fn settings_must_be_name_value() {
        let c = Config::parse_from(["pglite-port", "-c", "work_mem=8MB"]);
        assert_eq!(c.extra_settings().unwrap(), vec![("work_mem".into(), "8MB".into())]);
        let c = Config::parse_from(["pglite-port", "-c", "nonsense"]);
        assert!(c.extra_settings().is_err());
    }
}
