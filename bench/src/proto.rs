//! The slice of the NATS client protocol the load generator needs, with no client library in between:
//! a streaming scanner for what servers send (`MSG`, `PING`, `PONG`, `INFO`, `+OK`, `-ERR`) and
//! pre-encoded `PUB` frames that only get their sequence numbers patched before each write.
//!
//! The scanner is the hot path of every subscriber: it never allocates per message, keeps its state
//! across reads (a frame may be split at any byte), and pulls the 8-byte sequence number from the
//! start of each payload so the counting layer can detect loss and duplicates.

use memchr::memchr;

/// Longest control line a server may send (nats-server's own limit); longer means a broken stream.
pub const MAX_CONTROL_LINE: usize = 4096;

/// Bytes at the start of every payload that carry the message's sequence number (little endian).
pub const SEQ_BYTES: usize = 8;

/// One complete thing the server sent. Borrowed data lives only for the callback.
#[derive(Debug, PartialEq, Eq)]
pub enum Event<'a> {
    /// A whole `MSG` frame (control line, payload and trailing CRLF) has been consumed.
    Msg {
        sid: u64,
        /// The reply subject, when the publisher gave one (request/reply).
        reply: Option<&'a [u8]>,
        /// Payload length in bytes.
        len: usize,
        /// The sequence number from the first [`SEQ_BYTES`] of the payload, if it was that long.
        seq: Option<u64>,
    },
    Ping,
    Pong,
    Info,
    Ok,
    /// `-ERR '<text>'`: the text between the quotes (or the whole rest of the line).
    Err(&'a [u8]),
}

/// What makes a byte stream unreadable as NATS; the benchmark run fails with this text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtoError(pub String);

impl std::fmt::Display for ProtoError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ProtoError {}

enum State {
    /// Waiting for (the rest of) a control line.
    Line,
    /// Inside a `MSG` payload; `done` bytes of `len + 2` (payload + CRLF) already consumed.
    Payload { done: usize },
}

/// Incremental parser for the server → client byte stream.
pub struct Scanner {
    state: State,
    /// A control line split across reads is collected here (capacity kept between messages).
    line: Vec<u8>,
    sid: u64,
    len: usize,
    has_reply: bool,
    reply: Vec<u8>,
    seq: [u8; SEQ_BYTES],
}

impl Default for Scanner {
    fn default() -> Self {
        Self::new()
    }
}

impl Scanner {
    pub fn new() -> Self {
        Scanner {
            state: State::Line,
            line: Vec::with_capacity(256),
            sid: 0,
            len: 0,
            has_reply: false,
            reply: Vec::with_capacity(64),
            seq: [0; SEQ_BYTES],
        }
    }

    /// True when no frame is half-consumed (the stream may end here without loss).
    pub fn at_frame_boundary(&self) -> bool {
        matches!(self.state, State::Line) && self.line.is_empty()
    }

