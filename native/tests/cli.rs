//! By hand: --help, --sql, --precompile, --precompile-to, and the compiled-module cache.

mod support;
use std::process::Command;
use support::*;

fn run(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let out = Command::new(BIN).args(args).envs(env.iter().copied()).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn help_lists_every_setting() {
    let (code, out, _) = run(&["--help"], &[]);
    assert_eq!(code, 0);
    for name in ["PGLITE_DATA_DIR", "PGLITE_USERNAME", "PGLITE_DATABASE", "PGLITE_DEBUG", "PGLITE_WASM_PATH", "PGLITE_CACHE_DIR", "PGLITE_SHARED_BUFFERS", "PGLITE_SPIN_US", "PGLITE_WASM_BACKTRACE", "--precompile", "--precompile-to", "--sql"] {
        assert!(out.contains(name), "--help lacks {name}");
    }
}

#[test]
fn a_spin_window_out_of_range_is_refused_with_its_name() {
    let (code, _, err) = run(&["--sql", "SELECT 1"], &[("PGLITE_SPIN_US", "200000")]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--spin-us") && err.contains("200000"), "{err}");
}

#[test]
fn sql_prints_tables_and_errors_with_sqlstate() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = dir_arg(&tmp.path().join("db"));
    let (code, out, err) = run(
        &["--sql", "CREATE TABLE p (id int, name text)", "--sql", "INSERT INTO p VALUES (1, 'ada'), (2, NULL)", "--sql", "SELECT id, name FROM p ORDER BY id"],
        &[("PGLITE_DATA_DIR", &dir)],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("CREATE TABLE"), "{out}");
    assert!(out.contains("INSERT 0 2"), "{out}");
    assert!(out.contains(" id | name"), "{out}");
    assert!(out.contains(" 1  | ada"), "{out}");
    assert!(out.contains("(2 rows)"), "{out}");

    let (code, out, _) = run(&["--sql", "SELECT * FROM missing"], &[("PGLITE_DATA_DIR", &dir)]);
    assert_eq!(code, 1);
    assert!(out.contains("SQLSTATE 42P01"), "{out}");
}

#[test]
fn a_corrupt_module_cache_file_is_rebuilt_not_loaded() {
    let cache = tempfile::tempdir().unwrap();
    let cache_dir = dir_arg(cache.path());
    let env = [("PGLITE_CACHE_DIR", cache_dir.as_str())];
    let (code, _, err) = run(&["--precompile"], &env);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("compiling PostgreSQL"), "a cold cache says it compiles: {err}");

    let (code, _, err) = run(&["--precompile"], &env);
    assert_eq!(code, 0, "{err}");
    assert!(!err.contains("compiling PostgreSQL"), "a warm cache does not compile: {err}");

    let module = std::fs::read_dir(cache.path().join("modules"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.file_name().unwrap().to_str().unwrap().starts_with("pglite-") && p.extension().unwrap() == "module")
        .expect("main module cache file");
    let len = std::fs::metadata(&module).unwrap().len();
    let f = std::fs::OpenOptions::new().write(true).open(&module).unwrap();
    f.set_len(len / 2).unwrap();
    drop(f);

    let (code, out, err) = run(&["--sql", "SELECT 40 + 2"], &env);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("compiling PostgreSQL"), "the truncated file was rebuilt: {err}");
    assert!(out.contains("42"), "{out}");
    assert_eq!(std::fs::metadata(&module).unwrap().len(), len, "rebuilt at full size");
}

#[test]
fn two_ports_starting_on_an_empty_cache_compile_once() {
    let cache = tempfile::tempdir().unwrap();
    let cache_dir = dir_arg(cache.path());
    let spawn = || {
        Command::new(BIN)
            .arg("--precompile")
            .env("PGLITE_CACHE_DIR", &cache_dir)
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn(), spawn());
    let outputs: Vec<_> = [a, b].into_iter().map(|c| c.wait_with_output().unwrap()).collect();
    assert!(outputs.iter().all(|o| o.status.success()));
    let compiled = outputs
        .iter()
        .filter(|o| String::from_utf8_lossy(&o.stderr).contains("compiling PostgreSQL"))
        .count();
    assert_eq!(compiled, 1, "one compiles, the other waits and loads its result");
    let (code, out, err) = run(&["--sql", "SELECT 'cache shared'"], &[("PGLITE_CACHE_DIR", &cache_dir)]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("cache shared"));
}

