//! Data in a directory: persistence across restarts, commits that survive kill -9,
//! one port per directory, a database created on first start. In memory with a memory
//! directory: commits that survive kill -9 too.

mod support;
use support::*;

#[test]
fn data_persists_across_a_clean_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = dir_arg(&tmp.path().join("db"));
    let (mut port, _) = Port::ready(&dir);
    port.rows("CREATE TABLE kept (id int)");
    port.rows("INSERT INTO kept SELECT generate_series(1, 500)");
    assert_eq!(port.finish().0, 0);

    let (mut port, _) = Port::ready(&format!("file://{dir}"));
    assert_eq!(port.rows("SELECT count(*) FROM kept"), vec![vec![Some("500".into())]]);
    assert_eq!(port.finish().0, 0);
}

#[test]
fn a_commit_acknowledged_on_stdout_survives_kill_9() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = dir_arg(&tmp.path().join("db"));
    let (mut port, _) = Port::ready(&dir);
    port.rows("CREATE TABLE acked (id int)");
    port.rows("BEGIN");
    port.rows("INSERT INTO acked SELECT generate_series(1, 1000)");
    let commit = port.simple("COMMIT");
    assert_eq!(ready_status(&commit), b'I');
    // Killed the moment the ReadyForQuery arrived: no shutdown checkpoint ran.
    port.child.kill().unwrap();
    let _ = port.wait();

    let (mut port, _) = Port::ready(&dir);
    assert_eq!(port.rows("SELECT count(*) FROM acked"), vec![vec![Some("1000".into())]]);
    assert_eq!(port.finish().0, 0);
}

/// In memory, with what PostgreSQL writes kept in a memory directory: killed and
/// started again on that directory, every acknowledged commit is there (crash
/// recovery), deletes of the template's files too; one port at a time on it.
#[test]
fn in_memory_commits_survive_kill_9_with_a_memory_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let memory = tmp.path().join("mem");
    let env = [("PGLITE_MEMORY_DIR", memory.to_str().unwrap())];
    let ready = || {
        let mut port = Port::spawn_with("memory://", &env);
        port.read_frame_messages();
        port
    };
    let mut port = ready();
    port.rows("CREATE TABLE acked (id int)");
    port.rows("INSERT INTO acked SELECT generate_series(1, 1000)");
    // A file the template has, deleted: its deletion must outlive the port too.
    port.rows("VACUUM FULL pg_description");
    assert_eq!(ready_status(&port.simple("DELETE FROM acked WHERE id > 900")), b'I');
    let second = Port::spawn_with("memory://", &env);
    assert_eq!(second.finish().0, 4, "one port at a time on a memory directory");
    port.child.kill().unwrap();
    let _ = port.wait();

    let mut port = ready();
    assert_eq!(port.rows("SELECT count(*) FROM acked"), vec![vec![Some("900".into())]]);
    assert_eq!(port.rows("SELECT count(*) > 0 FROM pg_description"), vec![vec![Some("t".into())]]);
    port.rows("INSERT INTO acked VALUES (0)");
    assert_eq!(port.finish().0, 0);
    assert!(!memory.exists(), "a clean shutdown removes the memory directory");

    // Without the memory directory, memory:// is the port's own: a fresh cluster.
    let (mut port, _) = Port::ready("memory://");
    assert!(port.simple("SELECT * FROM acked").iter().any(|m| m.tag == b'E'));
    assert_eq!(port.finish().0, 0);
}

