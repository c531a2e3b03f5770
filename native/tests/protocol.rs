//! The stdio protocol: the ready frame, then all of PostgreSQL passing through.

mod support;
use support::*;

fn parse(name: &str, sql: &str, param_types: &[u32]) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(name.as_bytes());
    b.push(0);
    b.extend_from_slice(sql.as_bytes());
    b.push(0);
    b.extend_from_slice(&(param_types.len() as u16).to_be_bytes());
    for t in param_types {
        b.extend_from_slice(&t.to_be_bytes());
    }
    message(b'P', &b)
}

/// Bind with all parameters in binary and results in `result_format`.
fn bind(stmt: &str, params: &[&[u8]], result_format: u16) -> Vec<u8> {
    let mut b = vec![0u8]; // unnamed portal
    b.extend_from_slice(stmt.as_bytes());
    b.push(0);
    b.extend_from_slice(&1u16.to_be_bytes());
    b.extend_from_slice(&1u16.to_be_bytes()); // binary parameters
    b.extend_from_slice(&(params.len() as u16).to_be_bytes());
    for p in params {
        b.extend_from_slice(&(p.len() as i32).to_be_bytes());
        b.extend_from_slice(p);
    }
    b.extend_from_slice(&1u16.to_be_bytes());
    b.extend_from_slice(&result_format.to_be_bytes());
    message(b'B', &b)
}

fn describe_portal() -> Vec<u8> {
    message(b'D', b"P\0")
}

fn execute() -> Vec<u8> {
    message(b'E', &[0, 0, 0, 0, 0])
}

fn sync() -> Vec<u8> {
    message(b'S', b"")
}

#[test]
fn first_frame_is_the_session_startup_reply() {
    let (port, startup) = Port::ready("memory://");
    assert_eq!(startup[0].tag, b'R', "AuthenticationOk first");
    assert_eq!(startup[0].body, [0, 0, 0, 0]);
    let params: Vec<String> = startup.iter().filter(|m| m.tag == b'S').map(Msg::text).collect();
    assert!(params.iter().any(|p| p.starts_with("server_version\u{0}17")), "{params:?}");
    assert!(params.iter().any(|p| p.starts_with("server_encoding\u{0}UTF8")), "{params:?}");
    assert!(startup.iter().any(|m| m.tag == b'K'), "BackendKeyData");
    assert_eq!(ready_status(&startup), b'I');
    let (code, _) = port.finish();
    assert_eq!(code, 0);
}

#[test]
fn simple_queries_errors_transactions_and_savepoints() {
    let (mut port, _) = Port::ready("memory://");
    assert_eq!(port.rows("SELECT 1 AS one"), vec![vec![Some("1".into())]]);

    let err = port.simple("SELECT 1/0");
    let e = err.iter().find(|m| m.tag == b'E').expect("ErrorResponse");
    assert_eq!(e.field(b'C').as_deref(), Some("22012"));
    assert_eq!(ready_status(&err), b'I');
    assert_eq!(port.rows("SELECT 2"), vec![vec![Some("2".into())]], "healthy after an error");

    port.rows("CREATE TABLE t (id int PRIMARY KEY, v text)");
    assert_eq!(ready_status(&port.simple("BEGIN")), b'T');
    port.rows("INSERT INTO t VALUES (1, 'a')");
    port.rows("SAVEPOINT s1");
    port.rows("INSERT INTO t VALUES (2, 'b')");
    let dup = port.simple("INSERT INTO t VALUES (1, 'dup')");
    assert_eq!(dup.iter().find(|m| m.tag == b'E').unwrap().field(b'C').as_deref(), Some("23505"));
    assert_eq!(ready_status(&dup), b'E', "failed transaction");
    assert_eq!(ready_status(&port.simple("ROLLBACK TO SAVEPOINT s1")), b'T');
    assert_eq!(ready_status(&port.simple("COMMIT")), b'I');
    assert_eq!(port.rows("SELECT id, v FROM t ORDER BY id"), vec![vec![Some("1".into()), Some("a".into())]]);

    // Several statements in one Query, one of them failing: the rest is skipped.
    let multi = port.simple("SELECT 10; SELECT nope; SELECT 11");
    assert_eq!(tags(&multi).matches('D').count(), 1);
    assert_eq!(ready_status(&multi), b'I');
    assert_eq!(port.finish().0, 0);
}

