//! The client protocol parser.
//!
//! The reader task reads socket bytes into one reusable `BytesMut` and calls [`Parser::parse`] until
//! it returns `Ok(None)` ("need more bytes"). The parser consumes complete operations from the front
//! of that buffer and leaves a partial one in place, so a frame may be split at ANY byte across
//! reads: what survives between reads is the unconsumed tail of the buffer plus a little state here
//! (how far the current control line was already searched, and the parsed header of a PUB that is
//! waiting for its payload). Nothing is re-scanned, so a slow trickle costs linear time.
//!
//! Zero copy: a complete PUB/HPUB frame is split off the buffer (`split_to(..).freeze()`), so its
//! payload is a `Bytes` that every subscriber can share; subject and reply are ranges into the same
//! frame. The per-message cost is one refcount increment, no allocation.
//!
//! Limits: a control line longer than `max_control_line` fails with
//! `maximum control line exceeded` as soon as that many bytes arrive without a newline, and a size
//! above `max_payload` fails before any payload is buffered, so the buffer a client controls is
//! bounded by `max_control_line + max_payload + 2`.
//!
//! Behaviour copied from nats-server 2.15.1 (checked on the wire):
//! - op names are case-insensitive; `PING`/`PONG`/`+OK` ignore whatever follows them on the line;
//!   `PUB`, `HPUB`, `SUB`, `UNSUB` need a space or tab after the name;
//! - args are split by runs of spaces, tabs and carriage returns; a bare `\n` ends a line too;
//! - the payload must be followed by exactly `\r\n`, else `Unknown Protocol Operation`;
//! - an unknown op (including an empty line) is `Unknown Protocol Operation`;
//! - malformed arguments (missing or non-numeric size, wrong arg count) close the connection
//!   without an `-ERR` line;
//! - `+OK` from a client is ignored, `-ERR` from a client closes the connection silently.

use bytes::{Bytes, BytesMut};
use std::ops::Range;

/// Why parsing stopped. After any error the connection must be closed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    /// Not a known operation, or the payload was not followed by `\r\n`.
    UnknownOp,
    /// The control line is longer than `max_control_line`.
    MaxControlLine,
    /// The announced payload size is larger than `max_payload`.
    MaxPayload { size: usize, max: usize },
    /// A known operation with malformed arguments. `what` is nats-server's log text for it
    /// (`processPub Parse Error`, `processPub Bad or Missing Size`, ...), `args` what was sent.
    BadArgs { what: &'static str, args: Bytes },
    /// The client sent `-ERR <text>`; nats-server logs it and closes.
    ClientErr(Bytes),
}

impl ParseError {
    /// The text for `-ERR '<text>'` sent before closing, if nats-server sends one.
    pub fn wire_text(&self) -> Option<&'static str> {
        match self {
            ParseError::UnknownOp => Some("Unknown Protocol Operation"),
            ParseError::MaxControlLine => Some("maximum control line exceeded"),
            ParseError::MaxPayload { .. } => Some("Maximum Payload Violation"),
            ParseError::BadArgs { .. } | ParseError::ClientErr(_) => None,
        }
    }
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            // The texts nats-server logs for these errors.
            ParseError::UnknownOp => f.write_str("Client parser ERROR"),
            ParseError::MaxControlLine => f.write_str("maximum control line exceeded"),
            ParseError::MaxPayload { size, max } => {
                write!(f, "maximum payload exceeded: {size} vs {max}")
            }
            ParseError::BadArgs { what, args } => {
                write!(f, "{what}: \"{}\"", args.escape_ascii())
            }
            ParseError::ClientErr(text) => {
                write!(f, "Client Error {}", String::from_utf8_lossy(text))
            }
        }
    }
}

impl std::error::Error for ParseError {}

/// A published message (PUB or HPUB) as one shared frame plus ranges into it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Msg {
    frame: Bytes,
    subject: Range<usize>,
    reply: Option<Range<usize>>,
    /// `Some(header length)` for HPUB.
    hdr_len: Option<usize>,
    /// Headers (for HPUB) plus payload, without the trailing `\r\n`.
    body: Range<usize>,
}

