//! The tool's counting logic against a real server (natsd): a short run of every scenario must
//! count every delivery exactly once, and deliberately lost and duplicated messages must be caught
//! through the same connection/reader path the benchmark uses. No timing is asserted here:
//! timings live in the benchmark's own output, never in tests.
//!
//! The server is `target/<profile>/natsd` (built by `cargo test --workspace`, or
//! `cargo build -p natsd`); `NATSBENCH_TEST_SERVER=<path>` points the test at another binary.

use natsbench::conn::{Conn, Sub};
use natsbench::flow::Gate;
use natsbench::proto::PubBatch;
use natsbench::scenario::{self, Params, Shape};
use natsbench::server::{RunningServer, ServerSpec};
use natsbench::subscriber::{spawn_readers, Control};
use natsbench::suite::{msgs_for, run_suite, SuiteConfig};
use natsbench::tally::{SeqTracker, Tally};
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::Ordering::SeqCst;
use std::sync::Arc;
use std::time::Duration;

fn server() -> ServerSpec {
    if let Some(p) = std::env::var_os("NATSBENCH_TEST_SERVER") {
        return ServerSpec {
            name: "test-server".into(),
            path: p.into(),
        };
    }
    // <target>/<profile>/deps/counting-<hash> → <target>/<profile>/natsd
    let exe = std::env::current_exe().expect("current_exe");
    let natsd: PathBuf = exe
        .parent()
        .and_then(|deps| deps.parent())
        .map(|dir| dir.join("natsd"))
        .expect("test binary lives in <target>/<profile>/deps");
    assert!(
        natsd.is_file(),
        "natsd binary not found at {}: build it first (`cargo build -p natsd`, or run \
         `cargo test --workspace`), or set NATSBENCH_TEST_SERVER=<path to a NATS server>",
        natsd.display()
    );
    ServerSpec {
        name: "natsd".into(),
        path: natsd,
    }
}

#[test]
fn quick_run_of_every_scenario_counts_every_message_exactly() {
    let cfg = SuiteConfig {
        servers: vec![server()],
        scenarios: scenario::all(),
        runs: 1,
        scale: 0.01,
        msgs: None,
        params: Params::default(),
        pin: false,
        slow_consumer_check: true,
        verbose: false,
    };
    let report = run_suite(&cfg).unwrap_or_else(|e| panic!("quick run failed: {e:#}"));
    assert_eq!(report.scenarios.len(), scenario::all().len());
    assert_eq!((report.lost, report.duplicated), (0, 0));
    let mut total = 0;
    for (row, sc) in report.scenarios.iter().zip(scenario::all()) {
        let msgs = msgs_for(&sc, &cfg);
        // Deliveries each scenario must produce, derived independently of the runner.
        let want = match sc.shape {
            Shape::PubOnly { .. } => 0,
            Shape::FanOut { subs, .. } => msgs * subs as u64,
            Shape::Queue { .. } => msgs,
            Shape::ReqReply => msgs + (msgs / 10).clamp(1, 1000), // timed + warm-up replies
            Shape::Broadcast { conns } => msgs * conns as u64,
        };
        let o = &row.servers[0].runs[0];
        assert!(o.tally.is_exact(), "{}: {}", sc.name, o.tally);
        assert_eq!(o.tally.received, want, "{}: deliveries", sc.name);
        assert_eq!(o.deliveries, want, "{}: reported deliveries", sc.name);
        assert_eq!(o.msgs, msgs, "{}: messages", sc.name);
        assert!(
            o.msgs_per_sec > 0.0 && o.peak_rss_kib > 0,
            "{}: measured nothing",
            sc.name
        );
        if let Shape::ReqReply = sc.shape {
            let l = o.latency.expect("request/reply reports latency");
            assert!(
                l.p50_us <= l.p99_us && l.p99_us <= l.p999_us,
                "{}: {l:?}",
                sc.name
            );
        }
        if let Shape::Broadcast { .. } = sc.shape {
            assert!(
                o.conns_rss_kib.is_some(),
                "broadcast reports RSS with its connections open"
            );
        }
        total += want;
    }
    assert_eq!(report.deliveries_counted, total);
    assert!(report.idle_rss_kib[0] > 0.0);
    // The protocol requires it (docs/nats-protocol.md, "Slow consumer"), and the benchmark is only
    // fair if it stays on.
    let sc = &report.slow_consumer[0];
    assert!(sc.pass(), "slow-consumer protection: {sc:?}");
}