/// An ERROR unwinds the guest's wasm frames but not its C stack; the port puts the
/// stack pointer back, as longjmp would. Before that, ~7,000 errors ran the stack
/// into the heap: the port hung or died with SIGSEGV.
#[test]
fn fifteen_thousand_errors_leave_the_backend_serving() {
    let (mut port, _) = Port::ready("memory://");
    let mut errors = 0;
    // Batches of 100, read before the next: neither pipe ever fills.
    for round in 0..150 {
        let mut batch = Vec::new();
        for i in 0..100 {
            match (round + i) % 3 {
                0 => batch.extend(query("SELECT 1/0")),
                1 => batch.extend(query("SELECT * FROM no_such_table")),
                _ => {
                    batch.extend(parse("", "SELEKT 1", &[]));
                    batch.extend(sync());
                }
            }
        }
        port.send(&batch);
        for _ in 0..100 {
            errors += port.until_ready().iter().filter(|m| m.tag == b'E').count();
        }
    }
    assert_eq!(errors, 15_000);
    assert_eq!(port.rows("SELECT 42"), vec![vec![Some("42".into())]]);
    assert_eq!(port.finish().0, 0);
}

/// Wasm backtraces are walked only on request (native/backtrace): the backend throws a
/// wasm exception on every request, so with PGLITE_WASM_BACKTRACE=1 each query and
/// each ERROR walks the native stack through the compiled guest's frames.
#[test]
fn with_wasm_backtraces_on_queries_and_errors_still_work() {
    let mut port = Port::spawn_with("memory://", &[("PGLITE_WASM_BACKTRACE", "1")]);
    port.read_frame().expect("startup reply");
    for i in 0..200 {
        assert_eq!(port.rows(&format!("SELECT {i}")), vec![vec![Some(i.to_string())]]);
        let err = port.simple("SELECT 1/0");
        assert_eq!(err.iter().find(|m| m.tag == b'E').and_then(|e| e.field(b'C')).as_deref(), Some("22012"));
    }
    assert_eq!(port.finish().0, 0);
}

/// Compiled PostgreSQL runs on an 8 MiB native stack: Wasmer's default 1 MiB ended
/// the backend at 300-500 levels of a recursive PL/pgSQL function.
#[test]
fn a_recursive_plpgsql_function_goes_two_thousand_levels_deep() {
    let (mut port, _) = Port::ready("memory://");
    port.rows("CREATE FUNCTION depth(n int) RETURNS int AS $$ BEGIN IF n <= 0 THEN RETURN 0; END IF; RETURN depth(n - 1) + 1; END $$ LANGUAGE plpgsql");
    assert_eq!(port.rows("SELECT depth(2000)"), vec![vec![Some("2000".into())]]);
    assert_eq!(port.rows("SELECT 7"), vec![vec![Some("7".into())]]);
    assert_eq!(port.finish().0, 0);
}