impl Msg {
    pub fn subject(&self) -> &[u8] {
        &self.frame[self.subject.clone()]
    }
    pub fn reply(&self) -> Option<&[u8]> {
        self.reply.clone().map(|r| &self.frame[r])
    }
    /// `Some(header length)` when this came from HPUB (headers are the first bytes of `body`).
    pub fn hdr_len(&self) -> Option<usize> {
        self.hdr_len
    }
    /// Headers (HPUB) and payload as sent, without the trailing CRLF.
    pub fn body(&self) -> &[u8] {
        &self.frame[self.body.clone()]
    }
    /// The body as a `Bytes` sharing the read buffer (no copy).
    pub fn body_bytes(&self) -> Bytes {
        self.frame.slice(self.body.clone())
    }
    /// Bytes this frame occupied on the wire (for in_bytes accounting use `body().len()`).
    pub fn wire_len(&self) -> usize {
        self.frame.len()
    }
}

/// One client operation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// `CONNECT <json>`: the JSON text (possibly empty or invalid: the client checks it).
    Connect(Bytes),
    /// `PUB` or `HPUB`.
    Pub(Msg),
    Sub {
        subject: Bytes,
        queue: Option<Bytes>,
        sid: Bytes,
    },
    /// `UNSUB <sid> [max]`. `max` is None when absent or not a number; nats-server treats both
    /// like "remove now".
    Unsub {
        sid: Bytes,
        max: Option<u64>,
    },
    Ping,
    Pong,
    /// `+OK` from a client (ignored by the server).
    Ok,
}

/// A PUB/HPUB control line that is parsed and waits for its payload.
#[derive(Clone, Debug)]
struct PendingMsg {
    /// Length of the control line including its newline.
    line_len: usize,
    subject: Range<usize>,
    reply: Option<Range<usize>>,
    hdr_len: Option<usize>,
    size: usize,
}

/// The parser state for one connection. See the module docs.
#[derive(Debug)]
pub struct Parser {
    max_control_line: usize,
    max_payload: usize,
    /// How many bytes at the front of the buffer were already searched for `\n`.
    scanned: usize,
    pending: Option<PendingMsg>,
}

const MAX_ARGS: usize = 5;

impl Parser {
    pub fn new(max_control_line: usize, max_payload: usize) -> Self {
        Parser {
            max_control_line,
            max_payload,
            scanned: 0,
            pending: None,
        }
    }

    /// Changes the limits (config reload). Takes effect for the next control line.
    pub fn set_limits(&mut self, max_control_line: usize, max_payload: usize) {
        self.max_control_line = max_control_line;
        self.max_payload = max_payload;
    }

    /// How many bytes the buffer must hold before the next `parse` can make progress, when that is
    /// known (a PUB waiting for its payload). The reader uses it to reserve once, not repeatedly.
    pub fn needed(&self) -> Option<usize> {
        self.pending.as_ref().map(|p| p.line_len + p.size + 2)
    }

    /// Parses and removes the next complete operation from the front of `buf`.
    /// `Ok(None)` means "need more bytes": keep them in `buf`, append more, call again.
    pub fn parse(&mut self, buf: &mut BytesMut) -> Result<Option<Op>, ParseError> {
        loop {
            if let Some(p) = &self.pending {
                let total = p.line_len + p.size + 2;
                if buf.len() < total {
                    return Ok(None);
                }
                let p = self.pending.take().expect("checked above");
                if &buf[total - 2..total] != b"\r\n" {
                    return Err(ParseError::UnknownOp);
                }
                let frame = buf.split_to(total).freeze();
                return Ok(Some(Op::Pub(Msg {
                    frame,
                    subject: p.subject,
                    reply: p.reply,
                    hdr_len: p.hdr_len,
                    body: p.line_len..p.line_len + p.size,
                })));
            }

            let nl = match memchr::memchr(b'\n', &buf[self.scanned..]) {
                Some(i) => self.scanned + i,
                None => {
                    self.scanned = buf.len();
                    if buf.len() > self.max_control_line + 1 {
                        return Err(ParseError::MaxControlLine);
                    }
                    // An unknown op is reported before the line is complete when nothing could
                    // make it valid, as nats-server does byte by byte.
                    if !buf.is_empty() && !plausible_prefix(buf) {
                        return Err(ParseError::UnknownOp);
                    }
                    return Ok(None);
                }
            };
            self.scanned = 0;
            let line_len = nl + 1;
            let mut end = nl;
            if end > 0 && buf[end - 1] == b'\r' {
                end -= 1;
            }
            if end > self.max_control_line {
                return Err(ParseError::MaxControlLine);
            }
            match self.control_line(buf, end, line_len)? {
                Some(op) => return Ok(Some(op)),
                // A PUB/HPUB header is now in `pending`: go on to its payload.
                None => continue,
            }
        }
    }

