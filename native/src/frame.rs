//! 4-byte big-endian length-prefixed frames: the port's only stdin/stdout format.
//! Nothing here knows about PostgreSQL. std's `u32::from_be_bytes`/`to_be_bytes`
//! read and write the length: one integer needs no `byteorder` crate.

use std::io::{self, Read, Write};

/// The largest frame the port accepts: PostgreSQL's own message limit (1 GiB).
/// A larger length is a framing error, not a big message.
pub const MAX_FRAME_LEN: usize = 1 << 30;

/// What reading one frame produced.
#[derive(Debug, PartialEq, Eq)]
pub enum ReadFrame {
    Frame(Vec<u8>),
    /// Clean end of input: EOF exactly at a frame boundary.
    Eof,
    /// The header announced more than [`MAX_FRAME_LEN`] bytes.
    TooLarge(u64),
}

/// Reads one frame. EOF inside a header or a body is an error (a truncated frame).
pub fn read_frame(reader: &mut impl Read) -> io::Result<ReadFrame> {
    let mut header = [0u8; 4];
    let mut filled = 0;
    while filled < 4 {
        match reader.read(&mut header[filled..]) {
            Ok(0) if filled == 0 => return Ok(ReadFrame::Eof),
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("stdin ended inside a frame header ({filled} of 4 bytes)"),
                ))
            }
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let len = u32::from_be_bytes(header) as u64;
    if len > MAX_FRAME_LEN as u64 {
        return Ok(ReadFrame::TooLarge(len));
    }
    let mut body = vec![0u8; len as usize];
    reader.read_exact(&mut body).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("stdin ended inside a frame body of {len} bytes: {e}"),
        )
    })?;
    Ok(ReadFrame::Frame(body))
}

/// Writes one frame (header and body) without flushing.
pub fn write_frame(writer: &mut impl Write, body: &[u8]) -> io::Result<()> {
    let len = u32::try_from(body.len())
        .ok()
        .filter(|&n| n as usize <= MAX_FRAME_LEN)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "frame body too large"))?;
    writer.write_all(&len.to_be_bytes())?;
    writer.write_all(body)
}

/// Encodes one frame into a new buffer.
pub fn encode_frame(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 4);
    write_frame(&mut out, body).expect("writing to a Vec cannot fail");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    #[test]
    fn round_trips_frames_back_to_back() {
        let mut bytes = encode_frame(b"hello");
        bytes.extend(encode_frame(b""));
        bytes.extend(encode_frame(&[0u8; 70_000]));
        let mut r = Cursor::new(bytes);
        assert_eq!(read_frame(&mut r).unwrap(), ReadFrame::Frame(b"hello".to_vec()));
        assert_eq!(read_frame(&mut r).unwrap(), ReadFrame::Frame(Vec::new()));
        assert_eq!(read_frame(&mut r).unwrap(), ReadFrame::Frame(vec![0u8; 70_000]));
        assert_eq!(read_frame(&mut r).unwrap(), ReadFrame::Eof);
    }

    #[test]
    fn header_is_big_endian() {
        assert_eq!(&encode_frame(&[7u8; 258])[..4], &[0, 0, 1, 2]);
    }

    #[test]
    fn oversized_length_is_reported_without_allocating() {
        let mut r = Cursor::new(vec![0xff, 0xff, 0xff, 0xff]);
        assert_eq!(read_frame(&mut r).unwrap(), ReadFrame::TooLarge(0xffff_ffff));
    }

    #[test]
    fn truncated_header_and_body_are_errors() {
        let mut r = Cursor::new(vec![0, 0]);
        assert_eq!(read_frame(&mut r).unwrap_err().kind(), io::ErrorKind::UnexpectedEof);
        let mut r = Cursor::new(vec![0, 0, 0, 9, 1, 2]);
        assert_eq!(read_frame(&mut r).unwrap_err().kind(), io::ErrorKind::UnexpectedEof);
    }

    #[test]
    fn split_reads_are_reassembled() {
        struct OneByte(Cursor<Vec<u8>>);
        impl Read for OneByte {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                let n = buf.len().min(1);
                self.0.read(&mut buf[..n])
            }
        }
        let mut r = OneByte(Cursor::new(encode_frame(b"abc")));
        assert_eq!(read_frame(&mut r).unwrap(), ReadFrame::Frame(b"abc".to_vec()));
    }
}