/// Runaway recursion is ERROR 54001, as on a server, and the session goes on: a
/// PL/pgSQL function calling itself (PostgreSQL's own check) and nested json or a deep
/// regex (compiled code runs out of native stack first: the trap becomes the same
/// ERROR). Again and again, and inside a transaction, which fails as on a server.
#[test]
fn runaway_recursion_is_error_54001_and_the_session_goes_on() {
    let (mut port, _) = Port::ready("memory://");
    port.rows("CREATE TABLE kept AS SELECT 1 AS v");
    port.rows("CREATE FUNCTION forever(n int) RETURNS int AS $$ BEGIN RETURN forever(n + 1); END $$ LANGUAGE plpgsql");
    let runaway = [
        "SELECT forever(1)",
        "SELECT repeat('[', 1000000)::jsonb",
        "SELECT 'x' ~ (repeat('(', 200000) || 'x' || repeat(')', 200000))",
        // Run by the executor, not folded by the planner: the trap leaves a portal
        // running (it once made every later query fail: "cannot drop active portal").
        "SELECT repeat('[', n)::jsonb FROM generate_series(1000000, 1000000) n",
    ];
    for sql in runaway {
        for _ in 0..10 {
            port.send(&query(sql));
            let reply = port.until_ready();
            assert_eq!(error_of(&reply), (Some("54001".into()), Some("stack depth limit exceeded".into())), "{sql}");
            assert_eq!(ready_status(&reply), b'I');
        }
    }
    // Raised in a Bind (the planner folds the parameter's cast): the error context
    // callbacks of the unwound frames must not be called (the backend died of it).
    let nested = vec![b'['; 1_000_000];
    let mut request = parse("", "SELECT $1::jsonb", &[25]);
    request.extend(bind("", &[&nested], 0));
    request.extend(execute());
    request.extend(sync());
    port.send(&request);
    assert_eq!(error_of(&port.until_ready()).0.as_deref(), Some("54001"));
    port.rows("BEGIN");
    port.rows("INSERT INTO kept VALUES (2)");
    port.send(&query(runaway[1]));
    assert_eq!(ready_status(&port.until_ready()), b'E');
    port.rows("ROLLBACK");
    assert_eq!(port.rows("SELECT count(*) FROM kept"), vec![vec![Some("1".into())]]);
    assert_eq!(port.finish().0, 0);
}

/// A ROLLBACK TO SAVEPOINT that fails in an already failed transaction, then an
/// Execute of its portal: the errors a PostgreSQL 15 server gives, and ROLLBACK still
/// ends the transaction (the portal was left running: "cannot drop active portal" for
/// every later query, found by the fuzzer).
#[test]
fn a_failed_rollback_to_savepoint_leaves_no_portal_running() {
    let (mut port, _) = Port::ready("memory://");
    port.rows("BEGIN");
    assert_eq!(error_of(&port.simple("SELECT 1/0")).0.as_deref(), Some("22012"));
    assert_eq!(error_of(&port.simple("ROLLBACK TO SAVEPOINT a")).0.as_deref(), Some("3B001"));
    port.send(&[execute(), sync()].concat());
    let reply = port.until_ready();
    assert_eq!(error_of(&reply), (Some("55000".into()), Some("portal \"\" cannot be run".into())));
    assert_eq!(ready_status(&reply), b'E');
    port.send(&query("ROLLBACK"));
    assert_eq!(ready_status(&port.until_ready()), b'I');
    assert_eq!(port.rows("SELECT 42"), vec![vec![Some("42".into())]]);
    assert_eq!(port.finish().0, 0);
}

#[test]
fn extended_protocol_binary_parameters_and_pipelining() {
    let (mut port, _) = Port::ready("memory://");
    // int4 23, text 25: binary int4 parameter, binary result.
    let mut batch = parse("add", "SELECT $1::int4 + 1, $2::text", &[23, 25]);
    batch.extend(bind("add", &[&41i32.to_be_bytes(), b"hi"], 1));
    batch.extend(describe_portal());
    batch.extend(execute());
    batch.extend(sync());
    port.send(&batch);
    let msgs = port.until_ready();
    assert_eq!(tags(&msgs), "12TDCZ");
    let row = msgs.iter().find(|m| m.tag == b'D').unwrap();
    assert_eq!(&row.body[6..10], &42i32.to_be_bytes(), "binary int4 result");

    // Pipelined: three Bind/Execute/Sync groups in one frame; the middle one fails.
    let mut pipe = Vec::new();
    for v in [1i32, 0, 3] {
        pipe.extend(parse("", "SELECT 12 / $1::int4", &[23]));
        pipe.extend(bind("", &[&v.to_be_bytes()], 0));
        pipe.extend(execute());
        pipe.extend(sync());
    }
    port.send(&pipe);
    let first = port.until_ready();
    assert_eq!(first.iter().find(|m| m.tag == b'D').unwrap().values(), vec![Some("12".into())]);
    let second = port.until_ready();
    assert_eq!(second.iter().find(|m| m.tag == b'E').unwrap().field(b'C').as_deref(), Some("22012"));
    let third = port.until_ready();
    assert_eq!(third.iter().find(|m| m.tag == b'D').unwrap().values(), vec![Some("4".into())]);

    // Flush (no Sync) returns what is ready and keeps the request open.
    let mut flushed = parse("q", "SELECT 5", &[]);
    flushed.extend(message(b'H', b""));
    port.send(&flushed);
    let frame = port.read_frame().expect("ParseComplete after Flush");
    assert_eq!(frame[0], b'1');
    let mut rest = bind("q", &[], 0);
    rest.extend(execute());
    rest.extend(sync());
    port.send(&rest);
    assert_eq!(tags(&port.until_ready()), "2DCZ");
    assert_eq!(port.finish().0, 0);
}