    /// Consume `data`, calling `on` for every complete event, in order.
    pub fn feed(
        &mut self,
        mut data: &[u8],
        on: &mut impl FnMut(Event<'_>),
    ) -> Result<(), ProtoError> {
        while !data.is_empty() {
            match self.state {
                State::Line => match memchr(b'\n', data) {
                    None => {
                        if self.line.len() + data.len() > MAX_CONTROL_LINE {
                            return Err(self.too_long());
                        }
                        self.line.extend_from_slice(data);
                        return Ok(());
                    }
                    Some(i) => {
                        if self.line.is_empty() {
                            self.control_line(&data[..i], on)?;
                        } else {
                            if self.line.len() + i > MAX_CONTROL_LINE {
                                return Err(self.too_long());
                            }
                            self.line.extend_from_slice(&data[..i]);
                            // Take the buffer out so the parsed line can be borrowed while `self`
                            // is updated; put it back to keep its capacity.
                            let mut line = std::mem::take(&mut self.line);
                            let r = self.control_line(&line, on);
                            line.clear();
                            self.line = line;
                            r?;
                        }
                        data = &data[i + 1..];
                    }
                },
                State::Payload { done } => {
                    let total = self.len + 2;
                    let n = (total - done).min(data.len());
                    let chunk = &data[..n];
                    // Sequence number bytes that fall into this chunk.
                    if done < SEQ_BYTES && self.len >= SEQ_BYTES {
                        let end = SEQ_BYTES.min(done + n);
                        self.seq[done..end].copy_from_slice(&chunk[..end - done]);
                    }
                    // The CRLF after the payload must be exactly that, or we lost sync.
                    for (k, want) in [(self.len, b'\r'), (self.len + 1, b'\n')] {
                        if k >= done && k < done + n && chunk[k - done] != want {
                            return Err(ProtoError(format!(
                                "MSG payload of {} bytes is not followed by CRLF (byte {:?} where {:?} belongs): \
                                 the stream is out of sync",
                                self.len, chunk[k - done] as char, want as char
                            )));
                        }
                    }
                    data = &data[n..];
                    if done + n == total {
                        self.state = State::Line;
                        let seq = (self.len >= SEQ_BYTES).then(|| u64::from_le_bytes(self.seq));
                        let reply = self.has_reply.then_some(self.reply.as_slice());
                        on(Event::Msg {
                            sid: self.sid,
                            reply,
                            len: self.len,
                            seq,
                        });
                    } else {
                        self.state = State::Payload { done: done + n };
                    }
                }
            }
        }
        Ok(())
    }

    fn too_long(&self) -> ProtoError {
        ProtoError(format!(
            "server sent a control line longer than {MAX_CONTROL_LINE} bytes (starts {:?})",
            String::from_utf8_lossy(&self.line[..self.line.len().min(40)])
        ))
    }

    fn control_line(
        &mut self,
        line: &[u8],
        on: &mut impl FnMut(Event<'_>),
    ) -> Result<(), ProtoError> {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let mut args = line
            .split(|&b| b == b' ' || b == b'\t')
            .filter(|t| !t.is_empty());
        let op = args.next().unwrap_or(b"");
        if op.eq_ignore_ascii_case(b"MSG") {
            let mut toks: [&[u8]; 4] = [b""; 4];
            let mut n = 0;
            for t in args {
                if n == 4 {
                    return Err(bad_msg(line));
                }
                toks[n] = t;
                n += 1;
            }
            let (sid, reply, size) = match n {
                3 => (toks[1], None, toks[2]),
                4 => (toks[1], Some(toks[2]), toks[3]),
                _ => return Err(bad_msg(line)),
            };
            self.sid = parse_u64(sid).ok_or_else(|| bad_msg(line))?;
            self.len = parse_u64(size).ok_or_else(|| bad_msg(line))? as usize;
            self.has_reply = reply.is_some();
            if let Some(r) = reply {
                self.reply.clear();
                self.reply.extend_from_slice(r);
            }
            self.state = State::Payload { done: 0 };
        } else if op.eq_ignore_ascii_case(b"PING") {
            on(Event::Ping);
        } else if op.eq_ignore_ascii_case(b"PONG") {
            on(Event::Pong);
        } else if op.eq_ignore_ascii_case(b"INFO") {
            on(Event::Info);
        } else if op.eq_ignore_ascii_case(b"+OK") {
            on(Event::Ok);
        } else if op.eq_ignore_ascii_case(b"-ERR") {
            let rest = line[4..].trim_ascii();
            let text = rest
                .strip_prefix(b"'")
                .and_then(|r| r.strip_suffix(b"'"))
                .unwrap_or(rest);
            on(Event::Err(text));
        } else if op.eq_ignore_ascii_case(b"HMSG") {
            return Err(ProtoError(
                "server sent HMSG (headers) although this client never asked for headers".into(),
            ));
        } else {
            return Err(ProtoError(format!(
                "server sent an unknown operation: {:?}",
                String::from_utf8_lossy(&line[..line.len().min(80)])
            )));
        }
        Ok(())
    }
}

fn bad_msg(line: &[u8]) -> ProtoError {
    ProtoError(format!(
        "malformed MSG line from server: {:?} (want MSG <subject> <sid> [reply] <size>)",
        String::from_utf8_lossy(&line[..line.len().min(120)])
    ))
}

fn parse_u64(t: &[u8]) -> Option<u64> {
    if t.is_empty() || t.len() > 19 {
        return None;
    }
    t.iter().try_fold(0u64, |acc, &b| {
        b.is_ascii_digit().then(|| acc * 10 + u64::from(b - b'0'))
    })
}

/// A buffer of back-to-back `PUB` frames with the same subject and payload size, encoded once; only
/// the sequence numbers are rewritten per batch, so publishing is one `write_all` per batch.
pub struct PubBatch {
    buf: Vec<u8>,
    /// Offset of each frame's payload in `buf`.
    payload_at: Vec<usize>,
}

impl PubBatch {
    /// `frames` frames of `PUB <subject> [reply] <payload_len>`; payload bytes after the sequence
    /// number are a fixed filler. `payload_len` must be at least [`SEQ_BYTES`].
    pub fn new(subject: &str, reply: Option<&str>, payload_len: usize, frames: usize) -> Self {
        assert!(
            payload_len >= SEQ_BYTES,
            "payloads carry an 8-byte sequence number"
        );
        let head = match reply {
            Some(r) => format!("PUB {subject} {r} {payload_len}\r\n"),
            None => format!("PUB {subject} {payload_len}\r\n"),
        };
        let frame_len = head.len() + payload_len + 2;
        let mut buf = Vec::with_capacity(frame_len * frames);
        let mut payload_at = Vec::with_capacity(frames);
        for _ in 0..frames {
            buf.extend_from_slice(head.as_bytes());
            payload_at.push(buf.len());
            buf.extend((0..payload_len).map(|i| b'a' + (i % 26) as u8));
            buf.extend_from_slice(b"\r\n");
        }
        PubBatch { buf, payload_at }
    }

    /// Bytes of one frame on the wire.
    pub fn frame_len(&self) -> usize {
        self.buf.len() / self.payload_at.len()
    }

    pub fn frames(&self) -> usize {
        self.payload_at.len()
    }

    /// The first `count` frames, numbered `first_seq`, `first_seq + 1`, ...
    pub fn numbered(&mut self, first_seq: u64, count: usize) -> &[u8] {
        for (i, &at) in self.payload_at[..count].iter().enumerate() {
            self.buf[at..at + SEQ_BYTES].copy_from_slice(&(first_seq + i as u64).to_le_bytes());
        }
        &self.buf[..count * self.frame_len()]
    }
}

/// Size of a `MSG` frame the server delivers for a `PUB` (used to size flow-control windows).
pub fn msg_frame_len(subject: &str, sid: u64, payload_len: usize) -> usize {
    format!("MSG {subject} {sid} {payload_len}\r\n").len() + payload_len + 2
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, Eq)]
    enum Owned {
        Msg(u64, Option<Vec<u8>>, usize, Option<u64>),
        Ping,
        Pong,
        Info,
        Ok,
        Err(Vec<u8>),
    }

