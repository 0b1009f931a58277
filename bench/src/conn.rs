//! One raw client connection: TCP connect, the INFO / CONNECT / SUB / PING-PONG handshake, and a
//! blocking "read until" helper. After the handshake the server has registered every subscription
//! (its PONG comes after it processed the SUBs), so publishing can start without a race.

use crate::proto::{Event, Scanner};
use anyhow::{anyhow, bail, Context, Result};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// A subscription made during the handshake. Every connection uses sid 1, 2, ... in order.
#[derive(Debug, Clone)]
pub struct Sub {
    pub subject: String,
    pub queue: Option<String>,
}

impl Sub {
    pub fn plain(subject: &str) -> Self {
        Sub {
            subject: subject.into(),
            queue: None,
        }
    }
    pub fn queue(subject: &str, queue: &str) -> Self {
        Sub {
            subject: subject.into(),
            queue: Some(queue.into()),
        }
    }
}

pub struct Conn {
    pub stream: TcpStream,
    pub scanner: Scanner,
    /// Read buffer; big reads keep the syscall count per message low.
    pub buf: Vec<u8>,
    pub name: String,
}

pub const READ_BUF: usize = 256 * 1024;
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

impl Conn {
    /// Connect, read INFO, send CONNECT, the SUBs and PING, and wait for the PONG.
    pub fn open(addr: SocketAddr, name: &str, subs: &[Sub]) -> Result<Conn> {
        let stream = TcpStream::connect_timeout(&addr, HANDSHAKE_TIMEOUT)
            .with_context(|| format!("{name}: cannot connect to {addr}"))?;
        // Latency matters for request/reply and the final PING; batching is done by us.
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(HANDSHAKE_TIMEOUT))?;
        let mut c = Conn {
            stream,
            scanner: Scanner::new(),
            buf: vec![0; READ_BUF],
            name: name.to_string(),
        };
        c.read_until(|e| matches!(e, Event::Info), "INFO")?;
        let mut hello = String::from(
            "CONNECT {\"verbose\":false,\"pedantic\":false,\"tls_required\":false,\"lang\":\"natsbench\",\
             \"version\":\"0.1.0\",\"protocol\":1,\"echo\":true,\"headers\":false,\"no_responders\":false",
        );
        hello.push_str(&format!(",\"name\":\"{name}\"}}\r\n"));
        for (i, s) in subs.iter().enumerate() {
            match &s.queue {
                Some(q) => hello.push_str(&format!("SUB {} {q} {}\r\n", s.subject, i + 1)),
                None => hello.push_str(&format!("SUB {} {}\r\n", s.subject, i + 1)),
            }
        }
        hello.push_str("PING\r\n");
        c.stream
            .write_all(hello.as_bytes())
            .with_context(|| format!("{name}: sending CONNECT"))?;
        c.read_until(|e| matches!(e, Event::Pong), "PONG after CONNECT")?;
        c.stream.set_read_timeout(None)?;
        Ok(c)
    }

    /// Send PING and wait for its PONG: everything this connection sent before has been processed.
    pub fn flush(&mut self, timeout: Duration) -> Result<()> {
        self.stream.set_read_timeout(Some(timeout))?;
        self.stream.write_all(b"PING\r\n")?;
        self.read_until(|e| matches!(e, Event::Pong), "PONG (flush)")?;
        self.stream.set_read_timeout(None)?;
        Ok(())
    }

    /// Read and scan until `done` matches an event. Server PINGs are answered, INFO and +OK are
    /// skipped, `-ERR`, MSG (nobody expects one here), EOF and timeouts are errors.
    pub fn read_until(
        &mut self,
        mut done: impl FnMut(&Event<'_>) -> bool,
        what: &str,
    ) -> Result<()> {
        loop {
            let n = match self.stream.read(&mut self.buf) {
                Ok(0) => bail!(
                    "{}: server closed the connection while waiting for {what}",
                    self.name
                ),
                Ok(n) => n,
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    bail!(
                        "{}: no {what} from the server within the timeout",
                        self.name
                    )
                }
                Err(e) => return Err(anyhow!(e).context(format!("{}: reading {what}", self.name))),
            };
            let mut found = false;
            let mut pings = 0;
            let mut err: Option<String> = None;
            let name = &self.name;
            self.scanner
                .feed(&self.buf[..n], &mut |e| {
                    if found || err.is_some() {
                        return;
                    }
                    if done(&e) {
                        found = true;
                        return;
                    }
                    match e {
                        Event::Ping => pings += 1,
                        Event::Info | Event::Ok | Event::Pong => {}
                        Event::Err(t) => {
                            err = Some(format!(
                                "{name}: server sent -ERR '{}'",
                                String::from_utf8_lossy(t)
                            ))
                        }
                        Event::Msg { .. } => {
                            err = Some(format!("{name}: unexpected MSG while waiting for {what}"))
                        }
                    }
                })
                .map_err(|e| anyhow!("{}: {e}", self.name))?;
            for _ in 0..pings {
                self.stream.write_all(b"PONG\r\n")?;
            }
            if let Some(e) = err {
                bail!(e);
            }
            if found {
                return Ok(());
            }
        }
    }
}