#[test]
fn copy_in_split_over_frames_and_copy_out() {
    let (mut port, _) = Port::ready("memory://");
    port.rows("CREATE TABLE c (a int, b text)");
    port.send(&query("COPY c FROM STDIN"));
    let g = port.read_frame().expect("CopyInResponse");
    assert_eq!(g[0], b'G');
    let mut data = Vec::new();
    for i in 0..1000 {
        data.extend(message(b'd', format!("{i}\trow {i}\n").as_bytes()));
    }
    data.extend(message(b'c', b""));
    // Frames cut at arbitrary points, even inside a message header.
    for chunk in data.chunks(777) {
        port.send(chunk);
    }
    let done = port.until_ready();
    assert!(done.iter().any(|m| m.tag == b'C' && m.text().starts_with("COPY 1000")), "{:?}", tags(&done));
    assert_eq!(port.rows("SELECT count(*), sum(a) FROM c"), vec![vec![Some("1000".into()), Some("499500".into())]]);

    // CopyFail aborts the COPY with an error, and the session goes on.
    port.send(&query("COPY c FROM STDIN"));
    port.read_frame().expect("CopyInResponse");
    port.send(&message(b'f', b"client gave up\0"));
    let failed = port.until_ready();
    assert_eq!(failed.iter().find(|m| m.tag == b'E').unwrap().field(b'C').as_deref(), Some("57014"));

    let out = port.simple("COPY (SELECT a FROM c WHERE a < 3 ORDER BY a) TO STDOUT");
    let lines: Vec<String> = out.iter().filter(|m| m.tag == b'd').map(Msg::text).collect();
    assert_eq!(lines, vec!["0\n", "1\n", "2\n"]);
    assert_eq!(port.finish().0, 0);
}

#[test]
fn listen_notify_plpgsql_large_values_and_large_results() {
    let (mut port, _) = Port::ready("memory://");
    port.rows("LISTEN jobs");
    let n = port.simple("NOTIFY jobs, 'payload-1'");
    let a = n.iter().find(|m| m.tag == b'A').expect("NotificationResponse");
    assert!(a.text().contains("jobs\u{0}payload-1"), "{}", a.text());

    port.rows(
        "CREATE FUNCTION fib(n int) RETURNS int LANGUAGE plpgsql AS $$ \
         BEGIN IF n < 2 THEN RETURN n; END IF; RETURN fib(n-1) + fib(n-2); END $$",
    );
    assert_eq!(port.rows("SELECT fib(15)"), vec![vec![Some("610".into())]]);

    let big = port.rows("SELECT repeat('x', 10000000)");
    assert_eq!(big[0][0].as_ref().unwrap().len(), 10_000_000);
    port.rows("CREATE TABLE blobs (b text)");
    let value = "y".repeat(10_000_000);
    port.rows(&format!("INSERT INTO blobs VALUES ('{value}')"));
    assert_eq!(port.rows("SELECT length(b) FROM blobs"), vec![vec![Some("10000000".into())]]);

    let rows = port.simple("SELECT g, 'row ' || g FROM generate_series(1, 100000) g");
    assert_eq!(rows.iter().filter(|m| m.tag == b'D').count(), 100_000);
    assert!(rows.iter().any(|m| m.tag == b'C' && m.text().starts_with("SELECT 100000")));
    assert_eq!(port.finish().0, 0);
}