/// Publish the given sequence ranges on `bench.t` to one subscriber connection holding `subs`
/// subscriptions to it, and return what the reader path counted.
fn deliver(ranges: &[(u64, u64)], subs: usize, expected: u64) -> Tally {
    let mut srv = RunningServer::start(&server(), None).expect("start server");
    let sub_list: Vec<Sub> = (0..subs).map(|_| Sub::plain("bench.t")).collect();
    let sub = Conn::open(srv.addr, "sub", &sub_list).unwrap();
    let gate = Arc::new(Gate::new(subs as u64, 1 << 20, expected * subs as u64));
    let ctl = Arc::new(Control::default());
    let readers = spawn_readers(vec![sub], 1, expected, gate.clone(), ctl.clone());
    let mut publ = Conn::open(srv.addr, "pub", &[]).unwrap();
    let mut batch = PubBatch::new("bench.t", None, 16, 100);
    for &(from, to) in ranges {
        publ.stream
            .write_all(batch.numbered(from, (to - from) as usize))
            .unwrap();
    }
    publ.flush(Duration::from_secs(10)).unwrap();
    ctl.finish.store(true, SeqCst);
    let trackers: Vec<SeqTracker> = readers
        .into_iter()
        .flat_map(|h| h.join().unwrap().unwrap())
        .collect();
    srv.check_alive().unwrap();
    srv.stop();
    Tally::sum(trackers.iter().map(|t| t.tally()))
}

#[test]
fn exact_delivery_through_the_reader_path() {
    let t = deliver(&[(0, 100)], 1, 100);
    assert!(t.is_exact(), "{t}");
}

#[test]
fn a_deliberately_dropped_message_is_reported() {
    // Sequence 50 is never published.
    let t = deliver(&[(0, 50), (51, 100)], 1, 100);
    assert_eq!((t.received, t.missing, t.duplicates), (99, 1, 0), "{t}");
    assert!(!t.is_exact());
}

#[test]
fn a_deliberately_duplicated_message_is_reported() {
    // Sequence 7 is published twice: the count is one too high and the bitmap names the copy.
    let t = deliver(&[(0, 100), (7, 8)], 1, 100);
    assert_eq!((t.received, t.missing, t.duplicates), (101, 0, 1), "{t}");
    assert!(!t.is_exact());
}

#[test]
fn two_subscriptions_on_one_connection_are_seen_as_duplicates() {
    // The server rightly delivers one copy per sid; for a tracker that expects one copy per
    // message, every second copy is a duplicate, and none is missing.
    let t = deliver(&[(0, 100)], 2, 100);
    assert_eq!((t.received, t.missing, t.duplicates), (200, 0, 100), "{t}");
}

#[test]
fn paired_request_reply_counts_every_reply_on_both_servers() {
    let mut srvs = vec![
        RunningServer::start(&server(), None).expect("start server A"),
        RunningServer::start(&server(), None).expect("start server B"),
    ];
    let sc = scenario::all()
        .into_iter()
        .find(|s| s.shape == Shape::ReqReply)
        .expect("reqrep scenario");
    let msgs = 250; // not a multiple of the turn length: the last turn is short
    let outs =
        scenario::run_reqrep_paired(&mut srvs, &sc, msgs, 1).unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(outs.len(), 2);
    for o in &outs {
        let warmup = (msgs / 10).clamp(1, 1000);
        assert!(o.tally.is_exact(), "{}", o.tally);
        assert_eq!(o.tally.received, msgs + warmup);
        assert_eq!(o.msgs, msgs);
        assert!(o.latency.is_some());
    }
    srvs.into_iter().for_each(RunningServer::stop);
}