/// The compiled PostgreSQL module in a shipped directory.
fn main_file(shipped: &std::path::Path) -> std::path::PathBuf {
    std::fs::read_dir(shipped).unwrap().map(|e| e.unwrap().path()).find(|p| p.file_name().unwrap().to_str().unwrap().starts_with("pglite-")).unwrap()
}

#[test]
fn modules_precompiled_beside_the_binary_make_a_first_start_compile_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let bin = tmp.path().join("bin/pglite-port");
    std::fs::create_dir_all(bin.parent().unwrap()).unwrap();
    std::fs::copy(BIN, &bin).unwrap();
    let shipped = tmp.path().join("bin/pglite-modules");
    let port = |args: &[&str], cache: &str| {
        let out = Command::new(&bin).args(args).env("PGLITE_CACHE_DIR", cache).output().unwrap();
        (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let build_cache = dir_arg(&tmp.path().join("build-cache"));
    let (code, _, err) = port(&["--precompile-to", shipped.to_str().unwrap()], &build_cache);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains(" 0 already there"), "{err}");
    std::fs::write(shipped.join("side-0000000000000000.module"), "left by an older build").unwrap();
    let (code, _, err) = port(&["--precompile-to", shipped.to_str().unwrap()], &build_cache);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains(": 0 modules compiled"), "a second run compiles nothing: {err}");
    assert!(!shipped.join("side-0000000000000000.module").exists(), "stale files are removed");

    // A machine that never compiled: PostgreSQL, plpgsql and an extension all load.
    let fresh = dir_arg(&tmp.path().join("fresh-cache"));
    let sql = ["--sql", "CREATE EXTENSION hstore", "--sql", "DO $$ BEGIN PERFORM 1; END $$", "--sql", "SELECT 'a=>1'::hstore -> 'a' AS v"];
    let (code, out, err) = port(&sql, &fresh);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(" 1\n"), "{out}");
    assert!(!err.contains("compiling"), "{err}");
    let compiled: Vec<_> = std::fs::read_dir(tmp.path().join("fresh-cache/modules"))
        .map(|dir| dir.map(|e| e.unwrap().path()).filter(|p| p.extension().is_some_and(|x| x == "module")).collect())
        .unwrap_or_default();
    assert!(compiled.is_empty(), "nothing was compiled into the cache: {compiled:?}");
    assert!(tmp.path().join("fresh-cache/modules/verified").join(main_file(&shipped).file_name().unwrap()).is_file(), "the checked file is noted");
    // The next start trusts the noted file and skips its CRC.
    let (code, _, err) = port(&["--sql", "SELECT 1", "--debug", "3"], &fresh);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("pglite-") && err.contains("(CRC checked before)"), "{err}");

    // A damaged shipped file is skipped, never trusted: the cache takes over.
    let main = main_file(&shipped);
    let len = std::fs::metadata(&main).unwrap().len();
    std::fs::OpenOptions::new().write(true).open(&main).unwrap().set_len(len - 1).unwrap();
    let (code, out, err) = port(&["--sql", "SELECT 40 + 2"], &fresh);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("42"), "{out}");
    assert!(err.contains("compiling PostgreSQL"), "{err}");
    assert_eq!(std::fs::metadata(&main).unwrap().len(), len - 1, "left alone: it belongs to the installation");
}

#[test]
fn an_in_memory_instance_writes_wal_through_many_segments_and_checkpoints() {
    // The in-memory WAL starts as the template segment's written part only.
    let (code, out, err) = run(
        &[
            "--sql", "CREATE TABLE t AS SELECT g, repeat('x', 200) AS f FROM generate_series(1, 200000) g",
            "--sql", "CHECKPOINT",
            "--sql", "INSERT INTO t SELECT * FROM t",
            "--sql", "CHECKPOINT",
            "--sql", "SELECT count(*), pg_walfile_name(pg_current_wal_lsn()) > '000000010000000000000004' AS many FROM t",
        ],
        &[("PGLITE_DATA_DIR", "memory://")],
    );
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("400000 | t"), "{out}");
}