#[test]
fn malformed_frames_get_08p01_and_the_port_keeps_serving() {
    let (mut port, _) = Port::ready("memory://");
    for bad in [message(b'?', b"junk"), vec![b'Q', 0, 0, 0, 1], vec![0, 0, 0, 8, 0, 3, 0, 0]] {
        port.send(&bad);
        let reply = port.until_ready();
        let e = reply.iter().find(|m| m.tag == b'E').expect("ErrorResponse");
        assert_eq!(e.field(b'C').as_deref(), Some("08P01"));
        assert_eq!(ready_status(&reply), b'I');
    }
    assert_eq!(port.rows("SELECT 3"), vec![vec![Some("3".into())]]);
    // Inside a transaction, the refusal reports the transaction status honestly.
    port.rows("BEGIN");
    port.send(&message(b'!', b""));
    assert_eq!(ready_status(&port.until_ready()), b'T');
    port.rows("COMMIT");
    assert_eq!(port.finish().0, 0);
}

/// Frames shorter than a message header: a bad type byte in one never reaches the
/// backend (it would end the session), and a good header split over frames still
/// carries its message.
#[test]
fn headers_split_over_short_frames_are_checked_before_the_backend_reads_them() {
    let (mut port, _) = Port::ready("memory://");
    port.send(b"ab");
    port.send(&query("SELECT 1"));
    let reply = port.until_ready();
    assert_eq!(error_of(&reply).0.as_deref(), Some("08P01"), "{}", tags(&reply));

    let q = query("SELECT 42");
    for piece in q.chunks(2) {
        port.send(piece);
    }
    assert_eq!(port.until_ready().iter().filter(|m| m.tag == b'D').count(), 1);

    // A Terminate split over two frames ends the session cleanly.
    port.send(b"X");
    port.send(&[0, 0, 0, 4]);
    assert_eq!(port.wait().0, 0);
}

/// The binary inet/cidr family byte is a server's (2 for IPv4, 3 for IPv6), not
/// WASI's AF_INET (1), both ways (the module is patched: inet_family.rs).
#[test]
fn binary_inet_and_cidr_carry_the_servers_family_byte() {
    let (mut port, _) = Port::ready("memory://");
    let sent = port.rows("SELECT encode(inet_send('1.2.3.4/32'::inet), 'hex'), encode(cidr_send('2001:db8::/32'::cidr), 'hex')");
    assert_eq!(sent, vec![vec![Some("0220000401020304".into()), Some("0320011020010db8000000000000000000000000".into())]]);
    let mut request = parse("", "SELECT $1::text", &[869]);
    request.extend(bind("", &[&[2, 24, 0, 4, 192, 168, 1, 5]], 0));
    request.extend(execute());
    request.extend(sync());
    port.send(&request);
    let reply = port.until_ready();
    let row = reply.iter().find(|m| m.tag == b'D').expect("a row");
    assert_eq!(row.values(), vec![Some("192.168.1.5/24".into())]);
    assert_eq!(port.finish().0, 0);
}

/// PauseOutput holds the backend's reply (it blocks in its write) until ResumeOutput;
/// the end of input releases held output so that a shutdown never waits.
#[test]
fn pause_output_holds_replies_until_resume_output() {
    let pause = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x45];
    let resume = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x46];
    let (mut port, _) = Port::ready("memory://");
    port.send(&pause);
    port.send(&query("SELECT 42"));
    assert!(!port.has_output_within(500), "held while paused");
    port.send(&resume);
    assert_eq!(port.until_ready().iter().filter(|m| m.tag == b'D').count(), 1);

    // Paused in the middle of a 10 MB result, then stdin ends: the rest comes and the
    // port shuts down.
    port.send(&query("SELECT repeat('x', 1000) FROM generate_series(1, 10000)"));
    port.send(&pause);
    port.close_stdin();
    let mut rows = 0;
    while let Some(frame) = port.read_frame() {
        rows += frame.windows(5).filter(|w| w[0] == b'D' && w[1..5] == [0, 0, 3, 0xf2]).count();
    }
    assert_eq!(rows, 10000);
    let (code, stderr) = port.wait();
    assert_eq!(code, 0, "{stderr}");
}

#[test]
fn oversized_frame_length_exits_2_with_a_message() {
    let (mut port, _) = Port::ready("memory://");
    port.send_raw(&[0x7f, 0xff, 0xff, 0xff]);
    let (code, stderr) = port.wait();
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("exceeds the limit"), "{stderr}");
}

