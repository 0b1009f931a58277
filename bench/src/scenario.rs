//! The scenarios, and running one of them against one running server: open the connections,
//! release the publishers, count every delivery, and measure the server process meanwhile.

use crate::conn::{Conn, Sub};
use crate::flow::Gate;
use crate::procfs::{self, RssSampler};
use crate::proto::{msg_frame_len, PubBatch};
use crate::publisher::{self, PubJob};
use crate::reqrep;
use crate::server::RunningServer;
use crate::subscriber::{self, Control};
use crate::tally::{SeqTracker, Tally};
use anyhow::{bail, Result};
use serde::Serialize;
use std::sync::atomic::Ordering::SeqCst;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Shape {
    /// Publishers only, nobody subscribed: the server's parse + discard speed.
    PubOnly { pubs: usize },
    /// `pubs` publishers, `subs` subscribers of the same subject, each getting every message.
    FanOut { pubs: usize, subs: usize },
    /// One publisher, `members` subscribers in one queue group: each message to exactly one.
    Queue { members: usize },
    /// Sequential request/reply round trips.
    ReqReply,
    /// `conns` connections with one subscription each, one publisher broadcasting to all.
    Broadcast { conns: usize },
}

#[derive(Debug, Clone, Serialize)]
pub struct Scenario {
    pub name: &'static str,
    pub title: &'static str,
    pub shape: Shape,
    pub payload: usize,
    /// Messages (round trips for request/reply) in a full run at scale 1.
    pub msgs: u64,
}

/// Every scenario, in report order. Message counts aim at ~1-3 s per scenario on 2 cores.
pub fn all() -> Vec<Scenario> {
    use Shape::*;
    let s = |name, title, shape, payload, msgs| Scenario {
        name,
        title,
        shape,
        payload,
        msgs,
    };
    vec![
        s(
            "pub-16b",
            "pub only, 16 B",
            PubOnly { pubs: 1 },
            16,
            10_000_000,
        ),
        s(
            "pub-1k",
            "pub only, 1 KiB",
            PubOnly { pubs: 1 },
            1024,
            2_000_000,
        ),
        s(
            "pubsub-16b",
            "1 pub → 1 sub, 16 B",
            FanOut { pubs: 1, subs: 1 },
            16,
            4_000_000,
        ),
        s(
            "pubsub-1k",
            "1 pub → 1 sub, 1 KiB",
            FanOut { pubs: 1, subs: 1 },
            1024,
            1_000_000,
        ),
        s(
            "fanout4-16b",
            "1 pub → 4 subs, 16 B",
            FanOut { pubs: 1, subs: 4 },
            16,
            1_500_000,
        ),
        s(
            "pub4-sub4-16b",
            "4 pubs → 4 subs, 16 B",
            FanOut { pubs: 4, subs: 4 },
            16,
            1_000_000,
        ),
        s(
            "queue4-16b",
            "1 pub → queue group of 4, 16 B",
            Queue { members: 4 },
            16,
            3_000_000,
        ),
        s(
            "reqrep-16b",
            "request/reply round trip, 16 B",
            ReqReply,
            16,
            20_000,
        ),
        s(
            "conn1000-16b",
            "1000 conns × 1 sub, broadcast, 16 B",
            Broadcast { conns: 1000 },
            16,
            2_000,
        ),
        s(
            "pubsub-64k",
            "1 pub → 1 sub, 64 KiB",
            FanOut { pubs: 1, subs: 1 },
            65536,
            30_000,
        ),
    ]
}

/// Knobs shared by all scenarios of a run.
#[derive(Debug, Clone, Serialize)]
pub struct Params {
    /// Deliveries (in bytes on the wire) publishers may run ahead of subscribers.
    pub window_bytes: usize,
    /// Bytes per publisher write.
    pub batch_bytes: usize,
    /// Reader threads for subscriber connections.
    pub reader_threads: usize,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            window_bytes: 8 << 20,
            batch_bytes: 64 << 10,
            reader_threads: 4,
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct Latency {
    pub p50_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
}

/// What one scenario did against one server.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    /// Messages published (round trips for request/reply).
    pub msgs: u64,
    pub deliveries: u64,
    pub secs: f64,
    pub msgs_per_sec: f64,
    pub deliveries_per_sec: f64,
    pub latency: Option<Latency>,
    pub tally: Tally,
    /// Highest VmRSS seen (10 ms sampling) and VmHWM, KiB.
    pub peak_rss_kib: u64,
    /// VmRSS with all connections open and idle, before any message (broadcast scenario only).
    pub conns_rss_kib: Option<u64>,
    pub server_cpu_secs: f64,
    pub cpu_secs_per_million: f64,
    /// CPU the load generator used, as a share of the cores it may use (near 100 % = bottleneck).
    pub generator_cpu_pct: f64,
}

