//! Checks the frontend byte stream before the backend sees it. PostgreSQL treats an
//! unknown message type or an impossible length as fatal and ends the session; the
//! port instead refuses the frame that carries it and keeps the session alive.

/// Longest frontend message PostgreSQL accepts (PQ_LARGE_MESSAGE_LIMIT).
const MAX_MESSAGE_LEN: usize = (1 << 30) - 1;

/// What to do with one stdin frame.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Pass the first `forward` bytes to the backend; if `terminate`, a Terminate
    /// message followed them and the session should end cleanly.
    Forward { forward: usize, terminate: bool },
    /// Drop the whole frame and answer with an 08P01 ErrorResponse.
    Reject(String),
    /// A CancelRequest packet, alone in its frame between messages: cancel the request
    /// in stdin frames `first..=last` (numbered from 1, every frame that is not a cancel
    /// counts), taken from its pid and key fields; 0 and 0 mean whatever runs now.
    Cancel { first: u32, last: u32 },
    /// An IdleProbe packet, alone in its frame between messages: once the backend has
    /// answered every frame before it and waits for input, write [`IDLE_REPLY`].
    Probe,
}

/// The CancelRequest packet: length 16, code 80877102, then pid and key.
const CANCEL_REQUEST: [u8; 8] = [0, 0, 0, 16, 0x04, 0xd2, 0x16, 0x2e];

/// The IdleProbe packet (length 8, code 1234/5700), ours alone: the front end asks
/// whether the backend has answered everything it was sent.
pub const IDLE_PROBE: [u8; 8] = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x44];

/// The port's answer to an IdleProbe: a frame no backend message can start (type 0).
pub const IDLE_REPLY: &[u8] = b"\0pglite:idle";

/// Message boundaries carried from one frame to the next, so a frame may end (and the
/// next begin) in the middle of a message, as a COPY stream split over frames does.
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
        let mut next = self.clone();
        let mut pos = 0;
        while pos < frame.len() {
            if next.body_left > 0 {
                let take = next.body_left.min(frame.len() - pos);
                next.body_left -= take;
                pos += take;
                continue;
            }
            let take = (5 - next.header.len()).min(frame.len() - pos);
            next.header.extend_from_slice(&frame[pos..pos + take]);
            pos += take;
            if next.header.len() < 5 {
                break;
            }
            let tag = next.header[0];
            let len = u32::from_be_bytes([next.header[1], next.header[2], next.header[3], next.header[4]]) as usize;
            if let Err(reason) = check_header(tag, len) {
                return Verdict::Reject(reason);
            }
            next.header.clear();
            next.body_left = len - 4;
            if tag == b'X' {
                *self = next;
                return Verdict::Forward { forward: pos - 5, terminate: true };
            }
        }
        *self = next;
        Verdict::Forward { forward: frame.len(), terminate: false }
    }
}

fn check_header(tag: u8, len: usize) -> Result<(), String> {
    let fixed_four = matches!(tag, b'S' | b'H' | b'X' | b'c');
    let known = fixed_four || matches!(tag, b'Q' | b'P' | b'B' | b'E' | b'D' | b'C' | b'd' | b'f' | b'F' | b'p');
    if !known {
        return Err(format!("invalid frontend message type {tag} ({:?})", tag as char));
    }
    if len < 4 || len > MAX_MESSAGE_LEN || (fixed_four && len != 4) {
        return Err(format!("invalid message length {len} for message type {:?}", tag as char));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{message, query};

    #[test]
    fn whole_messages_pass() {
        let mut g = FrontendGuard::default();
        let mut f = query("SELECT 1");
        f.extend(message(b'S', b""));
        assert_eq!(g.inspect(&f), Verdict::Forward { forward: f.len(), terminate: false });
    }

    #[test]
    fn messages_may_span_frames() {
        let mut g = FrontendGuard::default();
        let copy = message(b'd', b"1\t2\n");
        let (a, b) = copy.split_at(3);
        assert_eq!(g.inspect(a), Verdict::Forward { forward: 3, terminate: false });
        assert_eq!(g.inspect(b), Verdict::Forward { forward: b.len(), terminate: false });
        assert!(matches!(g.inspect(&query("x")), Verdict::Forward { .. }));
    }

    #[test]
    fn unknown_type_and_bad_lengths_are_rejected_without_losing_state() {
        let mut g = FrontendGuard::default();
        assert!(matches!(g.inspect(&message(b'?', b"")), Verdict::Reject(_)));
        assert!(matches!(g.inspect(&[b'Q', 0, 0, 0, 2]), Verdict::Reject(_)));
        assert!(matches!(g.inspect(&[b'S', 0, 0, 0, 9, 0, 0, 0, 0, 0]), Verdict::Reject(_)));
        assert!(matches!(g.inspect(&[b'Q', 0x7f, 0xff, 0xff, 0xff]), Verdict::Reject(_)));
        let q = query("SELECT 1");
        assert_eq!(g.inspect(&q), Verdict::Forward { forward: q.len(), terminate: false });
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
        assert_eq!(g.inspect(&cancel), Verdict::Forward { forward: 16, terminate: false });
    }

    #[test]
    fn an_idle_probe_between_messages_is_a_probe() {
        let mut g = FrontendGuard::default();
        assert_eq!(g.inspect(&IDLE_PROBE), Verdict::Probe);
        let copy = message(b'd', &[0u8; 8]);
        assert!(matches!(g.inspect(&copy[..5]), Verdict::Forward { .. }));
        assert_eq!(g.inspect(&IDLE_PROBE), Verdict::Forward { forward: 8, terminate: false });
    }

    #[test]
    fn terminate_ends_the_forwarded_part() {
        let mut g = FrontendGuard::default();
        let mut f = query("SELECT 1");
        let n = f.len();
        f.extend(message(b'X', b""));
        assert_eq!(g.inspect(&f), Verdict::Forward { forward: n, terminate: true });
    }
}