#[test]
fn truncated_frame_at_eof_exits_2() {
    let (mut port, _) = Port::ready("memory://");
    port.send_raw(&[0, 0, 0, 50, b'Q']);
    let (code, stderr) = port.finish();
    assert_eq!(code, 2, "{stderr}");
}

#[test]
fn terminate_and_sigterm_shut_down_cleanly() {
    let (mut port, _) = Port::ready("memory://");
    port.send(&message(b'X', b""));
    assert_eq!(port.wait().0, 0);

    let (port, _) = Port::ready("memory://");
    let pid = port.child.id() as i32;
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let (code, stderr) = port.wait();
    assert_eq!(code, 0, "{stderr}");
}

#[test]
fn stdout_carries_frames_only_even_with_debug_logging() {
    let mut port = Port::spawn_with("memory://", &[("PGLITE_DEBUG", "5")]);
    let startup = port.read_frame_messages();
    assert_eq!(startup[0].tag, b'R');
    assert_eq!(port.rows("SELECT 7"), vec![vec![Some("7".into())]]);
    port.close_stdin();
    assert!(port.read_frame().is_none(), "nothing but frames on stdout");
    let (code, stderr) = port.wait();
    assert_eq!(code, 0);
    assert!(!stderr.is_empty(), "logs went to stderr");
}

#[test]
fn the_session_belongs_to_the_configured_user() {
    let mut port = Port::spawn_with("memory://", &[("PGLITE_USERNAME", "app_user")]);
    let startup = port.read_frame_messages();
    let params: Vec<String> = startup.iter().filter(|m| m.tag == b'S').map(Msg::text).collect();
    assert!(params.iter().any(|p| p == "session_authorization\u{0}app_user\u{0}"), "{params:?}");
    assert_eq!(port.rows("SELECT current_user, session_user"), vec![vec![Some("app_user".into()), Some("app_user".into())]]);
    assert_eq!(port.finish().0, 0);
}

/// A CancelRequest packet as a frame of its own (pid and key are the front end's).
fn cancel_request() -> Vec<u8> {
    cancel_frames(0, 0)
}

/// A CancelRequest aimed at the request in stdin frames `first..=last`.
fn cancel_frames(first: u32, last: u32) -> Vec<u8> {
    let mut packet = 16u32.to_be_bytes().to_vec();
    packet.extend(80_877_102u32.to_be_bytes());
    packet.extend(first.to_be_bytes());
    packet.extend(last.to_be_bytes());
    packet
}

fn error_of(msgs: &[Msg]) -> (Option<String>, Option<String>) {
    let e = msgs.iter().find(|m| m.tag == b'E').expect("an ErrorResponse");
    (e.field(b'C'), e.field(b'M'))
}

const LONG: &str = "SELECT count(*) FROM generate_series(1, 200000000)";

#[test]
fn a_cancel_request_frame_cancels_the_running_statement_and_the_session_goes_on() {
    let (mut port, _) = Port::ready("memory://");
    // A cancel while idle is ignored and does not hit the next statement.
    port.send(&cancel_request());
    assert_eq!(port.rows("SELECT 1"), vec![vec![Some("1".into())]]);

    port.send(&query(LONG));
    std::thread::sleep(std::time::Duration::from_millis(300));
    let started = std::time::Instant::now();
    port.send(&cancel_request());
    let reply = port.until_ready();
    let (code, message) = error_of(&reply);
    assert_eq!(code.as_deref(), Some("57014"));
    assert_eq!(message.as_deref(), Some("canceling statement due to user request"));
    assert!(started.elapsed() < std::time::Duration::from_secs(5), "cancelled, not run to its end");
    assert_eq!(ready_status(&reply), b'I');
    assert_eq!(port.rows("SELECT 2"), vec![vec![Some("2".into())]]);
    assert_eq!(port.finish().0, 0);
}

#[test]
fn statement_timeout_cancels_with_its_own_message() {
    let (mut port, _) = Port::ready("memory://");
    port.rows("SET statement_timeout = 200");
    let reply = port.simple(LONG);
    let (code, message) = error_of(&reply);
    assert_eq!(code.as_deref(), Some("57014"));
    assert_eq!(message.as_deref(), Some("canceling statement due to statement timeout"));
    // Quick statements are untouched, and without the timeout the long one finishes.
    assert_eq!(port.rows("SELECT 3"), vec![vec![Some("3".into())]]);
    port.rows("RESET statement_timeout");
    assert_eq!(port.rows("SELECT count(*) FROM generate_series(1, 1000000)"), vec![vec![Some("1000000".into())]]);
    assert_eq!(port.finish().0, 0);
}