/// Run `sc` with `msgs` messages against `srv`. Any loss, duplicate, protocol error, disconnect or
/// server death is an error.
pub fn run(
    srv: &mut RunningServer,
    sc: &Scenario,
    msgs: u64,
    p: &Params,
    gen_cpus: usize,
) -> Result<Outcome> {
    let sampler = RssSampler::start(srv.pid);
    let r = run_inner(srv, sc, msgs, p, gen_cpus);
    let sampled = sampler.stop();
    srv.check_alive()?;
    let mut out = r.map_err(|e| e.context(format!("scenario {} against {}", sc.name, srv.name)))?;
    let hwm = procfs::status_kb(srv.pid, "VmHWM").unwrap_or(0);
    out.peak_rss_kib = sampled.max(hwm);
    if !out.tally.is_exact() {
        bail!(
            "scenario {} against {}: message accounting failed: {}",
            sc.name,
            srv.name,
            out.tally
        );
    }
    Ok(out)
}

/// Fewer server CPU ticks than this and "CPU per million messages" is not reported.
const MIN_TICKS: u64 = 5;

struct Measure {
    t0: Instant,
    cpu0: u64,
    gen0: f64,
    pid: u32,
}

impl Measure {
    fn start(pid: u32) -> Result<Measure> {
        Ok(Measure {
            t0: Instant::now(),
            cpu0: procfs::cpu_ticks(pid)?,
            gen0: procfs::self_cpu_secs(),
            pid,
        })
    }

    fn finish(&self, end: Instant, msgs: u64, deliveries: u64, gen_cpus: usize) -> Result<Outcome> {
        let secs = end
            .saturating_duration_since(self.t0)
            .as_secs_f64()
            .max(1e-9);
        let ticks = procfs::cpu_ticks(self.pid)? - self.cpu0;
        let cpu = ticks as f64 / procfs::clock_ticks_per_sec() as f64;
        // CPU time comes in clock ticks (10 ms): below a few ticks a per-message figure is noise.
        let cpu_per_million = if ticks < MIN_TICKS {
            f64::NAN
        } else {
            cpu / (msgs as f64 / 1e6)
        };
        let gen = procfs::self_cpu_secs() - self.gen0;
        let wall = self.t0.elapsed().as_secs_f64().max(1e-9);
        Ok(Outcome {
            msgs,
            deliveries,
            secs,
            msgs_per_sec: msgs as f64 / secs,
            deliveries_per_sec: deliveries as f64 / secs,
            latency: None,
            tally: Tally::default(),
            peak_rss_kib: 0,
            conns_rss_kib: None,
            server_cpu_secs: cpu,
            cpu_secs_per_million: cpu_per_million,
            generator_cpu_pct: 100.0 * gen / (wall * gen_cpus.max(1) as f64),
        })
    }
}

const SUBJECT: &str = "bench.s";

fn run_inner(
    srv: &RunningServer,
    sc: &Scenario,
    msgs: u64,
    p: &Params,
    gen_cpus: usize,
) -> Result<Outcome> {
    let addr = srv.addr;
    match sc.shape {
        Shape::ReqReply => return run_reqrep(srv, sc, msgs, gen_cpus),
        Shape::PubOnly { pubs } => {
            return run_pubsub(srv, sc, msgs, pubs, vec![], 0, false, p, gen_cpus)
        }
        _ => {}
    }
    let (pubs, subs, queue) = match sc.shape {
        Shape::FanOut { pubs, subs } => (pubs, subs, false),
        Shape::Queue { members } => (1, members, true),
        Shape::Broadcast { conns } => (1, conns, false),
        _ => unreachable!(),
    };
    let mut conns = Vec::with_capacity(subs);
    for i in 0..subs {
        let sub = if queue {
            Sub::queue(SUBJECT, "q")
        } else {
            Sub::plain(SUBJECT)
        };
        conns.push(Conn::open(addr, &format!("sub{i}"), &[sub])?);
    }
    let conns_rss = if matches!(sc.shape, Shape::Broadcast { .. }) {
        // Let the server settle with all connections idle, then read its RSS.
        std::thread::sleep(Duration::from_millis(300));
        Some(procfs::status_kb(srv.pid, "VmRSS")?)
    } else {
        None
    };
    let fanout = if queue { 1 } else { subs as u64 };
    let mut out = run_pubsub(srv, sc, msgs, pubs, conns, fanout, queue, p, gen_cpus)?;
    out.conns_rss_kib = conns_rss;
    Ok(out)
}

