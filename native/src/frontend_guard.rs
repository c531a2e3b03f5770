//! Checks the frontend byte stream before the backend sees it. PostgreSQL treats an
//! unknown message type or an impossible length as fatal and ends the session; the
//! port instead refuses the frame that carries it and keeps the session alive.

/// Longest frontend message PostgreSQL accepts (PQ_LARGE_MESSAGE_LIMIT).
const MAX_MESSAGE_LEN: usize = (1 << 30) - 1;

/// What to do with one stdin frame.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Pass `held` (the start of a message header from earlier frames), then the first
    /// `forward` bytes of the frame, to the backend; if `terminate`, a Terminate
    /// message followed them and the session should end cleanly. A header the frame
    /// ends inside is held back until it is whole and checked.
    Forward { held: Vec<u8>, forward: usize, terminate: bool },
    /// Pass `held` and the first `forward` bytes (the messages before a bad header),
    /// drop the rest of the frame and answer with an 08P01 ErrorResponse; the next
    /// frame starts a message.
    Reject { held: Vec<u8>, forward: usize, reason: String },
    /// A CancelRequest packet, alone in its frame between messages: cancel the request
    /// in stdin frames `first..=last` (numbered from 1, every frame that is not a cancel
    /// counts), taken from its pid and key fields; 0 and 0 mean whatever runs now.
    Cancel { first: u32, last: u32 },
    /// An IdleProbe packet, alone in its frame between messages: once the backend has
    /// answered every frame before it and waits for input, write [`IDLE_REPLY`].
    Probe,
    /// A PauseOutput or ResumeOutput packet, alone in its frame between messages:
    /// hold the backend's output, or let it flow again (`output_gate`).
    Pause,
    Resume,
    /// An Untimed packet, alone in its frame between messages: the next numbered frame
    /// is the front end's own (session cleanup between clients) and runs without the
    /// session's statement_timeout, which a departed client may have left tiny.
    Untimed,
}

/// The CancelRequest packet: length 16, code 80877102, then pid and key.
const CANCEL_REQUEST: [u8; 8] = [0, 0, 0, 16, 0x04, 0xd2, 0x16, 0x2e];

/// The IdleProbe packet (length 8, code 1234/5700), ours alone: the front end asks
/// whether the backend has answered everything it was sent.
pub const IDLE_PROBE: [u8; 8] = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x44];

/// PauseOutput and ResumeOutput (length 8, codes 1234/5701 and 1234/5702), ours too.
pub const PAUSE_OUTPUT: [u8; 8] = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x45];
pub const RESUME_OUTPUT: [u8; 8] = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x46];
/// Untimed (length 8, code 1234/5703), ours too.
pub const UNTIMED: [u8; 8] = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x47];

/// The port's answer to an IdleProbe: a frame no backend message can start (type 0).
pub const IDLE_REPLY: &[u8] = b"\0pglite:idle";

/// Message boundaries carried from one frame to the next, so a frame may end (and the
/// next begin) in the middle of a message, as a COPY stream split over frames does.
/// The bytes of a header cut by a frame's end are not forwarded until the header is
/// whole and checked: PostgreSQL ends the session on a bad type byte it has read.
#[derive(Debug, Default, Clone)]
pub struct FrontendGuard {
    header: Vec<u8>,
    body_left: usize,
}