/// A frame after an Untimed packet is the front end's cleanup between clients: a
/// statement_timeout a departed client left does not cancel it, and the frames around
/// it keep the timeout.
#[test]
fn an_untimed_frame_runs_past_the_sessions_statement_timeout() {
    let untimed = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x47];
    let (mut port, _) = Port::ready("memory://");
    port.rows("SET statement_timeout = 100");
    port.send(&untimed);
    assert_eq!(port.rows("SELECT count(*) FROM pg_sleep(0.5)"), vec![vec![Some("1".into())]]);
    let (code, _) = error_of(&port.simple("SELECT pg_sleep(0.5)"));
    assert_eq!(code.as_deref(), Some("57014"), "the next frame is timed again");
    assert_eq!(port.finish().0, 0);
}

#[test]
fn frames_sent_while_a_statement_runs_wait_their_turn_and_a_cancel_still_gets_through() {
    let (mut port, _) = Port::ready("memory://");
    port.send(&query(LONG));
    std::thread::sleep(std::time::Duration::from_millis(300));
    // Read off stdin by the watcher while LONG runs, then run after it.
    port.send(&query("SELECT 5"));
    std::thread::sleep(std::time::Duration::from_millis(100));
    let started = std::time::Instant::now();
    port.send(&cancel_request());
    let (code, _) = error_of(&port.until_ready());
    assert_eq!(code.as_deref(), Some("57014"));
    assert!(started.elapsed() < std::time::Duration::from_secs(5), "cancelled, not run to its end");
    let reply = port.until_ready();
    let row = reply.iter().find(|m| m.tag == b'D').expect("a row for SELECT 5");
    assert!(row.body.ends_with(b"5"), "{:?}", row.body);
    assert_eq!(port.finish().0, 0);
}

/// The front end writes the next client's request behind the running one; a cancel for
/// either must reach that one only.
#[test]
fn a_cancel_aimed_at_frames_hits_only_the_request_in_them() {
    let (mut port, _) = Port::ready("memory://");
    let short = "SELECT count(*) FROM generate_series(1, 2000000)";
    port.send(&query(short)); // frame 1
    port.send(&query(short)); // frame 2, queued behind it
    // Aimed at frame 2 while frame 1 runs: kept until frame 2 starts.
    port.send(&cancel_frames(2, 2));
    let first = port.until_ready();
    assert!(first.iter().all(|m| m.tag != b'E'), "frame 1 ran to its end: {first:?}");
    assert_eq!(error_of(&port.until_ready()).0.as_deref(), Some("57014"));

    port.send(&query(LONG)); // frame 3
    std::thread::sleep(std::time::Duration::from_millis(200));
    // Aimed at finished frames: ignored; aimed at frame 3: cancels it.
    port.send(&cancel_frames(1, 2));
    std::thread::sleep(std::time::Duration::from_millis(200));
    port.send(&cancel_frames(3, 3));
    let started = std::time::Instant::now();
    assert_eq!(error_of(&port.until_ready()).0.as_deref(), Some("57014"));
    assert!(started.elapsed() < std::time::Duration::from_secs(5), "cancelled, not run to its end");
    assert_eq!(port.rows("SELECT 6"), vec![vec![Some("6".into())]]);
    assert_eq!(port.finish().0, 0);
}

