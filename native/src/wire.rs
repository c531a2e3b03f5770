//! The few PostgreSQL v3 messages the port builds or reads itself: the startup packet,
//! Query, ErrorResponse and ReadyForQuery, plus a splitter for a backend byte stream.

/// Protocol version 3.0 as sent in a StartupMessage.
const PROTOCOL_V3: i32 = 196_608;

/// A StartupMessage for `user` on `database`.
pub fn startup_packet(user: &str, database: &str) -> Vec<u8> {
    let mut body = PROTOCOL_V3.to_be_bytes().to_vec();
    for (key, value) in [
        ("user", user),
        ("database", database),
        ("client_encoding", "UTF8"),
        ("DateStyle", "ISO, MDY"),
    ] {
        body.extend_from_slice(key.as_bytes());
        body.push(0);
        body.extend_from_slice(value.as_bytes());
        body.push(0);
    }
    body.push(0);
    let mut packet = ((body.len() + 4) as i32).to_be_bytes().to_vec();
    packet.extend_from_slice(&body);
    packet
}

/// A message with a type byte: tag, length (including itself), body.
pub fn message(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 5);
    out.push(tag);
    out.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
    out.extend_from_slice(body);
    out
}

/// A simple-protocol Query.
pub fn query(sql: &str) -> Vec<u8> {
    let mut body = sql.as_bytes().to_vec();
    body.push(0);
    message(b'Q', &body)
}

/// An ErrorResponse with severity ERROR.
pub fn error_response(sqlstate: &str, text: &str) -> Vec<u8> {
    let mut body = Vec::new();
    for (field, value) in [(b'S', "ERROR"), (b'V', "ERROR"), (b'C', sqlstate), (b'M', text)] {
        body.push(field);
        body.extend_from_slice(value.as_bytes());
        body.push(0);
    }
    body.push(0);
    message(b'E', &body)
}

/// ReadyForQuery with a transaction status byte (`I`, `T` or `E`).
pub fn ready_for_query(status: u8) -> Vec<u8> {
    message(b'Z', &[status])
}

/// Splits a buffer of backend messages into (tag, body) pairs; stops at a partial message.
pub fn messages(bytes: &[u8]) -> impl Iterator<Item = (u8, &[u8])> {
    let mut rest = bytes;
    std::iter::from_fn(move || {
        if rest.len() < 5 {
            return None;
        }
        let len = i32::from_be_bytes([rest[1], rest[2], rest[3], rest[4]]);
        let len = usize::try_from(len).ok().filter(|&n| n >= 4)?;
        if rest.len() < len + 1 {
            return None;
        }
        let (msg, tail) = rest.split_at(len + 1);
        rest = tail;
        Some((msg[0], &msg[5..]))
    })
}

/// The fields of an ErrorResponse or NoticeResponse body, as (code, text).
pub fn fields(body: &[u8]) -> Vec<(u8, String)> {
    body.split(|&b| b == 0)
        .filter(|f| !f.is_empty())
        .map(|f| (f[0], String::from_utf8_lossy(&f[1..]).into_owned()))
        .collect()
}

/// An ErrorResponse or NoticeResponse body as psql prints it:
/// `ERROR:  message (SQLSTATE xxxxx)`.
pub fn describe_error(body: &[u8]) -> String {
    let fields = fields(body);
    let get = |code: u8| fields.iter().find(|(k, _)| *k == code).map(|(_, v)| v.as_str()).unwrap_or("");
    format!("{}:  {} (SQLSTATE {})", get(b'S'), get(b'M'), get(b'C'))
}

/// The first ErrorResponse of a backend reply, described as by [`describe_error`].
pub fn first_error(reply: &[u8]) -> Option<String> {
    messages(reply).find(|(tag, _)| *tag == b'E').map(|(_, body)| describe_error(body))
}

/// The startup reply with its ParameterStatus values replaced by the later ones in
/// `updates` (new names go before BackendKeyData).
pub fn with_parameters(reply: &[u8], updates: &[u8]) -> Vec<u8> {
    let name_of = |body: &[u8]| body.split(|&b| b == 0).next().unwrap_or_default().to_vec();
    let mut latest: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    for (_, body) in messages(updates).filter(|(tag, _)| *tag == b'S') {
        let name = name_of(body);
        latest.retain(|(n, _)| *n != name);
        latest.push((name, body.to_vec()));
    }
    let mut out = Vec::with_capacity(reply.len());
    for (tag, body) in messages(reply) {
        if tag == b'K' {
            for (_, new) in latest.drain(..) {
                out.extend(message(b'S', &new));
            }
        }
        if tag == b'S' {
            let name = name_of(body);
            if let Some(i) = latest.iter().position(|(n, _)| *n == name) {
                out.extend(message(b'S', &latest.remove(i).1));
                continue;
            }
        }
        out.extend(message(tag, body));
    }
    out
}

