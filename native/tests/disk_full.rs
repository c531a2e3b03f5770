//! A full disk, for real: a data directory on a small tmpfs, the rest of it taken by a
//! file. PostgreSQL says what a server says (53100 "could not extend file ...: No
//! space left on device", HINT "Check free disk space."), the session goes on, and once
//! space is freed the same statement succeeds. Mounting needs root (as CI runs).
mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use support::*;

/// A tmpfs mounted for the test's length.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size_mb: u32) -> Tmpfs {
        std::fs::create_dir_all(dir).unwrap();
        let out = Command::new("mount").args(["-t", "tmpfs", "-o", &format!("size={size_mb}m"), "tmpfs"]).arg(dir).output().unwrap();
        assert!(out.status.success(), "this test mounts a tmpfs (root needed): {}", String::from_utf8_lossy(&out.stderr));
        Tmpfs(dir.to_path_buf())
    }

    fn available_kb(&self) -> u64 {
        let out = Command::new("df").args(["-Pk"]).arg(&self.0).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        text.lines().nth(1).and_then(|l| l.split_whitespace().nth(3)).and_then(|v| v.parse().ok()).unwrap()
    }

    /// Takes all but `leave_kb` of the free space.
    fn fill(&self, leave_kb: u64) -> PathBuf {
        let filler = self.0.join("filler");
        let kb = self.available_kb().saturating_sub(leave_kb);
        let status = Command::new("fallocate").args(["-l", &format!("{}", kb * 1024)]).arg(&filler).status().unwrap();
        assert!(status.success());
        filler
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn a_full_disk_is_error_53100_and_the_session_goes_on_until_space_is_freed() {
    let tmp = tempfile::tempdir().unwrap();
    let disk = Tmpfs::mount(&tmp.path().join("disk"), 150);
    let dir = dir_arg(&disk.0.join("db"));
    let (mut port, _) = Port::ready(&dir);
    port.rows("CREATE TABLE t (v text)");
    port.rows("CHECKPOINT");
    let filler = disk.fill(6_000);

    let insert = "INSERT INTO t SELECT repeat('x', 1000) FROM generate_series(1, 20000)";
    let reply = port.simple(insert);
    let error = reply.iter().find(|m| m.tag == b'E').expect("an error on a full disk");
    assert_eq!(error.field(b'C').as_deref(), Some("53100"), "{}", error.text());
    let message = error.field(b'M').unwrap();
    assert!(message.starts_with("could not extend file") && message.ends_with("No space left on device"), "{message}");
    assert_eq!(error.field(b'H').as_deref(), Some("Check free disk space."));
    assert_eq!(ready_status(&reply), b'I');
    assert_eq!(port.rows("SELECT count(*) FROM t"), vec![vec![Some("0".into())]]);

    std::fs::remove_file(filler).unwrap();
    assert_eq!(ready_status(&port.simple(insert)), b'I');
    assert_eq!(port.rows("SELECT count(*) FROM t"), vec![vec![Some("20000".into())]]);
    assert_eq!(port.finish().0, 0);
}