    /// Handles one complete control line `buf[..end]` (newline at `line_len - 1`).
    fn control_line(
        &mut self,
        buf: &mut BytesMut,
        end: usize,
        line_len: usize,
    ) -> Result<Option<Op>, ParseError> {
        let line = &buf[..end];
        let (kind, args_at) = op_kind(line)?;
        match kind {
            Kind::Ping => {
                let _ = buf.split_to(line_len);
                Ok(Some(Op::Ping))
            }
            Kind::Pong => {
                let _ = buf.split_to(line_len);
                Ok(Some(Op::Pong))
            }
            Kind::PlusOk => {
                let _ = buf.split_to(line_len);
                Ok(Some(Op::Ok))
            }
            Kind::MinusErr => {
                let r = trim(&buf[args_at..end]);
                let text = Bytes::copy_from_slice(&buf[args_at + r.start..args_at + r.end]);
                Err(ParseError::ClientErr(text))
            }
            Kind::Connect => {
                let r = trim(&buf[args_at..end]);
                let line = buf.split_to(line_len).freeze();
                Ok(Some(Op::Connect(
                    line.slice(args_at + r.start..args_at + r.end),
                )))
            }
            Kind::Pub | Kind::HPub => {
                let mut args: [Range<usize>; MAX_ARGS] = Default::default();
                let n = split_args(line, args_at, &mut args);
                let hpub = kind == Kind::HPub;
                let bad = |what_pub: &'static str, what_hpub: &'static str| ParseError::BadArgs {
                    what: if hpub { what_hpub } else { what_pub },
                    args: Bytes::copy_from_slice(trim_slice(&line[args_at..])),
                };
                let parse_err = || bad("processPub Parse Error", "processHeaderPub Parse Error");
                let size_err = || {
                    bad(
                        "processPub Bad or Missing Size",
                        "processHeaderPub Bad or Missing Size",
                    )
                };
                let (subject, reply, hdr, size) = match (hpub, n) {
                    (false, 2) => (args[0].clone(), None, None, &args[1]),
                    (false, 3) => (args[0].clone(), Some(args[1].clone()), None, &args[2]),
                    (true, 3) => (args[0].clone(), None, Some(&args[1]), &args[2]),
                    (true, 4) => (
                        args[0].clone(),
                        Some(args[1].clone()),
                        Some(&args[2]),
                        &args[3],
                    ),
                    _ => return Err(parse_err()),
                };
                let size = parse_size(&line[size.clone()]).ok_or_else(size_err)?;
                let hdr_len = match hdr {
                    Some(h) => {
                        let h = parse_size(&line[h.clone()]).ok_or_else(size_err)?;
                        if h > size {
                            return Err(size_err());
                        }
                        Some(h)
                    }
                    None => None,
                };
                if size > self.max_payload {
                    return Err(ParseError::MaxPayload {
                        size,
                        max: self.max_payload,
                    });
                }
                self.pending = Some(PendingMsg {
                    line_len,
                    subject,
                    reply,
                    hdr_len,
                    size,
                });
                Ok(None)
            }
            Kind::Sub => {
                let mut args: [Range<usize>; MAX_ARGS] = Default::default();
                let n = split_args(line, args_at, &mut args);
                let (subject, queue, sid) = match n {
                    2 => (args[0].clone(), None, args[1].clone()),
                    3 => (args[0].clone(), Some(args[1].clone()), args[2].clone()),
                    _ => {
                        return Err(ParseError::BadArgs {
                            what: "processSub Parse Error",
                            args: Bytes::copy_from_slice(trim_slice(&line[args_at..])),
                        })
                    }
                };
                let line = buf.split_to(line_len).freeze();
                Ok(Some(Op::Sub {
                    subject: line.slice(subject),
                    queue: queue.map(|q| line.slice(q)),
                    sid: line.slice(sid),
                }))
            }
            Kind::Unsub => {
                let mut args: [Range<usize>; MAX_ARGS] = Default::default();
                let n = split_args(line, args_at, &mut args);
                let (sid, max) = match n {
                    1 => (args[0].clone(), None),
                    2 => (args[0].clone(), parse_size(&line[args[1].clone()])),
                    _ => {
                        return Err(ParseError::BadArgs {
                            what: "processUnsub Parse Error",
                            args: Bytes::copy_from_slice(trim_slice(&line[args_at..])),
                        })
                    }
                };
                let line = buf.split_to(line_len).freeze();
                Ok(Some(Op::Unsub {
                    sid: line.slice(sid),
                    max: max.map(|m| m as u64),
                }))
            }
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Connect,
    Pub,
    HPub,
    Sub,
    Unsub,
    Ping,
    Pong,
    PlusOk,
    MinusErr,
}

#[inline]
fn is_space(b: u8) -> bool {
    b == b' ' || b == b'\t' || b == b'\r'
}

/// Case-insensitive prefix test.
#[inline]
fn starts_with_ci(line: &[u8], word: &[u8]) -> bool {
    line.len() >= word.len() && line[..word.len()].eq_ignore_ascii_case(word)
}

/// Recognises the op name; returns where its arguments start.
fn op_kind(line: &[u8]) -> Result<(Kind, usize), ParseError> {
    // Ops that need a separator (or, for CONNECT, the end of the line) after the name.
    let with_args = |word: &[u8], kind: Kind| -> Option<(Kind, usize)> {
        if starts_with_ci(line, word) {
            match line.get(word.len()) {
                Some(&b) if b == b' ' || b == b'\t' => return Some((kind, word.len())),
                None if kind == Kind::Connect => return Some((kind, word.len())),
                _ => {}
            }
        }
        None
    };
    let first = line.first().map(|b| b.to_ascii_uppercase());
    let found = match first {
        Some(b'P') => with_args(b"PUB", Kind::Pub).or_else(|| {
            if starts_with_ci(line, b"PING") {
                Some((Kind::Ping, 4))
            } else if starts_with_ci(line, b"PONG") {
                Some((Kind::Pong, 4))
            } else {
                None
            }
        }),
        Some(b'H') => with_args(b"HPUB", Kind::HPub),
        Some(b'S') => with_args(b"SUB", Kind::Sub),
        Some(b'U') => with_args(b"UNSUB", Kind::Unsub),
        Some(b'C') => with_args(b"CONNECT", Kind::Connect),
        Some(b'+') if starts_with_ci(line, b"+OK") => Some((Kind::PlusOk, 3)),
        Some(b'-') if starts_with_ci(line, b"-ERR") => Some((Kind::MinusErr, 4)),
        _ => None,
    };
    found.ok_or(ParseError::UnknownOp)
}

/// False when no continuation of `partial` (a line without its newline yet) can become a known op.
fn plausible_prefix(partial: &[u8]) -> bool {
    const OPS: [&[u8]; 9] = [
        b"PUB ", b"HPUB ", b"SUB ", b"UNSUB ", b"CONNECT", b"PING", b"PONG", b"+OK", b"-ERR",
    ];
    OPS.iter().any(|op| {
        let n = partial.len().min(op.len());
        // A tab may stand where the space is.
        partial[..n]
            .iter()
            .zip(op[..n].iter())
            .all(|(a, b)| a.eq_ignore_ascii_case(b) || (*b == b' ' && *a == b'\t'))
    })
}

/// Splits `line[from..]` into at most MAX_ARGS ranges. Returns the count; more than MAX_ARGS
/// arguments returns MAX_ARGS + 1 (always "wrong count" for every op).
fn split_args(line: &[u8], from: usize, out: &mut [Range<usize>; MAX_ARGS]) -> usize {
    let mut n = 0;
    let mut i = from;
    let len = line.len();
    while i < len {
        while i < len && is_space(line[i]) {
            i += 1;
        }
        if i == len {
            break;
        }
        let start = i;
        while i < len && !is_space(line[i]) {
            i += 1;
        }
        if n == MAX_ARGS {
            return MAX_ARGS + 1;
        }
        out[n] = start..i;
        n += 1;
    }
    n
}

fn trim_slice(s: &[u8]) -> &[u8] {
    &s[trim(s)]
}

fn trim(s: &[u8]) -> Range<usize> {
    let mut a = 0;
    let mut b = s.len();
    while a < b && is_space(s[a]) {
        a += 1;
    }
    while b > a && is_space(s[b - 1]) {
        b -= 1;
    }
    a..b
}

/// A decimal size as nats-server's parseSize: 1..=9 ASCII digits, nothing else.
#[inline]
fn parse_size(d: &[u8]) -> Option<usize> {
    if d.is_empty() || d.len() > 9 {
        return None;
    }
    let mut n = 0usize;
    for &b in d {
        if !b.is_ascii_digit() {
            return None;
        }
        n = n * 10 + (b - b'0') as usize;
    }
    Some(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parser() -> Parser {
        Parser::new(4096, 1024 * 1024)
    }

    /// Parses `input` fed in pieces of the given sizes; returns ops and the final error if any.
    fn feed(input: &[u8], splits: &[usize]) -> (Vec<Op>, Option<ParseError>) {
        let mut p = parser();
        let mut buf = BytesMut::new();
        let mut ops = Vec::new();
        let mut at = 0;
        let mut cuts: Vec<usize> = splits.to_vec();
        cuts.push(input.len());
        for cut in cuts {
            let cut = cut.min(input.len());
            if cut < at {
                continue;
            }
            buf.extend_from_slice(&input[at..cut]);
            at = cut;
            loop {
                match p.parse(&mut buf) {
                    Ok(Some(op)) => ops.push(op),
                    Ok(None) => break,
                    Err(e) => return (ops, Some(e)),
                }
            }
        }
        (ops, None)
    }

    fn all(input: &[u8]) -> Vec<Op> {
        let (ops, err) = feed(input, &[]);
        assert_eq!(
            err,
            None,
            "unexpected error for {:?}",
            String::from_utf8_lossy(input)
        );
        ops
    }

    fn err(input: &[u8]) -> ParseError {
        feed(input, &[]).1.expect("expected an error")
    }

    fn pubmsg(op: &Op) -> &Msg {
        match op {
            Op::Pub(m) => m,
            other => panic!("not a PUB: {other:?}"),
        }
    }

    const MIXED: &[u8] = b"CONNECT {\"verbose\":false}\r\nPING\r\npub foo 5\r\nhello\r\n\
PUB foo.bar reply.1 0\r\n\r\nHPUB h 12 14\r\nNATS/1.0\r\n\r\nhi\r\n\
HPUB h r 12 12\r\nNATS/1.0\r\n\r\n\r\nSUB foo 1\r\nsub foo q 22\r\nUNSUB 1\r\nUNSUB 22 5\r\n\
PONG\r\n+OK\r\nPUB\tx\t\t3\r\nabc\r\n";

    #[test]
    fn every_op() {
        let ops = all(MIXED);
        assert_eq!(ops.len(), 13);
        assert_eq!(
            ops[0],
            Op::Connect(Bytes::from_static(b"{\"verbose\":false}"))
        );
        assert_eq!(ops[1], Op::Ping);
        let m = pubmsg(&ops[2]);
        assert_eq!(
            (m.subject(), m.reply(), m.body(), m.hdr_len()),
            (&b"foo"[..], None, &b"hello"[..], None)
        );
        let m = pubmsg(&ops[3]);
        assert_eq!(
            (m.subject(), m.reply(), m.body()),
            (&b"foo.bar"[..], Some(&b"reply.1"[..]), &b""[..])
        );
        let m = pubmsg(&ops[4]);
        assert_eq!(
            (m.subject(), m.hdr_len(), m.body()),
            (&b"h"[..], Some(12), &b"NATS/1.0\r\n\r\nhi"[..])
        );
        let m = pubmsg(&ops[5]);
        assert_eq!(
            (m.reply(), m.hdr_len(), m.body().len()),
            (Some(&b"r"[..]), Some(12), 12)
        );
        assert_eq!(
            ops[6],
            Op::Sub {
                subject: Bytes::from_static(b"foo"),
                queue: None,
                sid: Bytes::from_static(b"1")
            }
        );
        assert_eq!(
            ops[7],
            Op::Sub {
                subject: Bytes::from_static(b"foo"),
                queue: Some(Bytes::from_static(b"q")),
                sid: Bytes::from_static(b"22")
            }
        );
        assert_eq!(
            ops[8],
            Op::Unsub {
                sid: Bytes::from_static(b"1"),
                max: None
            }
        );
        assert_eq!(
            ops[9],
            Op::Unsub {
                sid: Bytes::from_static(b"22"),
                max: Some(5)
            }
        );
        assert_eq!(ops[10], Op::Pong);
        assert_eq!(ops[11], Op::Ok);
        let m = pubmsg(&ops[12]);
        assert_eq!((m.subject(), m.body()), (&b"x"[..], &b"abc"[..]));
    }

    #[test]
    fn split_at_every_byte_offset() {
        let whole = all(MIXED);
        for i in 0..=MIXED.len() {
            let (ops, e) = feed(MIXED, &[i]);
            assert_eq!(e, None, "split at {i}");
            assert_eq!(ops, whole, "split at {i}");
        }
        // And one byte at a time.
        let cuts: Vec<usize> = (0..MIXED.len()).collect();
        let (ops, e) = feed(MIXED, &cuts);
        assert_eq!((ops, e), (whole, None));
    }

    #[test]
    fn case_insensitive_and_lenient_ping() {
        assert_eq!(
            all(b"ping\r\nPiNg\r\nPINGX\r\nPING \r\nPING\npong\r\n").len(),
            6
        );
        assert_eq!(
            all(b"cOnNeCt {}\r\n"),
            vec![Op::Connect(Bytes::from_static(b"{}"))]
        );
        assert_eq!(all(b"CONNECT\r\n"), vec![Op::Connect(Bytes::new())]);
    }

    #[test]
    fn payload_is_shared_not_copied() {
        let mut p = parser();
        let mut buf = BytesMut::from(&b"PUB a 3\r\nxyz\r\n"[..]);
        let base = buf.as_ptr() as usize;
        let op = p.parse(&mut buf).unwrap().unwrap();
        let body = pubmsg(&op).body_bytes();
        assert_eq!(&body[..], b"xyz");
        assert_eq!(
            body.as_ptr() as usize,
            base + 9,
            "payload must point into the read buffer"
        );
    }

    fn assert_bad(input: &[u8], op: &str) {
        let func = match op {
            "PUB" => "processPub ",
            "HPUB" => "processHeaderPub ",
            "SUB" => "processSub ",
            _ => "processUnsub ",
        };
        match err(input) {
            ParseError::BadArgs { what, .. } => assert!(
                what.starts_with(func),
                "{what} for {:?}",
                String::from_utf8_lossy(input)
            ),
            other => panic!("{other:?} for {:?}", String::from_utf8_lossy(input)),
        }
    }

    #[test]
    fn errors_match_nats_server() {
        assert_eq!(err(b"FOO\r\n"), ParseError::UnknownOp);
        assert_eq!(err(b"\r\n"), ParseError::UnknownOp);
        assert_eq!(err(b"  PING\r\n"), ParseError::UnknownOp);
        assert_eq!(err(b"PUB\r\n"), ParseError::UnknownOp);
        assert_eq!(err(b"UNSUB\r\n"), ParseError::UnknownOp);
        assert_eq!(err(b"PUBX foo 1\r\n"), ParseError::UnknownOp);
        assert_eq!(err(b"PUB foo 3\r\nabcd\r\n"), ParseError::UnknownOp);
        assert_eq!(err(b"PUB foo 2\r\nabXYPING\r\n"), ParseError::UnknownOp);
        assert_eq!(err(b"PUB foo 0\r\n\r\n\r\n"), ParseError::UnknownOp);
        assert_bad(b"PUB foo\r\n", "PUB");
        assert_bad(b"PUB foo x\r\n", "PUB");
        assert_bad(b"PUB foo -1\r\n", "PUB");
        assert_bad(b"PUB foo a b c\r\n", "PUB");
        assert_eq!(
            err(b"PUB foo 2000000\r\n"),
            ParseError::MaxPayload {
                size: 2000000,
                max: 1024 * 1024
            }
        );
        assert_bad(b"HPUB foo 5 3\r\n", "HPUB");
        assert_bad(b"HPUB foo 3\r\n", "HPUB");
        assert_eq!(
            err(b"HPUB foo 2 2000000\r\n"),
            ParseError::MaxPayload {
                size: 2000000,
                max: 1024 * 1024
            }
        );
        assert_bad(b"SUB foo\r\n", "SUB");
        assert_bad(b"SUB foo q 1 x\r\n", "SUB");
        assert_bad(b"UNSUB 1 2 3\r\n", "UNSUB");
        assert_eq!(
            err(b"-ERR 'x'\r\n"),
            ParseError::ClientErr(Bytes::from_static(b"'x'"))
        );
        assert_eq!(
            ParseError::UnknownOp.wire_text(),
            Some("Unknown Protocol Operation")
        );
        assert_eq!(
            err(b"PUB foo x\r\n").to_string(),
            "processPub Bad or Missing Size: \"foo x\""
        );
        assert_eq!(
            err(b"SUB foo\r\n").to_string(),
            "processSub Parse Error: \"foo\""
        );
        assert_eq!(
            err(b"PUB foo 2000000\r\n").to_string(),
            "maximum payload exceeded: 2000000 vs 1048576"
        );
        // Unknown ops are reported before their line ends (no buffering of garbage).
        assert_eq!(feed(b"XYZ", &[]).1, Some(ParseError::UnknownOp));
        assert_eq!(feed(b"PU", &[]).1, None);
    }

    #[test]
    fn unsub_max_not_a_number_is_none() {
        assert_eq!(
            all(b"UNSUB 1 x\r\n"),
            vec![Op::Unsub {
                sid: Bytes::from_static(b"1"),
                max: None
            }]
        );
    }

    #[test]
    fn control_line_limit() {
        let mut long = b"PUB ".to_vec();
        long.extend(std::iter::repeat_n(b'a', 5000));
        assert_eq!(feed(&long, &[]).1, Some(ParseError::MaxControlLine));
        long.extend_from_slice(b" 0\r\n\r\n");
        assert_eq!(feed(&long, &[]).1, Some(ParseError::MaxControlLine));
        // Exactly at the limit is fine.
        let mut p = Parser::new(16, 100);
        let mut buf = BytesMut::from(&b"PUB abcdefghij 0\r\n\r\n"[..]);
        assert!(matches!(p.parse(&mut buf), Ok(Some(Op::Pub(_)))));
        let mut buf = BytesMut::from(&b"PUB abcdefghijk 0\r\n\r\n"[..]);
        assert_eq!(p.parse(&mut buf), Err(ParseError::MaxControlLine));
    }

    #[test]
    fn needed_reports_pending_frame() {
        let mut p = parser();
        let mut buf = BytesMut::from(&b"PUB a 100\r\n"[..]);
        assert_eq!(p.parse(&mut buf), Ok(None));
        assert_eq!(p.needed(), Some(11 + 100 + 2));
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_stay_bounded() {
        // Deterministic pseudo-random input from a small alphabet that hits every state.
        let alphabet: &[u8] = b"PUBHSNCOTIGKER+- \t\r\n0123456789abc.*>";
        let mut x: u64 = 0x9E3779B97F4A7C15;
        for _ in 0..300 {
            let mut p = Parser::new(64, 128);
            let mut buf = BytesMut::new();
            for _ in 0..200 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                buf.extend_from_slice(&[alphabet[(x % alphabet.len() as u64) as usize]]);
                match p.parse(&mut buf) {
                    Ok(_) => assert!(buf.len() <= 64 + 128 + 2 + 2),
                    Err(_) => break,
                }
            }
        }
    }
}