/// Follows a backend byte stream written in arbitrary chunks and remembers the
/// transaction status of the last ReadyForQuery, so the port can answer a rejected
/// frame with an honest ReadyForQuery of its own.
#[derive(Debug)]
pub struct StatusTracker {
    header: [u8; 5],
    header_len: usize,
    body_left: usize,
    in_ready: bool,
    status: u8,
    /// The bytes seen so far end with a whole ReadyForQuery.
    at_ready: bool,
}

impl Default for StatusTracker {
    fn default() -> Self {
        Self { header: [0; 5], header_len: 0, body_left: 0, in_ready: false, status: b'I', at_ready: false }
    }
}

impl StatusTracker {
    pub fn status(&self) -> u8 {
        self.status
    }

    /// Whether the stream seen so far ends with a whole ReadyForQuery: where a server
    /// flushes its output.
    pub fn at_ready(&self) -> bool {
        self.at_ready
    }

    pub fn observe(&mut self, mut bytes: &[u8]) {
        if !bytes.is_empty() {
            self.at_ready = false;
        }
        while !bytes.is_empty() {
            if self.body_left > 0 {
                let take = self.body_left.min(bytes.len());
                if self.in_ready {
                    self.status = bytes[0];
                    self.in_ready = false;
                }
                self.body_left -= take;
                self.at_ready = self.body_left == 0 && self.header[0] == b'Z';
                bytes = &bytes[take..];
                continue;
            }
            let take = (5 - self.header_len).min(bytes.len());
            self.header[self.header_len..self.header_len + take].copy_from_slice(&bytes[..take]);
            self.header_len += take;
            bytes = &bytes[take..];
            if self.header_len == 5 {
                let h = self.header;
                let len = u32::from_be_bytes([h[1], h[2], h[3], h[4]]) as usize;
                self.body_left = len.saturating_sub(4);
                self.in_ready = h[0] == b'Z' && self.body_left == 1;
                self.header_len = 0;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracker_follows_status_across_split_writes() {
        let mut stream = message(b'C', b"SELECT 1\0");
        stream.extend(ready_for_query(b'T'));
        let mut t = StatusTracker::default();
        for chunk in stream.chunks(3) {
            t.observe(chunk);
        }
        assert_eq!(t.status(), b'T');
        assert!(t.at_ready());
        t.observe(&message(b'C', b"SELECT 1\0")[..3]);
        assert!(!t.at_ready());
        t.observe(&message(b'C', b"SELECT 1\0")[3..]);
        assert!(!t.at_ready());
        t.observe(&ready_for_query(b'E'));
        assert!(t.at_ready());
        assert_eq!(t.status(), b'E');
    }

    #[test]
    fn later_parameter_values_replace_startup_ones() {
        let mut reply = message(b'R', &[0, 0, 0, 0]);
        reply.extend(message(b'S', b"session_authorization\0postgres\0"));
        reply.extend(message(b'S', b"TimeZone\0UTC\0"));
        reply.extend(message(b'K', &[0; 8]));
        reply.extend(ready_for_query(b'I'));
        let mut updates = message(b'S', b"session_authorization\0app\0");
        updates.extend(message(b'S', b"is_superuser\0on\0"));
        let merged = with_parameters(&reply, &updates);
        let tags: Vec<(u8, Vec<u8>)> = messages(&merged).map(|(t, b)| (t, b.to_vec())).collect();
        assert_eq!(tags.len(), 6);
        assert_eq!(tags[1].1, b"session_authorization\0app\0");
        assert_eq!(tags[3].1, b"is_superuser\0on\0");
        assert_eq!(tags[4].0, b'K');
    }

    #[test]
    fn splits_messages_and_reads_error_fields() {
        let mut stream = error_response("08P01", "bad");
        stream.extend(ready_for_query(b'I'));
        stream.extend_from_slice(&[b'D', 0, 0]);
        let msgs: Vec<_> = messages(&stream).collect();
        assert_eq!(msgs.len(), 2);
        assert_eq!(msgs[0].0, b'E');
        let f = fields(msgs[0].1);
        assert!(f.contains(&(b'C', "08P01".to_string())));
        assert_eq!(first_error(&stream).as_deref(), Some("ERROR:  bad (SQLSTATE 08P01)"));
        assert_eq!(msgs[1], (b'Z', &b"I"[..]));
    }
}
