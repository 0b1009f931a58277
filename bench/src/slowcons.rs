//! "Slow-consumer protection still on": a subscriber that never reads while 128 MiB are published
//! to it must be cut off by the server (nats-server does so once its pending output passes
//! `max_pending`, 64 MiB by default), and the publisher must not be stalled by it. A fast server
//! that buffers without bound would win the throughput scenarios unfairly and fall over in
//! production; this check makes that visible in the report.

use crate::conn::{Conn, Sub};
use crate::proto::{Event, PubBatch};
use crate::server::RunningServer;
use anyhow::Result;
use serde::Serialize;
use std::io::{ErrorKind, Read, Write};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Serialize)]
pub struct SlowConsumerCheck {
    pub server: String,
    /// The server closed the never-reading subscriber.
    pub disconnected: bool,
    /// The publisher was answered (PING/PONG) after publishing everything.
    pub publisher_unaffected: bool,
    /// Payload MiB that reached the slow subscriber before the server cut it off.
    pub delivered_mib: f64,
    pub published_mib: f64,
    pub detail: String,
}

impl SlowConsumerCheck {
    pub fn pass(&self) -> bool {
        self.disconnected && self.publisher_unaffected
    }
}

const PAYLOAD: usize = 64 * 1024;
const MESSAGES: u64 = 2048; // 128 MiB, twice the default max_pending

pub fn check(srv: &RunningServer) -> Result<SlowConsumerCheck> {
    let sub = Conn::open(srv.addr, "slow-sub", &[Sub::plain("bench.slow")])?;
    let mut publ = Conn::open(srv.addr, "slow-pub", &[])?;
    let mut batch = PubBatch::new("bench.slow", None, PAYLOAD, 16);
    let published_mib = (MESSAGES as usize * PAYLOAD) as f64 / (1 << 20) as f64;
    let mut publisher_unaffected = true;
    let mut detail = String::new();
    let mut seq = 0;
    while seq < MESSAGES {
        let n = 16.min(MESSAGES - seq);
        if let Err(e) = publ.stream.write_all(batch.numbered(seq, n as usize)) {
            publisher_unaffected = false;
            detail = format!("publishing failed after {seq} messages: {e}");
            break;
        }
        seq += n;
    }
    if publisher_unaffected {
        if let Err(e) = publ.flush(Duration::from_secs(20)) {
            publisher_unaffected = false;
            detail = format!("publisher got no PONG after publishing: {e:#}");
        }
    }
    // Give a server that enforces the limit asynchronously a moment, then drain the subscriber:
    // a protected one ends in EOF/reset well before all 128 MiB arrive.
    std::thread::sleep(Duration::from_millis(500));
    let (disconnected, delivered) = drain(sub, Duration::from_secs(15));
    if detail.is_empty() {
        detail = if disconnected {
            "subscriber disconnected by the server".into()
        } else {
            "the server kept buffering for a subscriber that did not read".into()
        };
    }
    Ok(SlowConsumerCheck {
        server: srv.name.clone(),
        disconnected,
        publisher_unaffected,
        delivered_mib: (delivered as usize * PAYLOAD) as f64 / (1 << 20) as f64,
        published_mib,
        detail,
    })
}

/// Read the subscriber until the server closes it (true) or everything arrived / time ran out.
fn drain(mut sub: Conn, limit: Duration) -> (bool, u64) {
    let until = Instant::now() + limit;
    let _ = sub
        .stream
        .set_read_timeout(Some(Duration::from_millis(200)));
    let mut msgs = 0u64;
    while Instant::now() < until && msgs < MESSAGES {
        match sub.stream.read(&mut sub.buf) {
            Ok(0) => return (true, msgs),
            Ok(n) => {
                let mut pings = 0;
                let r = sub.scanner.feed(&sub.buf[..n], &mut |e| match e {
                    Event::Msg { .. } => msgs += 1,
                    Event::Ping => pings += 1,
                    _ => {}
                });
                if r.is_err() {
                    return (false, msgs); // garbage is no proof of protection
                }
                for _ in 0..pings {
                    let _ = sub.stream.write_all(b"PONG\r\n");
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                ) => {}
            Err(_) => return (true, msgs), // connection reset
        }
    }
    (false, msgs)
}
