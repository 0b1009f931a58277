//! Request/reply round trips: one requester with one request in flight at a time (so the time per
//! round trip is latency, not queueing) and one responder that answers each request on its reply
//! subject with a payload carrying the same sequence number. A reply with the wrong number, or no
//! reply within the timeout, fails the run.

use crate::conn::Conn;
use crate::proto::{Event, PubBatch};
use crate::subscriber::Control;
use crate::tally::SeqTracker;
use anyhow::{anyhow, bail, Result};
use std::io::{ErrorKind, Read, Write};
use std::sync::atomic::Ordering::SeqCst;
use std::time::{Duration, Instant};

pub const REQUEST_SUBJECT: &str = "bench.req";
pub const INBOX: &str = "_INBOX.natsbench";
const REPLY_TIMEOUT: Duration = Duration::from_secs(5);

/// Answer requests until the server closes the connection or `ctl.finish` is set.
pub fn respond(mut conn: Conn, payload_len: usize, ctl: &Control) -> Result<u64> {
    conn.stream
        .set_read_timeout(Some(Duration::from_millis(100)))?;
    let mut out: Vec<u8> = Vec::with_capacity(4096);
    let filler: Vec<u8> = (0..payload_len).map(|i| b'a' + (i % 26) as u8).collect();
    let mut answered = 0u64;
    loop {
        if ctl.finish.load(SeqCst) || ctl.abort.load(SeqCst) {
            return Ok(answered);
        }
        let n = match conn.stream.read(&mut conn.buf) {
            Ok(0) => bail!("{}: the server closed the responder connection", conn.name),
            Ok(n) => n,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => continue,
            Err(e) => bail!("{}: reading requests failed: {e}", conn.name),
        };
        let mut err = None;
        conn.scanner
            .feed(&conn.buf[..n], &mut |e| match e {
                Event::Msg {
                    reply: Some(reply),
                    seq,
                    ..
                } => {
                    // Echo the request's sequence number so the requester can match the reply.
                    out.extend_from_slice(b"PUB ");
                    out.extend_from_slice(reply);
                    out.extend_from_slice(format!(" {payload_len}\r\n").as_bytes());
                    out.extend_from_slice(&seq.unwrap_or(u64::MAX).to_le_bytes());
                    out.extend_from_slice(&filler[8..]);
                    out.extend_from_slice(b"\r\n");
                    answered += 1;
                }
                Event::Msg { reply: None, .. } => {
                    err = Some("a request without a reply subject".into())
                }
                Event::Ping => out.extend_from_slice(b"PONG\r\n"),
                Event::Err(t) => err = Some(format!("-ERR '{}'", String::from_utf8_lossy(t))),
                Event::Pong | Event::Info | Event::Ok => {}
            })
            .map_err(|e| anyhow!("{}: {e}", conn.name))?;
        if let Some(e) = err {
            bail!("{}: server sent {e}", conn.name);
        }
        if !out.is_empty() {
            conn.stream.write_all(&out)?;
            out.clear();
        }
    }
}

/// Result of the requester: round-trip times in nanoseconds (timed ones only), the tally, and the
/// sum of the timed round trips (throughput = count / busy time).
pub struct Requested {
    pub rtt_ns: Vec<u64>,
    pub tally_tracker: SeqTracker,
    pub elapsed: Duration,
}

/// One requester connection; [`Requester::round_trip`] sends one request and waits for its reply.
/// Kept as a value so several servers' requesters can take turns (paired latency runs).
pub struct Requester {
    conn: Conn,
    frame: PubBatch,
    tracker: SeqTracker,
    rtt_ns: Vec<u64>,
    warmup: u64,
    busy: Duration,
}

impl Requester {
    pub fn new(conn: Conn, payload_len: usize, warmup: u64, count: u64) -> Result<Requester> {
        conn.stream.set_read_timeout(Some(REPLY_TIMEOUT))?;
        Ok(Requester {
            conn,
            frame: PubBatch::new(REQUEST_SUBJECT, Some(INBOX), payload_len, 1),
            tracker: SeqTracker::new(warmup + count),
            rtt_ns: Vec::with_capacity(count as usize),
            warmup,
            busy: Duration::ZERO,
        })
    }

    /// Request number `seq` (0-based; the first `warmup` are not timed).
    pub fn round_trip(&mut self, seq: u64) -> Result<()> {
        let conn = &mut self.conn;
        let tracker = &mut self.tracker;
        let t0 = Instant::now();
        conn.stream.write_all(self.frame.numbered(seq, 1))?;
        let mut got: Option<Option<u64>> = None;
        while got.is_none() {
            let n = match conn.stream.read(&mut conn.buf) {
                Ok(0) => bail!(
                    "{}: the server closed the requester connection at request {seq}",
                    conn.name
                ),
                Ok(n) => n,
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    bail!(
                        "{}: request {seq} got no reply within {REPLY_TIMEOUT:?} (lost)",
                        conn.name
                    )
                }
                Err(e) => bail!("{}: reading replies failed: {e}", conn.name),
            };
            let mut pings = 0;
            let mut err = None;
            let mut extra = 0;
            conn.scanner
                .feed(&conn.buf[..n], &mut |e| match e {
                    Event::Msg { seq: s, .. } => {
                        tracker.record(s);
                        if got.is_none() {
                            got = Some(s);
                        } else {
                            extra += 1;
                        }
                    }
                    Event::Ping => pings += 1,
                    Event::Err(t) => err = Some(String::from_utf8_lossy(t).into_owned()),
                    Event::Pong | Event::Info | Event::Ok => {}
                })
                .map_err(|e| anyhow!("{}: {e}", conn.name))?;
            if let Some(t) = err {
                bail!("{}: server sent -ERR '{t}'", conn.name);
            }
            if extra > 0 {
                bail!(
                    "{}: {extra} unexpected extra replies while waiting for request {seq} (duplicates)",
                    conn.name
                );
            }
            for _ in 0..pings {
                conn.stream.write_all(b"PONG\r\n")?;
            }
        }
        let rtt = t0.elapsed();
        if got != Some(Some(seq)) {
            bail!(
                "{}: request {seq} was answered with sequence {:?}: replies are crossed or lost",
                conn.name,
                got.flatten()
            );
        }
        if seq >= self.warmup {
            self.rtt_ns.push(rtt.as_nanos() as u64);
            self.busy += rtt;
        }
        Ok(())
    }

    pub fn finish(self) -> Requested {
        Requested {
            rtt_ns: self.rtt_ns,
            tally_tracker: self.tracker,
            elapsed: self.busy,
        }
    }
}

/// Send `warmup + count` requests one at a time; the first `warmup` are not timed.
pub fn request(
    conn: Conn,
    payload_len: usize,
    warmup: u64,
    count: u64,
    ctl: &Control,
) -> Result<Requested> {
    let mut r = Requester::new(conn, payload_len, warmup, count)?;
    for seq in 0..warmup + count {
        if ctl.abort.load(SeqCst) {
            bail!("aborted");
        }
        r.round_trip(seq)?;
    }
    Ok(r.finish())
}