    fn collect(chunks: &[&[u8]]) -> Result<Vec<Owned>, ProtoError> {
        let mut s = Scanner::new();
        let mut out = Vec::new();
        for c in chunks {
            s.feed(c, &mut |e| {
                out.push(match e {
                    Event::Msg {
                        sid,
                        reply,
                        len,
                        seq,
                    } => Owned::Msg(sid, reply.map(|r| r.to_vec()), len, seq),
                    Event::Ping => Owned::Ping,
                    Event::Pong => Owned::Pong,
                    Event::Info => Owned::Info,
                    Event::Ok => Owned::Ok,
                    Event::Err(t) => Owned::Err(t.to_vec()),
                })
            })?;
        }
        assert!(s.at_frame_boundary(), "stream ended mid-frame");
        Ok(out)
    }

    fn stream() -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(b"INFO {\"server_id\":\"x\"} \r\n");
        v.extend_from_slice(b"PING\r\n");
        for seq in [7u64, 8] {
            v.extend_from_slice(b"MSG bench.s 1 16\r\n");
            v.extend_from_slice(&seq.to_le_bytes());
            v.extend_from_slice(b"\r\n\r\nabcd\r\n"); // payload may contain CRLF
        }
        v.extend_from_slice(b"msg _INBOX.x\t22  reply.to 10\r\n");
        v.extend_from_slice(&99u64.to_le_bytes());
        v.extend_from_slice(b"zz\r\n");
        v.extend_from_slice(b"MSG s 3 0\r\n\r\n");
        v.extend_from_slice(b"+OK\r\nPONG\r\n-ERR 'Slow Consumer'\r\n");
        v
    }

    fn expected() -> Vec<Owned> {
        vec![
            Owned::Info,
            Owned::Ping,
            Owned::Msg(1, None, 16, Some(7)),
            Owned::Msg(1, None, 16, Some(8)),
            Owned::Msg(22, Some(b"reply.to".to_vec()), 10, Some(99)),
            Owned::Msg(3, None, 0, None),
            Owned::Ok,
            Owned::Pong,
            Owned::Err(b"Slow Consumer".to_vec()),
        ]
    }

    #[test]
    fn whole_stream() {
        assert_eq!(collect(&[&stream()]).unwrap(), expected());
    }

    #[test]
    fn split_at_every_byte() {
        let s = stream();
        for cut in 0..=s.len() {
            let got = collect(&[&s[..cut], &s[cut..]]).unwrap();
            assert_eq!(got, expected(), "split at byte {cut}");
        }
    }

    #[test]
    fn split_at_every_pair_of_bytes() {
        let s = stream();
        for a in 0..=s.len() {
            for b in a..=s.len() {
                let got = collect(&[&s[..a], &s[a..b], &s[b..]]).unwrap();
                assert_eq!(got, expected(), "split at {a} and {b}");
            }
        }
    }

    #[test]
    fn one_byte_at_a_time() {
        let s = stream();
        let chunks: Vec<&[u8]> = s.chunks(1).collect();
        assert_eq!(collect(&chunks).unwrap(), expected());
    }

    #[test]
    fn payload_length_mismatch_is_an_error() {
        let e = collect(&[b"MSG a 1 3\r\nabcd\r\n"]).unwrap_err();
        assert!(e.0.contains("not followed by CRLF"), "{e}");
    }

    #[test]
    fn malformed_lines_are_errors() {
        for bad in [
            &b"MSG a\r\n"[..],
            b"MSG a 1 x\r\n",
            b"MSG a b 3\r\n",
            b"MSG a 1 r 3 9\r\n",
            b"HELLO\r\n",
            b"HMSG a 1 4 4\r\n",
        ] {
            assert!(
                collect(&[bad]).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn overlong_control_line_is_an_error() {
        let long = vec![b'x'; MAX_CONTROL_LINE + 1];
        let mut s = Scanner::new();
        let half = MAX_CONTROL_LINE / 2 + 1;
        s.feed(&long[..half], &mut |_| {}).unwrap();
        assert!(s.feed(&long[half..], &mut |_| {}).is_err());
    }

    #[test]
    fn pub_batch_frames_parse_back() {
        let mut b = PubBatch::new("bench.s", None, 16, 4);
        assert_eq!(b.frame_len(), "PUB bench.s 16\r\n".len() + 18);
        let bytes = b.numbered(100, 3).to_vec();
        assert_eq!(bytes.len(), 3 * b.frame_len());
        // A server turns "PUB subj n" into "MSG subj sid n": rewrite and scan.
        let as_msg: Vec<u8> = String::from_utf8(bytes)
            .unwrap()
            .replace("PUB bench.s ", "MSG bench.s 5 ")
            .into_bytes();
        let got = collect(&[&as_msg]).unwrap();
        assert_eq!(
            got,
            (100..103)
                .map(|s| Owned::Msg(5, None, 16, Some(s)))
                .collect::<Vec<_>>()
        );
        assert_eq!(
            msg_frame_len("bench.s", 5, 16),
            "MSG bench.s 5 16\r\n".len() + 18
        );
    }
}
