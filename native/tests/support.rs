//! Spawns the real pglite-port binary and speaks frames to it.
#![allow(dead_code, unused_imports)]

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

pub use pglite_port::wire::{message, query};

pub const BIN: &str = env!("CARGO_BIN_EXE_pglite-port");

pub struct Port {
    pub child: Child,
    stdin: Option<ChildStdin>,
    stdout: ChildStdout,
    buffered: Vec<u8>,
    queued: std::collections::VecDeque<Msg>,
}

/// One backend message.
#[derive(Debug, Clone)]
pub struct Msg {
    pub tag: u8,
    pub body: Vec<u8>,
}

impl Msg {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    /// Field `code` of an ErrorResponse/NoticeResponse.
    pub fn field(&self, code: u8) -> Option<String> {
        pglite_port::wire::fields(&self.body).into_iter().find(|(c, _)| *c == code).map(|(_, v)| v)
    }
    /// Values of a DataRow, as text (None for NULL).
    pub fn values(&self) -> Vec<Option<String>> {
        let b = &self.body;
        let n = u16::from_be_bytes([b[0], b[1]]) as usize;
        let mut pos = 2;
        (0..n)
            .map(|_| {
                let len = i32::from_be_bytes(b[pos..pos + 4].try_into().unwrap());
                pos += 4;
                if len < 0 {
                    return None;
                }
                let v = String::from_utf8_lossy(&b[pos..pos + len as usize]).into_owned();
                pos += len as usize;
                Some(v)
            })
            .collect()
    }
}

impl Port {
    pub fn spawn(data_dir: &str) -> Port {
        Self::spawn_with(data_dir, &[])
    }

    pub fn spawn_with(data_dir: &str, env: &[(&str, &str)]) -> Port {
        let mut cmd = Command::new(BIN);
        cmd.env("PGLITE_DATA_DIR", data_dir)
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn pglite-port");
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().unwrap();
        Port { child, stdin, stdout, buffered: Vec::new(), queued: Default::default() }
    }

    /// Spawns and reads the startup frame.
    pub fn ready(data_dir: &str) -> (Port, Vec<Msg>) {
        let mut port = Self::spawn(data_dir);
        let startup = port.read_frame_messages();
        (port, startup)
    }

    pub fn send_raw(&mut self, bytes: &[u8]) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        stdin.write_all(bytes).unwrap();
        stdin.flush().unwrap();
    }

    pub fn send(&mut self, body: &[u8]) {
        let mut frame = (body.len() as u32).to_be_bytes().to_vec();
        frame.extend_from_slice(body);
        self.send_raw(&frame);
    }

    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// Reads one frame; None at EOF.
    pub fn read_frame(&mut self) -> Option<Vec<u8>> {
        let mut header = [0u8; 4];
        if self.stdout.read_exact(&mut header).is_err() {
            return None;
        }
        let mut body = vec![0u8; u32::from_be_bytes(header) as usize];
        self.stdout.read_exact(&mut body).expect("frame body");
        Some(body)
    }

    /// Reads one frame and splits it into whole messages (the startup frame is whole).
    pub fn read_frame_messages(&mut self) -> Vec<Msg> {
        let frame = self.read_frame().expect("a frame");
        self.buffered.extend(frame);
        self.take_messages()
    }

    fn take_messages(&mut self) -> Vec<Msg> {
        let mut out = Vec::new();
        let mut pos = 0;
        while self.buffered.len() >= pos + 5 {
            let len = u32::from_be_bytes(self.buffered[pos + 1..pos + 5].try_into().unwrap()) as usize;
            if self.buffered.len() < pos + 1 + len {
                break;
            }
            out.push(Msg { tag: self.buffered[pos], body: self.buffered[pos + 5..pos + 1 + len].to_vec() });
            pos += 1 + len;
        }
        self.buffered.drain(..pos);
        out
    }

    /// Reads messages up to and including the next ReadyForQuery; messages after it
    /// (pipelined replies) stay queued for the next call.
    pub fn until_ready(&mut self) -> Vec<Msg> {
        let mut out = Vec::new();
        loop {
            while let Some(m) = self.queued.pop_front() {
                let done = m.tag == b'Z';
                out.push(m);
                if done {
                    return out;
                }
            }
            let frame = self.read_frame().expect("port closed before ReadyForQuery");
            self.buffered.extend(frame);
            let msgs = self.take_messages();
            self.queued.extend(msgs);
        }
    }

    /// Runs a simple query, returns its messages through ReadyForQuery.
    pub fn simple(&mut self, sql: &str) -> Vec<Msg> {
        self.send(&query(sql));
        self.until_ready()
    }

    /// The data rows of a simple query that must succeed.
    pub fn rows(&mut self, sql: &str) -> Vec<Vec<Option<String>>> {
        let msgs = self.simple(sql);
        if let Some(e) = msgs.iter().find(|m| m.tag == b'E') {
            panic!("{sql}: {:?}", e.field(b'M'));
        }
        msgs.iter().filter(|m| m.tag == b'D').map(Msg::values).collect()
    }

    /// Closes stdin and waits; returns the exit code and stderr.
    /// Whether the port writes anything (or has written something unread) within `ms`.
    pub fn has_output_within(&self, ms: i32) -> bool {
        use std::os::fd::AsRawFd;
        let mut fd = libc::pollfd { fd: self.stdout.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        // SAFETY: one valid pollfd, for the duration of the call.
        !self.buffered.is_empty() || unsafe { libc::poll(&mut fd, 1, ms) > 0 }
    }

    pub fn finish(mut self) -> (i32, String) {
        self.close_stdin();
        self.wait()
    }

    pub fn wait(mut self) -> (i32, String) {
        let status = self.child.wait().unwrap();
        let mut stderr = String::new();
        self.child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
        (status.code().unwrap_or(-1), stderr)
    }
}

pub fn ready_status(msgs: &[Msg]) -> u8 {
    msgs.last().filter(|m| m.tag == b'Z').map(|m| m.body[0]).expect("ends with ReadyForQuery")
}

pub fn tags(msgs: &[Msg]) -> String {
    msgs.iter().map(|m| m.tag as char).collect()
}

pub fn dir_arg(p: &Path) -> String {
    p.to_str().unwrap().to_string()
}