/// With PGLITE_KEEP_MEMORY_DIR a clean shutdown leaves the memory directory to its
/// owner, and the next port goes on with its data, in another database too.
#[test]
fn a_kept_memory_directory_carries_the_data_to_the_next_port() {
    let tmp = tempfile::tempdir().unwrap();
    let memory = tmp.path().join("mem");
    let dir = memory.to_str().unwrap();
    let mut port = Port::spawn_with("memory://", &[("PGLITE_MEMORY_DIR", dir), ("PGLITE_KEEP_MEMORY_DIR", "1")]);
    port.read_frame_messages();
    port.rows("CREATE DATABASE app_test");
    port.rows("CREATE TABLE kept (id int)");
    port.rows("INSERT INTO kept VALUES (7)");
    assert_eq!(port.finish().0, 0);
    assert!(memory.exists(), "kept after a clean shutdown");

    let mut port = Port::spawn_with("memory://", &[("PGLITE_MEMORY_DIR", dir), ("PGLITE_DATABASE", "app_test")]);
    port.read_frame_messages();
    assert_eq!(port.rows("SELECT current_database()"), vec![vec![Some("app_test".into())]]);
    assert_eq!(port.rows("SELECT count(*) FROM pg_database WHERE datname = 'app_test'"), vec![vec![Some("1".into())]]);
    assert_eq!(port.finish().0, 0);
    assert!(!memory.exists(), "removed at a clean shutdown without the setting");
}

#[test]
fn a_second_port_on_the_same_directory_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = dir_arg(&tmp.path().join("db"));
    let (mut first, _) = Port::ready(&dir);
    first.rows("CREATE TABLE mine (v text)");
    first.rows("INSERT INTO mine VALUES ('untouched')");

    let second = Port::spawn(&dir);
    let (code, stderr) = second.finish();
    assert_eq!(code, 4, "{stderr}");
    assert!(stderr.contains("in use by another pglite-port"), "{stderr}");

    assert_eq!(first.rows("SELECT v FROM mine"), vec![vec![Some("untouched".into())]]);
    assert_eq!(first.finish().0, 0);
}

#[test]
fn a_missing_database_is_created_on_first_start() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = dir_arg(&tmp.path().join("db"));
    let mut port = Port::spawn_with(&dir, &[("PGLITE_DATABASE", "app_dev")]);
    port.read_frame_messages();
    assert_eq!(port.rows("SELECT current_database()"), vec![vec![Some("app_dev".into())]]);
    port.rows("CREATE TABLE in_app (x int)");
    assert_eq!(port.finish().0, 0);

    let mut port = Port::spawn_with(&dir, &[("PGLITE_DATABASE", "app_dev")]);
    port.read_frame_messages();
    assert_eq!(port.rows("SELECT count(*) FROM in_app"), vec![vec![Some("0".into())]]);
    assert_eq!(port.finish().0, 0);
}

#[test]
fn a_non_empty_foreign_directory_is_refused_and_left_alone() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("notes.txt"), "mine").unwrap();
    let port = Port::spawn(&dir_arg(tmp.path()));
    let (code, stderr) = port.finish();
    assert_eq!(code, 1);
    assert!(stderr.contains("not a PostgreSQL data directory"), "{stderr}");
    assert_eq!(std::fs::read_to_string(tmp.path().join("notes.txt")).unwrap(), "mine");
}

/// The in-memory data directory reads the shared template in the cache directory and
/// copies on write: whatever PostgreSQL does, the template stays as it was.
#[test]
fn an_in_memory_instance_never_writes_the_shared_template() {
    let (mut port, _) = Port::ready("memory://");
    let cache = <pglite_port::config::Config as clap::Parser>::parse_from(["pglite-port"]).cache_dir();
    let template = std::fs::read_dir(&cache)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.file_name().unwrap().to_string_lossy().contains("-pgdata-"))
        .expect("the unpacked template");
    let digest = || {
        let mut files = Vec::new();
        let mut dirs = vec![template.clone()];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    dirs.push(path);
                } else {
                    files.push((path.clone(), std::fs::read(&path).unwrap()));
                }
            }
        }
        files.sort();
        files
    };
    let before = digest();
    for sql in [
        "VACUUM FULL pg_class",
        "CREATE DATABASE scratch",
        "DROP DATABASE scratch",
        "CREATE TABLE t AS SELECT g FROM generate_series(1, 50000) g",
        "COMMENT ON TABLE pg_class IS 'written in memory only'",
        "CHECKPOINT",
    ] {
        port.rows(sql);
    }
    assert_eq!(port.rows("SELECT count(*) FROM t"), vec![vec![Some("50000".into())]]);
    assert_eq!(port.finish().0, 0);
    assert!(before == digest(), "the template in {} changed", template.display());
}
