//! Subscriber side of a scenario: a few reader threads, each owning a set of connections on one
//! `mio` poller (so 1000 connections need 4 threads, not 1000). Every `MSG` is counted into the
//! connection's [`SeqTracker`]; counts go to the [`Gate`] once per read so publishers may go on.
//!
//! Ending: when the controller raises `finish` (all publishers flushed), each reader sends PING on
//! each of its connections and keeps counting until that PONG arrives: a server that queues
//! deliveries in order has sent every message for that connection before the PONG, so late
//! messages (duplicates) are seen too. A server whose PONG may overtake queued messages is not
//! wrong, so after the PONGs a reader still waits for the scenario's missing deliveries until
//! the stream has been quiet for [`QUIET`]; only then is anything missing counted as lost.

use crate::conn::Conn;
use crate::flow::Gate;
use crate::proto::Event;
use crate::tally::SeqTracker;
use anyhow::{anyhow, bail, Result};
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use std::io::{ErrorKind, Read, Write};
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Flags shared by every thread of one scenario.
#[derive(Default)]
pub struct Control {
    /// Publishers are done and flushed; readers should do their final PING round.
    pub finish: AtomicBool,
    /// Something failed; everybody stop.
    pub abort: AtomicBool,
}

struct Reader {
    stream: TcpStream,
    conn: Conn, // keeps scanner + name; its std stream is unused after the hand-over
    tracker: SeqTracker,
    pinged: bool,
    ponged: bool,
}

/// How long the final PING round may take before the run counts as failed.
const FINISH_TIMEOUT: Duration = Duration::from_secs(30);
/// After the PONGs: how long no data may arrive before missing deliveries count as lost.
pub const QUIET: Duration = Duration::from_secs(2);

/// Read `conns` until finished; returns one tracker per connection, in the order given.
pub fn read_all(
    conns: Vec<Conn>,
    expected_per_conn: u64,
    gate: &Gate,
    ctl: &Control,
) -> Result<Vec<SeqTracker>> {
    let mut poll = Poll::new()?;
    let mut readers = Vec::with_capacity(conns.len());
    for (i, mut conn) in conns.into_iter().enumerate() {
        let std_stream = conn.stream.try_clone()?;
        std_stream.set_nonblocking(true)?;
        let mut stream = TcpStream::from_std(std_stream);
        poll.registry()
            .register(&mut stream, Token(i), Interest::READABLE)?;
        conn.buf = Vec::new(); // the thread's buffer is shared below
        readers.push(Reader {
            stream,
            conn,
            tracker: SeqTracker::new(expected_per_conn),
            pinged: false,
            ponged: false,
        });
    }
    let mut buf = vec![0u8; crate::conn::READ_BUF];
    let mut events = Events::with_capacity(1024);
    let mut finish_deadline: Option<Instant> = None;
    let mut unponged = readers.len();
    let mut last_data = Instant::now();
    loop {
        if unponged == 0 && (gate.received() >= gate.expected() || last_data.elapsed() > QUIET) {
            break;
        }
        if ctl.abort.load(SeqCst) {
            bail!("aborted");
        }
        if finish_deadline.is_none() && ctl.finish.load(SeqCst) {
            finish_deadline = Some(Instant::now() + FINISH_TIMEOUT);
            for r in readers.iter_mut() {
                write_small(&mut r.stream, b"PING\r\n", &r.conn.name)?;
                r.pinged = true;
            }
        }
        if let Some(d) = finish_deadline {
            if unponged > 0 && Instant::now() > d {
                bail!(
                    "{} of {} subscriber connections sent no PONG within {:?} after the publishers finished",
                    unponged,
                    readers.len(),
                    FINISH_TIMEOUT
                );
            }
        }
        poll.poll(&mut events, Some(Duration::from_millis(20)))?;
        for ev in events.iter() {
            let r = &mut readers[ev.token().0];
            let mut counted = 0u64;
            loop {
                let n = match r.stream.read(&mut buf) {
                    Ok(0) => bail!(
                        "{}: the server closed this subscriber connection after {} messages \
                         (slow consumer or server failure)",
                        r.conn.name,
                        r.tracker.received()
                    ),
                    Ok(n) => {
                        last_data = Instant::now();
                        n
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                    Err(e) => bail!(
                        "{}: reading failed after {} messages: {e} (slow consumer disconnect?)",
                        r.conn.name,
                        r.tracker.received()
                    ),
                };
                let mut pings = 0;
                let mut err = None;
                let was_ponged = r.ponged;
                let (tracker, pinged, ponged) = (&mut r.tracker, r.pinged, &mut r.ponged);
                let before = tracker.received();
                r.conn
                    .scanner
                    .feed(&buf[..n], &mut |e| match e {
                        Event::Msg { seq, .. } => tracker.record(seq),
                        Event::Ping => pings += 1,
                        Event::Pong if pinged => *ponged = true,
                        Event::Pong | Event::Info | Event::Ok => {}
                        Event::Err(t) => err = Some(String::from_utf8_lossy(t).into_owned()),
                    })
                    .map_err(|e| anyhow!("{}: {e}", r.conn.name))?;
                counted += tracker.received() - before;
                if let Some(t) = err {
                    bail!("{}: server sent -ERR '{t}'", r.conn.name);
                }
                for _ in 0..pings {
                    write_small(&mut r.stream, b"PONG\r\n", &r.conn.name)?;
                }
                if r.ponged && !was_ponged {
                    unponged -= 1;
                }
            }
            gate.add_received(counted);
        }
    }
    Ok(readers.into_iter().map(|r| r.tracker).collect())
}

/// Write a few bytes to a non-blocking socket (PING/PONG): the send buffer is practically never
/// full on a connection that only reads, but retry briefly rather than assume.
fn write_small(s: &mut TcpStream, mut data: &[u8], name: &str) -> Result<()> {
    let until = Instant::now() + Duration::from_secs(5);
    while !data.is_empty() {
        match s.write(data) {
            Ok(n) => data = &data[n..],
            Err(e) if e.kind() == ErrorKind::WouldBlock && Instant::now() < until => {
                std::thread::sleep(Duration::from_micros(200))
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => bail!("{name}: cannot write to the server: {e}"),
        }
    }
    Ok(())
}

/// Spread connections over at most `threads` reader threads; join them in order.
pub fn spawn_readers(
    conns: Vec<Conn>,
    threads: usize,
    expected_per_conn: u64,
    gate: Arc<Gate>,
    ctl: Arc<Control>,
) -> Vec<std::thread::JoinHandle<Result<Vec<SeqTracker>>>> {
    let threads = threads.clamp(1, conns.len().max(1));
    let per = conns.len().div_ceil(threads);
    let mut it = conns.into_iter();
    let mut handles = Vec::new();
    loop {
        let chunk: Vec<Conn> = it.by_ref().take(per).collect();
        if chunk.is_empty() {
            break;
        }
        let (gate, ctl) = (gate.clone(), ctl.clone());
        handles.push(
            std::thread::Builder::new()
                .name("sub".into())
                .spawn(move || {
                    let r = read_all(chunk, expected_per_conn, &gate, &ctl);
                    if r.is_err() {
                        ctl.abort.store(true, SeqCst);
                    }
                    r
                })
                .expect("spawn reader thread"),
        );
    }
    handles
}