#[test]
fn an_idle_port_hands_back_its_zero_pages_and_keeps_every_byte() {
    let mut port = Port::spawn_with("memory://", &[("RUST_LOG", "pglite_port=debug")]);
    port.read_frame_messages();
    // Requests right after the start come first; the sweep waits for idle moments.
    port.rows("CREATE TABLE kept AS SELECT g, repeat(chr(65 + g % 26), 3000) AS pad FROM generate_series(1, 2000) g");
    let expected = port.rows("SELECT sum(g), sum(length(pad)), md5(string_agg(pad, '' ORDER BY g)) FROM kept");
    // Idle moments between requests: the sweep runs in them, a step at a time.
    for _ in 0..10 {
        std::thread::sleep(std::time::Duration::from_millis(100));
        assert_eq!(port.rows("SELECT sum(g), sum(length(pad)), md5(string_agg(pad, '' ORDER BY g)) FROM kept"), expected);
    }
    let (code, stderr) = port.finish();
    assert_eq!(code, 0, "{stderr}");
    let mib: usize = stderr
        .lines()
        .find_map(|l| l.split("released ").nth(1)?.split(" MiB of zero guest pages").next()?.parse().ok())
        .unwrap_or_else(|| panic!("no release in the log:\n{stderr}"));
    assert!(mib >= 16, "most of shared_buffers is zero at first: {mib} MiB released");
}

/// The port's resident memory, in MiB.
fn rss_mib(port: &Port) -> usize {
    let status = std::fs::read_to_string(format!("/proc/{}/status", port.child.id())).unwrap();
    let kb: usize = status.lines().find_map(|l| l.strip_prefix("VmRSS:")).unwrap().trim().trim_end_matches(" kB").parse().unwrap();
    kb >> 10
}

/// Waits (up to 10 s) for the port's resident memory to fall to `bound` MiB; its last figure.
fn rss_falls_to(port: &mut Port, bound: usize) -> usize {
    for _ in 0..100 {
        if rss_mib(port) <= bound {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    rss_mib(port)
}

#[test]
fn after_a_big_query_the_port_gives_its_memory_back_and_keeps_every_byte() {
    let mut port = Port::spawn("memory://");
    port.read_frame_messages();
    port.rows("CREATE TABLE kept AS SELECT g, md5(g::text) AS h FROM generate_series(1, 20000) g");
    let checksum = "SELECT sum(g), md5(string_agg(h, '' ORDER BY g)) FROM kept";
    let expected = port.rows(checksum);
    std::thread::sleep(std::time::Duration::from_millis(500));
    let idle = rss_mib(&port);
    // A server's backend holds none of these once they are done: each is 100-400 MiB.
    let big_value = "SELECT length(repeat('x', 200000000))";
    let bound = idle + 48;
    for round in 0..3 {
        assert_eq!(port.rows(big_value), vec![vec![Some("200000000".into())]]);
        let after = rss_falls_to(&mut port, bound);
        assert!(after <= bound, "round {round}: {after} MiB after a 200 MB value, {idle} MiB idle before");
        assert_eq!(port.rows(checksum), expected, "round {round}");
    }
    // A 100 MB parameter and a 60 MB result pass through the port's own buffers too.
    let param = vec![b'p'; 100_000_000];
    let mut batch = parse("", "SELECT length($1::bytea), md5($1::bytea)", &[]);
    batch.extend(bind("", &[&param], 0));
    batch.extend(execute());
    batch.extend(sync());
    port.send(&batch);
    let reply = port.until_ready();
    let row = reply.iter().find(|m| m.tag == b'D').expect("a row").values();
    assert_eq!(row[0].as_deref(), Some("100000000"));
    let after = rss_falls_to(&mut port, bound);
    assert!(after <= bound, "{after} MiB after a 100 MB parameter, {idle} MiB idle before");
    let result = port.rows("SELECT repeat('r', 60000000)");
    assert_eq!(result[0][0].as_ref().map(String::len), Some(60_000_000));
    drop(result);
    let after = rss_falls_to(&mut port, bound);
    assert!(after <= bound, "{after} MiB after a 60 MB result, {idle} MiB idle before");
    // Sorting and hashing in memory reuse the released pages: they read back as zeros.
    port.rows("SET work_mem = '1GB'");
    let sorted = port.rows("SELECT count(DISTINCT m), min(m) FROM (SELECT md5(i::text) m FROM generate_series(1, 1000000) i ORDER BY 1) s");
    let streamed = port.rows("SELECT count(*), min(md5(i::text)) FROM generate_series(1, 1000000) i");
    assert_eq!(sorted, streamed);
    assert_eq!(port.rows(checksum), expected);
    assert_eq!(port.finish().0, 0);
}