#[allow(clippy::too_many_arguments)]
fn run_pubsub(
    srv: &RunningServer,
    sc: &Scenario,
    msgs: u64,
    pubs: usize,
    sub_conns: Vec<Conn>,
    fanout: u64,
    queue: bool,
    p: &Params,
    gen_cpus: usize,
) -> Result<Outcome> {
    let subs = sub_conns.len();
    let deliver_len = msg_frame_len(SUBJECT, 1, sc.payload) as u64;
    let window = (p.window_bytes as u64 / deliver_len).max(1);
    let pub_frame = PubBatch::new(SUBJECT, None, sc.payload, 1).frame_len();
    // A batch must fit the window several times over, so publishers and subscribers overlap.
    let mut frames = (p.batch_bytes / pub_frame).max(1) as u64;
    if let Some(per_msg) = (window / 4).checked_div(fanout) {
        frames = frames.min(per_msg.max(1));
    }
    let window = window.max(frames * fanout);
    let expected = msgs * fanout;
    let gate = Arc::new(Gate::new(fanout, window, expected));
    let ctl = Arc::new(Control::default());
    let start = Arc::new(Barrier::new(pubs + 1));

    let readers =
        subscriber::spawn_readers(sub_conns, p.reader_threads, msgs, gate.clone(), ctl.clone());
    let mut publishers = Vec::with_capacity(pubs);
    let per_pub = msgs.div_ceil(pubs as u64);
    for i in 0..pubs {
        let first_seq = i as u64 * per_pub;
        let count = per_pub.min(msgs.saturating_sub(first_seq));
        let conn = Conn::open(srv.addr, &format!("pub{i}"), &[])?;
        let batch = PubBatch::new(SUBJECT, None, sc.payload, frames as usize);
        publishers.push(publisher::spawn(
            PubJob {
                conn,
                batch,
                first_seq,
                count,
            },
            gate.clone(),
            ctl.clone(),
            start.clone(),
        ));
    }
    let m = Measure::start(srv.pid)?;
    start.wait();

    let mut errors = Vec::new();
    let mut last_flush = m.t0;
    for h in publishers {
        match h.join().expect("publisher thread panicked") {
            Ok(t) => last_flush = last_flush.max(t),
            Err(e) => errors.push(e),
        }
    }
    ctl.finish.store(true, SeqCst);
    let mut trackers: Vec<SeqTracker> = Vec::with_capacity(subs);
    for h in readers {
        match h.join().expect("reader thread panicked") {
            Ok(t) => trackers.extend(t),
            Err(e) => errors.push(e),
        }
    }
    if !errors.is_empty() {
        // The first real cause, not the "aborted" echoes of the other threads.
        let i = errors
            .iter()
            .position(|e| e.to_string() != "aborted")
            .unwrap_or(0);
        return Err(errors.swap_remove(i));
    }
    let end = if fanout == 0 {
        last_flush
    } else {
        gate.done_at().unwrap_or_else(Instant::now)
    };
    let tally = if fanout == 0 {
        Tally {
            expected: 0,
            ..Tally::default()
        }
    } else if queue {
        SeqTracker::tally_group(&trackers)
    } else {
        Tally::sum(trackers.iter().map(|t| t.tally()))
    };
    let mut out = m.finish(end, msgs, tally.received, gen_cpus)?;
    out.tally = tally;
    Ok(out)
}

fn run_reqrep(srv: &RunningServer, sc: &Scenario, msgs: u64, gen_cpus: usize) -> Result<Outcome> {
    let ctl = Arc::new(Control::default());
    let (resp, requester) = open_reqrep(srv, sc.payload, &ctl)?;
    let warmup = reqrep_warmup(msgs);
    let m = Measure::start(srv.pid)?;
    let r = reqrep::request(requester, sc.payload, warmup, msgs, &ctl);
    let end = Instant::now();
    ctl.finish.store(true, SeqCst);
    if r.is_err() {
        ctl.abort.store(true, SeqCst);
    }
    let answered = resp.join().expect("responder thread panicked");
    let req = r?;
    answered?;
    let tally = req.tally_tracker.tally();
    reqrep_outcome(&m, end, req, tally, msgs, warmup, gen_cpus)
}

/// Warm-up round trips before the timed ones: a tenth of the run, 1 to 1000.
fn reqrep_warmup(msgs: u64) -> u64 {
    (msgs / 10).clamp(1, 1000)
}

/// Connects a responder, answering on its own thread until `ctl` says finish or abort, and the
/// requester's connection to `srv`.
fn open_reqrep(
    srv: &RunningServer,
    payload: usize,
    ctl: &Arc<Control>,
) -> Result<(std::thread::JoinHandle<Result<u64>>, Conn)> {
    let responder = Conn::open(
        srv.addr,
        "responder",
        &[Sub::plain(reqrep::REQUEST_SUBJECT)],
    )?;
    let requester = Conn::open(srv.addr, "requester", &[Sub::plain(reqrep::INBOX)])?;
    let c = ctl.clone();
    let resp = std::thread::spawn(move || reqrep::respond(responder, payload, &c));
    Ok((resp, requester))
}