impl FrontendGuard {
    pub fn inspect(&mut self, frame: &[u8]) -> Verdict {
        let between_messages = self.header.is_empty() && self.body_left == 0;
        if between_messages && frame.len() == 16 && frame.starts_with(&CANCEL_REQUEST) {
            let field = |at: usize| u32::from_be_bytes([frame[at], frame[at + 1], frame[at + 2], frame[at + 3]]);
            return Verdict::Cancel { first: field(8), last: field(12) };
        }
        if between_messages && frame == IDLE_PROBE {
            return Verdict::Probe;
        }
        if between_messages && frame == PAUSE_OUTPUT {
            return Verdict::Pause;
        }
        if between_messages && frame == RESUME_OUTPUT {
            return Verdict::Resume;
        }
        if between_messages && frame == UNTIMED {
            return Verdict::Untimed;
        }
        let held = self.header.clone();
        let mut next = self.clone();
        let mut pos = 0;
        while pos < frame.len() {
            if next.body_left > 0 {
                let take = next.body_left.min(frame.len() - pos);
                next.body_left -= take;
                pos += take;
                continue;
            }
            let started = pos;
            let take = (5 - next.header.len()).min(frame.len() - pos);
            next.header.extend_from_slice(&frame[pos..pos + take]);
            pos += take;
            if next.header.len() < 5 {
                // Held back: forwarded with the frame that completes it.
                *self = next;
                let held = if started == 0 { Vec::new() } else { held };
                return Verdict::Forward { held, forward: started, terminate: false };
            }
            let tag = next.header[0];
            let len = u32::from_be_bytes([next.header[1], next.header[2], next.header[3], next.header[4]]) as usize;
            if let Err(reason) = check_header(tag, len) {
                // What came before the bad header still goes (it may end a message
                // begun in an earlier frame); from the header on, nothing can be read.
                *self = FrontendGuard::default();
                let (held, forward) = before_header(held, started);
                return Verdict::Reject { held, forward, reason };
            }
            next.header.clear();
            next.body_left = len - 4;
            if tag == b'X' {
                // Only what came before the Terminate: none of its header is forwarded.
                *self = next;
                let (held, forward) = before_header(held, started);
                return Verdict::Forward { held, forward, terminate: true };
            }
        }
        *self = next;
        Verdict::Forward { held, forward: frame.len(), terminate: false }
    }
}

/// PostgreSQL's small-message limit (PQ_SMALL_MESSAGE_LIMIT): longer Describe, Close,
/// Execute, Sync, Flush, Terminate, CopyDone or CopyFail messages end its session.
const SMALL_MESSAGE_LEN: usize = 10_000;

/// What precedes a header that starts at `started` in the frame: `held` and the
/// frame's bytes before it, or nothing when the header began in `held` itself.
fn before_header(held: Vec<u8>, started: usize) -> (Vec<u8>, usize) {
    if started == 0 && !held.is_empty() {
        (Vec::new(), 0)
    } else {
        (held, started)
    }
}

