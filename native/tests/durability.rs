//! Data in a directory: persistence across restarts, commits that survive kill -9,
//! one port per directory, a database created on first start.

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