/// The outcome of a request/reply run. The server is measured over warm-up and timed round
/// trips alike; throughput and latency count the timed round trips over the timed part only.
fn reqrep_outcome(
    m: &Measure,
    end: Instant,
    req: reqrep::Requested,
    tally: Tally,
    msgs: u64,
    warmup: u64,
    gen_cpus: usize,
) -> Result<Outcome> {
    let mut rtt = req.rtt_ns;
    rtt.sort_unstable();
    let pct = |q: f64| crate::stats::percentile_sorted(&rtt, q) as f64 / 1000.0;
    let mut out = m.finish(end, msgs + warmup, tally.received, gen_cpus)?;
    out.msgs = msgs;
    out.secs = req.elapsed.as_secs_f64();
    out.msgs_per_sec = msgs as f64 / out.secs.max(1e-9);
    out.deliveries_per_sec = out.msgs_per_sec;
    out.latency = Some(Latency {
        p50_us: pct(0.50),
        p99_us: pct(0.99),
        p999_us: pct(0.999),
    });
    out.tally = tally;
    Ok(out)
}

/// Round trips per turn in a paired request/reply run: long enough that each server's loop is
/// warm (alternating every single request measured wake-ups from idle, ~2× the hot latency),
/// short enough (~5-20 ms) that both servers see the same machine load.
const PAIRED_BLOCK: u64 = 100;

/// Request/reply against several servers at once, taking turns in blocks of [`PAIRED_BLOCK`]
/// round trips (A, B, A, B, ...): one request is in flight at any moment, so the servers do not
/// compete, and both see the same moment-to-moment machine load. On a shared machine that makes
/// the latency comparison fair in a way that one server after the other for a few seconds each
/// cannot.
pub fn run_reqrep_paired(
    srvs: &mut [RunningServer],
    sc: &Scenario,
    msgs: u64,
    gen_cpus: usize,
) -> Result<Vec<Outcome>> {
    struct Side {
        ctl: Arc<Control>,
        responder: Option<std::thread::JoinHandle<Result<u64>>>,
        requester: reqrep::Requester,
        measure: Measure,
        sampler: Option<RssSampler>,
    }
    let warmup = reqrep_warmup(msgs);
    let mut sides = Vec::with_capacity(srvs.len());
    for srv in srvs.iter() {
        let sampler = RssSampler::start(srv.pid);
        let ctl = Arc::new(Control::default());
        let (responder, requester) = open_reqrep(srv, sc.payload, &ctl)?;
        sides.push(Side {
            ctl,
            responder: Some(responder),
            requester: reqrep::Requester::new(requester, sc.payload, warmup, msgs)?,
            measure: Measure::start(srv.pid)?,
            sampler: Some(sampler),
        });
    }
    let mut failure = None;
    let total = warmup + msgs;
    'outer: for block in (0..total).step_by(PAIRED_BLOCK as usize) {
        for (k, side) in sides.iter_mut().enumerate() {
            for seq in block..(block + PAIRED_BLOCK).min(total) {
                if let Err(e) = side.requester.round_trip(seq) {
                    failure =
                        Some(e.context(format!("scenario {} against {}", sc.name, srvs[k].name)));
                    break 'outer;
                }
            }
        }
    }
    let end = Instant::now();
    let mut outs = Vec::with_capacity(sides.len());
    for (side, srv) in sides.iter_mut().zip(srvs.iter_mut()) {
        side.ctl.finish.store(true, SeqCst);
        let answered = side
            .responder
            .take()
            .expect("joined once")
            .join()
            .expect("responder thread panicked");
        let sampled = side.sampler.take().expect("stopped once").stop();
        srv.check_alive()?;
        if failure.is_none() {
            if let Err(e) = answered {
                failure = Some(e.context(format!("responder of {}", srv.name)));
            }
        }
        outs.push(sampled.max(procfs::status_kb(srv.pid, "VmHWM").unwrap_or(0)));
    }
    if let Some(e) = failure {
        return Err(e);
    }
    let mut results = Vec::with_capacity(sides.len());
    for ((side, srv), peak) in sides.into_iter().zip(srvs.iter()).zip(outs) {
        let req = side.requester.finish();
        let tally = req.tally_tracker.tally();
        if !tally.is_exact() {
            bail!(
                "scenario {} against {}: message accounting failed: {tally}",
                sc.name,
                srv.name
            );
        }
        let mut out = reqrep_outcome(&side.measure, end, req, tally, msgs, warmup, gen_cpus)?;
        out.peak_rss_kib = peak;
        results.push(out);
    }
    Ok(results)
}