fn check_header(tag: u8, len: usize) -> Result<(), String> {
    let fixed_four = matches!(tag, b'S' | b'H' | b'X' | b'c');
    // Not `p` (a password message): the session is open, and the backend ends it on one.
    let known = fixed_four || matches!(tag, b'Q' | b'P' | b'B' | b'E' | b'D' | b'C' | b'd' | b'f' | b'F');
    if !known {
        return Err(format!("invalid frontend message type {tag} ({:?})", tag as char));
    }
    let small = matches!(tag, b'D' | b'C' | b'E' | b'f') || fixed_four;
    if len < 4 || len > MAX_MESSAGE_LEN || (fixed_four && len != 4) || (small && len > SMALL_MESSAGE_LEN) {
        return Err(format!("invalid message length {len} for message type {:?}", tag as char));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{message, query};

    fn forward(forward: usize) -> Verdict {
        Verdict::Forward { held: Vec::new(), forward, terminate: false }
    }

    #[test]
    fn whole_messages_pass() {
        let mut g = FrontendGuard::default();
        let mut f = query("SELECT 1");
        f.extend(message(b'S', b""));
        assert_eq!(g.inspect(&f), forward(f.len()));
    }

    #[test]
    fn messages_may_span_frames() {
        let mut g = FrontendGuard::default();
        let copy = message(b'd', b"1\t2\n");
        let (a, b) = copy.split_at(7);
        assert_eq!(g.inspect(a), forward(7));
        assert_eq!(g.inspect(b), forward(b.len()));
        assert!(matches!(g.inspect(&query("x")), Verdict::Forward { .. }));
    }

    #[test]
    fn a_header_cut_by_a_frame_end_is_held_until_it_is_whole() {
        let mut g = FrontendGuard::default();
        let q = query("SELECT 1");
        let mut first = message(b'S', b"");
        first.extend(&q[..3]);
        assert_eq!(g.inspect(&first), forward(5));
        assert_eq!(g.inspect(&q[3..4]), forward(0));
        assert_eq!(g.inspect(&q[4..]), Verdict::Forward { held: q[..4].to_vec(), forward: q.len() - 4, terminate: false });
    }

    #[test]
    fn a_bad_type_byte_in_a_short_frame_never_reaches_the_backend() {
        let mut g = FrontendGuard::default();
        assert_eq!(g.inspect(b"ab"), forward(0));
        assert!(matches!(g.inspect(&query("SELECT 1")), Verdict::Reject { .. }));
        // Both dropped: the next message starts afresh.
        let q = query("SELECT 2");
        assert_eq!(g.inspect(&q), forward(q.len()));
    }

    #[test]
    fn a_terminate_split_over_frames_forwards_none_of_it() {
        let mut g = FrontendGuard::default();
        let q = query("SELECT 1");
        let mut first = q.clone();
        first.push(b'X');
        assert_eq!(g.inspect(&first), forward(q.len()));
        assert_eq!(g.inspect(&[0, 0, 0, 4]), Verdict::Forward { held: Vec::new(), forward: 0, terminate: true });
    }

    #[test]
    fn unknown_type_and_bad_lengths_are_rejected_without_losing_state() {
        let mut g = FrontendGuard::default();
        assert!(matches!(g.inspect(&message(b'?', b"")), Verdict::Reject { .. }));
        assert!(matches!(g.inspect(&[b'Q', 0, 0, 0, 2]), Verdict::Reject { .. }));
        assert!(matches!(g.inspect(&[b'S', 0, 0, 0, 9, 0, 0, 0, 0, 0]), Verdict::Reject { .. }));
        assert!(matches!(g.inspect(&[b'Q', 0x7f, 0xff, 0xff, 0xff]), Verdict::Reject { .. }));
        assert!(matches!(g.inspect(&message(b'p', b"secret\0")), Verdict::Reject { .. }));
        assert!(matches!(g.inspect(&message(b'D', &[b'S'; 10_000])), Verdict::Reject { .. }));
        let q = query("SELECT 1");
        assert_eq!(g.inspect(&q), forward(q.len()));
    }

    #[test]
    fn a_cancel_request_between_messages_is_a_cancel() {
        let mut g = FrontendGuard::default();
        let mut cancel = CANCEL_REQUEST.to_vec();
        cancel.extend([0, 0, 0, 7, 0, 0, 0, 9]);
        assert_eq!(g.inspect(&cancel), Verdict::Cancel { first: 7, last: 9 });
        // Inside a message (here a CopyData body) the same bytes are data.
        let copy = message(b'd', &[0u8; 20]);
        assert!(matches!(g.inspect(&copy[..9]), Verdict::Forward { .. }));
        assert_eq!(g.inspect(&cancel), forward(16));
    }

    #[test]
    fn an_idle_probe_between_messages_is_a_probe() {
        let mut g = FrontendGuard::default();
        assert_eq!(g.inspect(&IDLE_PROBE), Verdict::Probe);
        let copy = message(b'd', &[0u8; 8]);
        assert!(matches!(g.inspect(&copy[..5]), Verdict::Forward { .. }));
        assert_eq!(g.inspect(&IDLE_PROBE), forward(8));
    }

    #[test]
    fn the_messages_before_a_bad_header_still_go() {
        let mut g = FrontendGuard::default();
        let q = query("SELECT 1");
        // A message begun in one frame, ended in the next, then a bad header.
        assert_eq!(g.inspect(&q[..7]), forward(7));
        let mut rest = q[7..].to_vec();
        rest.extend(message(b'c', b"junk"));
        match g.inspect(&rest) {
            Verdict::Reject { held, forward, .. } => assert_eq!((held.len(), forward), (0, q.len() - 7)),
            other => panic!("{other:?}"),
        }
        assert_eq!(g.inspect(&q), forward(q.len()));
    }

    #[test]
    fn pause_and_resume_between_messages_are_flow_control() {
        let mut g = FrontendGuard::default();
        assert_eq!(g.inspect(&PAUSE_OUTPUT), Verdict::Pause);
        assert_eq!(g.inspect(&RESUME_OUTPUT), Verdict::Resume);
        assert_eq!(g.inspect(&UNTIMED), Verdict::Untimed);
        let copy = message(b'd', &[0u8; 8]);
        assert!(matches!(g.inspect(&copy[..5]), Verdict::Forward { .. }));
        assert_eq!(g.inspect(&PAUSE_OUTPUT), forward(8));
    }

    #[test]
    fn terminate_ends_the_forwarded_part() {
        let mut g = FrontendGuard::default();
        let mut f = query("SELECT 1");
        let n = f.len();
        f.extend(message(b'X', b""));
        assert_eq!(g.inspect(&f), Verdict::Forward { held: Vec::new(), forward: n, terminate: true });
    }
}
