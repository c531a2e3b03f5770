//! Deterministic fuzzing of the standalone port's stdin. Mutated sequences of valid
//! frontend messages (bytes flipped, types changed, messages dropped, repeated,
//! swapped or added) never end the port, which answers after every case; broken
//! framing (messages cut, lengths changed, stray bytes, frames split anywhere) never
//! kills the backend. `PGLITE_FUZZ_CASES` runs more (by hand); `PGLITE_FUZZ_SHOW=N`
//! prints case N.

mod support;
use support::*;

/// xorshift64*: the same cases on every machine, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn corpus() -> Vec<Vec<Vec<u8>>> {
    let parse = |sql: &str| {
        let mut b = vec![0u8];
        b.extend_from_slice(sql.as_bytes());
        b.extend_from_slice(&[0, 0, 0]);
        message(b'P', &b)
    };
    let bind = message(b'B', &[0, 0, 0, 0, 0, 0, 0, 0]);
    let execute = message(b'E', &[0, 0, 0, 0, 0]);
    let sync = message(b'S', b"");
    vec![
        vec![query("SELECT 1")],
        vec![query("SELECT g FROM generate_series(1, 100) g")],
        vec![query("BEGIN"), query("SELECT 1/0"), query("ROLLBACK")],
        vec![parse("SELECT 2"), bind.clone(), message(b'D', b"P\0"), execute.clone(), sync.clone()],
        vec![parse("SELECT 1/0"), bind.clone(), execute.clone(), query("SELECT 3"), sync.clone()],
        vec![query("COPY (SELECT 1) TO STDOUT")],
        vec![query("SELECT repeat('[', 100000)::jsonb")],
    ]
}

/// Mutations that keep every message's length true to its body: the port must answer
/// whatever the contents. Returned as messages, to be framed whole (as the library
/// frames them).
fn mutate_contents(rng: &mut Rng, messages: &[Vec<u8>]) -> Vec<Vec<u8>> {
    let mut messages = messages.to_vec();
    for _ in 0..1 + rng.below(3) {
        let i = rng.below(messages.len());
        match rng.below(7) {
            0 if messages.len() > 1 => {
                messages.remove(i);
            }
            1 => messages.insert(i, messages[i].clone()),
            2 => {
                let j = rng.below(messages.len());
                messages.swap(i, j);
            }
            3 if messages[i].len() > 5 => {
                let at = 5 + rng.below(messages[i].len() - 5);
                messages[i][at] = rng.next() as u8;
            }
            4 => {
                // Any type but Terminate, which ends the session as it should.
                let types = b"QPBEDCSHFdcfp?\x00";
                messages[i][0] = types[rng.below(types.len())];
            }
            5 => {
                let body: Vec<u8> = (0..rng.below(16)).map(|_| rng.next() as u8).collect();
                messages.insert(i, message(b"QPBEDCFd"[rng.below(8)], &body));
            }
            _ => messages.push(message(b'S', b"")),
        }
    }
    messages
}

/// Whole messages, a few to a frame.
fn send_whole(port: &mut Port, rng: &mut Rng, messages: &[Vec<u8>]) {
    let mut rest = messages;
    while !rest.is_empty() {
        let take = 1 + rng.below(rest.len());
        port.send(&rest[..take].concat());
        rest = &rest[take..];
    }
}

/// Mutations of the framing itself: cut messages, lengths changed, bytes anywhere.
fn mutate_framing(rng: &mut Rng, messages: &[Vec<u8>]) -> Vec<u8> {
    let mut bytes = messages.concat();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(bytes.len());
        match rng.below(3) {
            0 => bytes.truncate(at.max(1)),
            1 => bytes[at] = rng.next() as u8,
            _ => {
                let junk: Vec<u8> = (0..1 + rng.below(8)).map(|_| rng.next() as u8).collect();
                bytes.splice(at..at, junk);
            }
        }
    }
    bytes
}

/// Sends `bytes` as frames cut anywhere.
fn send_in_pieces(port: &mut Port, rng: &mut Rng, bytes: &[u8]) {
    let mut rest = bytes;
    while !rest.is_empty() {
        let take = 1 + rng.below(rest.len());
        port.send(&rest[..take]);
        rest = &rest[take..];
    }
}

fn cases(default: usize) -> usize {
    std::env::var("PGLITE_FUZZ_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(default)
}

/// Garbage contents in well-framed messages (unknown types, bytes flipped, messages
/// dropped, repeated, swapped or added): after each case the port still answers,
/// and it never exits.
#[test]
fn mutated_messages_never_end_the_port() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let corpus = corpus();
    let (mut port, _) = Port::ready("memory://");
    for case in 0..cases(300) {
        let pick = rng.below(corpus.len());
        let messages = mutate_contents(&mut rng, &corpus[pick]);
        if std::env::var("PGLITE_FUZZ_SHOW").is_ok_and(|c| c == case.to_string()) {
            eprintln!("case {case}: {:?}", String::from_utf8_lossy(&messages.concat()));
        }
        send_whole(&mut port, &mut rng, &messages);
        // End what the case left open (an error to skip to Sync, a transaction), as a
        // front end would, then ask for a marker.
        let marker = format!("fuzz-{case}");
        port.send(&message(b'S', b""));
        port.send(&query("ROLLBACK"));
        port.send(&query(&format!("SELECT '{marker}'")));
        loop {
            assert!(port.has_output_within(30_000), "case {case}: the port went silent");
            let Some(frame) = port.read_frame() else {
                let (code, stderr) = port.wait();
                panic!("case {case}: the port exited with status {code}: {stderr}");
            };
            if frame.windows(marker.len()).any(|w| w == marker.as_bytes()) {
                break;
            }
        }
    }
    assert_eq!(port.rows("SELECT 'alive'"), vec![vec![Some("alive".into())]]);
    assert_eq!(port.finish().0, 0);
}

/// Broken framing (cut messages, changed lengths, stray bytes): refused or waited
/// on, never a dead backend. At the end of input the port exits 0, or 2 for a frame
/// cut short; 3 (the backend died) or a crash fails.
#[test]
fn broken_framing_never_kills_the_backend() {
    let mut rng = Rng(0x5851_f42d_4c95_7f2d);
    let corpus = corpus();
    for case in 0..cases(30) {
        let (mut port, _) = Port::ready("memory://");
        let pick = rng.below(corpus.len());
        let bytes = mutate_framing(&mut rng, &corpus[pick]);
        send_in_pieces(&mut port, &mut rng, &bytes);
        port.close_stdin();
        while port.read_frame().is_some() {}
        let (code, stderr) = port.wait();
        assert!(code == 0 || code == 2, "case {case}: exit status {code}: {stderr}");
    }
}
