//! The result of a suite: medians per scenario and server, ratios first / second server, the
//! targets from the issue checked against them, rendered as Markdown (also what stdout shows) and
//! serialised as JSON.

use crate::procfs::Machine;
use crate::scenario::{Latency, Outcome, Params, Scenario, Shape};
use crate::slowcons::SlowConsumerCheck;
use crate::stats::median;
use serde::Serialize;
use std::fmt::Write as _;

#[derive(Debug, Clone, Serialize)]
pub struct ServerInfo {
    pub name: String,
    pub path: String,
    pub version: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Pinning {
    pub server_cpus: Vec<usize>,
    pub generator_cpus: Vec<usize>,
}

/// Median figures of one server in one scenario, plus every run's raw outcome.
#[derive(Debug, Clone, Serialize)]
pub struct Figures {
    pub server: String,
    pub msgs_per_sec: f64,
    pub deliveries_per_sec: f64,
    pub latency: Option<Latency>,
    pub peak_rss_kib: f64,
    pub conns_rss_kib: Option<f64>,
    pub cpu_secs_per_million: f64,
    pub generator_cpu_pct: f64,
    pub runs: Vec<Outcome>,
}

impl Figures {
    pub fn from_runs(server: &str, runs: Vec<Outcome>) -> Figures {
        let med = |f: &dyn Fn(&Outcome) -> f64| {
            median(&runs.iter().map(f).collect::<Vec<_>>()).unwrap_or(f64::NAN)
        };
        let lat = |f: &dyn Fn(&Latency) -> f64| {
            med(&|o: &Outcome| o.latency.as_ref().map_or(f64::NAN, f))
        };
        let latency = runs.iter().any(|o| o.latency.is_some()).then(|| Latency {
            p50_us: lat(&|l| l.p50_us),
            p99_us: lat(&|l| l.p99_us),
            p999_us: lat(&|l| l.p999_us),
        });
        let conns = runs.iter().any(|o| o.conns_rss_kib.is_some());
        Figures {
            server: server.into(),
            msgs_per_sec: med(&|o| o.msgs_per_sec),
            deliveries_per_sec: med(&|o| o.deliveries_per_sec),
            latency,
            peak_rss_kib: med(&|o| o.peak_rss_kib as f64),
            conns_rss_kib: conns.then(|| med(&|o| o.conns_rss_kib.map_or(f64::NAN, |v| v as f64))),
            cpu_secs_per_million: med(&|o| o.cpu_secs_per_million),
            generator_cpu_pct: med(&|o| o.generator_cpu_pct),
            runs,
        }
    }
}

/// First server's figure divided by the second's.
#[derive(Debug, Clone, Serialize)]
pub struct Ratios {
    pub throughput: f64,
    pub peak_rss: f64,
    pub cpu_per_million: f64,
    pub conns_rss: Option<f64>,
    pub p50: Option<f64>,
    pub p99: Option<f64>,
    pub p999: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ScenarioRow {
    pub name: String,
    pub title: String,
    pub shape: Shape,
    pub payload: usize,
    pub msgs: u64,
    pub servers: Vec<Figures>,
    pub ratio: Option<Ratios>,
}

#[derive(Debug, Clone, Serialize)]
pub struct TargetCheck {
    pub what: String,
    /// e.g. `>= 1.20`
    pub want: String,
    pub got: f64,
    pub pass: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub tool: String,
    pub started_utc: String,
    pub finished_utc: String,
    pub machine: Machine,
    pub servers: Vec<ServerInfo>,
    pub runs: usize,
    pub order: String,
    pub scale: f64,
    pub pinning: Option<Pinning>,
    pub params: Params,
    /// Median VmRSS right after start-up (each scenario starts a fresh server), KiB.
    pub idle_rss_kib: Vec<f64>,
    pub idle_rss_ratio: Option<f64>,
    pub scenarios: Vec<ScenarioRow>,
    pub targets: Vec<TargetCheck>,
    /// Per server: did a subscriber that never reads get disconnected?
    pub slow_consumer: Vec<SlowConsumerCheck>,
    /// Deliveries counted over all runs; the report only exists if every one was exact.
    pub deliveries_counted: u64,
    pub lost: u64,
    pub duplicated: u64,
}

fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 {
        a / b
    } else {
        f64::NAN
    }
}

impl ScenarioRow {
    pub fn new(sc: &Scenario, msgs: u64, servers: Vec<Figures>) -> ScenarioRow {
        let r = (servers.len() == 2).then(|| {
            let (a, b) = (&servers[0], &servers[1]);
            let lat = |f: fn(&Latency) -> f64| {
                Some(ratio(f(a.latency.as_ref()?), f(b.latency.as_ref()?)))
            };
            Ratios {
                throughput: ratio(a.msgs_per_sec, b.msgs_per_sec),
                peak_rss: ratio(a.peak_rss_kib, b.peak_rss_kib),
                cpu_per_million: ratio(a.cpu_secs_per_million, b.cpu_secs_per_million),
                conns_rss: a
                    .conns_rss_kib
                    .zip(b.conns_rss_kib)
                    .map(|(x, y)| ratio(x, y)),
                p50: lat(|l| l.p50_us),
                p99: lat(|l| l.p99_us),
                p999: lat(|l| l.p999_us),
            }
        });
        ScenarioRow {
            name: sc.name.into(),
            title: sc.title.into(),
            shape: sc.shape,
            payload: sc.payload,
            msgs,
            servers,
            ratio: r,
        }
    }
}

/// The targets of the issue, for the first server against the second.
pub fn check_targets(rows: &[ScenarioRow], idle_ratio: Option<f64>) -> Vec<TargetCheck> {
    let mut t = Vec::new();
    let mut add = |what: String, got: f64, min: Option<f64>, max: Option<f64>| {
        let (want, pass) = match (min, max) {
            (Some(m), _) => (format!(">= {m:.2}"), got >= m),
            (_, Some(m)) => (format!("<= {m:.2}"), got <= m),
            _ => unreachable!(),
        };
        t.push(TargetCheck {
            what,
            want,
            got,
            pass,
        });
    };
    for row in rows {
        let Some(r) = &row.ratio else { continue };
        match row.shape {
            Shape::ReqReply => {
                if let Some(p) = r.p50 {
                    add(
                        format!("{}: p50 latency ratio", row.name),
                        p,
                        None,
                        Some(1.0),
                    );
                }
                if let Some(p) = r.p99 {
                    add(
                        format!("{}: p99 latency ratio", row.name),
                        p,
                        None,
                        Some(1.0),
                    );
                }
            }
            _ => {
                let min = if row.payload <= 16 { 1.2 } else { 1.0 };
                add(
                    format!("{}: throughput ratio", row.name),
                    r.throughput,
                    Some(min),
                    None,
                );
            }
        }
        if let Some(c) = r.conns_rss {
            add("RSS with 1000 connections ratio".into(), c, None, Some(0.5));
        }
        add(
            format!("{}: peak RSS ratio", row.name),
            r.peak_rss,
            None,
            Some(0.5),
        );
    }
    if let Some(i) = idle_ratio {
        add("idle RSS ratio".into(), i, None, Some(0.3));
    }
    t
}

/// Renders one figure of one server for a table cell.
type FigFmt<'a> = &'a dyn Fn(&Figures) -> String;

fn rate(v: f64) -> String {
    if !v.is_finite() {
        "–".into()
    } else if v >= 1e6 {
        format!("{:.2} M", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.1} k", v / 1e3)
    } else {
        format!("{v:.0}")
    }
}

fn secs(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.3}")
    } else {
        "–".into()
    }
}

fn mib(kib: f64) -> String {
    if kib.is_finite() {
        format!("{:.1}", kib / 1024.0)
    } else {
        "–".into()
    }
}

fn x(r: Option<f64>) -> String {
    match r {
        Some(v) if v.is_finite() => format!("{v:.2}"),
        _ => "–".into(),
    }
}

impl Report {
    pub fn markdown(&self) -> String {
        let mut m = String::new();
        let names: Vec<&str> = self.servers.iter().map(|s| s.name.as_str()).collect();
        let two = names.len() == 2;
        let rname = if two {
            format!("{} / {}", names[0], names[1])
        } else {
            String::new()
        };
        let _ = writeln!(m, "# natsbench: {}\n", names.join(" vs "));
        let _ = writeln!(
            m,
            "{} → {} UTC. {} run(s) per scenario, servers interleaved ({}); every figure is the median \
             of the runs. Message counts × {}. Each scenario runs against a freshly started server \
             (`-a 127.0.0.1 -p -1`, defaults otherwise).\n",
            self.started_utc, self.finished_utc, self.runs, self.order, self.scale
        );
        let mc = &self.machine;
        let _ = writeln!(
            m,
            "Machine: {}, {} CPUs, {}, {} MiB RAM; load average (1/5/15 min) at start {}, at end {} \
             (other processes' load makes figures noisy: compare the ratios of one run, not runs).",
            mc.cpu_model,
            mc.cpus,
            mc.kernel,
            mc.mem_total_mib,
            mc.load_avg_at_start,
            mc.load_avg_at_end
        );
        match &self.pinning {
            Some(p) => {
                let _ = writeln!(
                    m,
                    "CPU pinning: server on CPU {:?}, load generator on CPU {:?}.",
                    p.server_cpus, p.generator_cpus
                );
            }
            None => {
                let _ = writeln!(m, "CPU pinning: off (server and generator share all CPUs).");
            }
        }
        for s in &self.servers {
            let _ = writeln!(m, "- **{}**: `{}` — {}", s.name, s.path, s.version);
        }
        let _ = writeln!(m);

        let _ = writeln!(
            m,
            "## Per scenario\n\nThroughput = messages published per second, counted until the last \
             delivery arrived (round trips/s for request/reply). Peak RSS in MiB. CPU = server CPU \
             seconds per million messages.\n"
        );
        let mut head = String::from("| scenario |");
        let mut rule = String::from("|---|");
        for (what, unit) in [("msgs/s", ""), ("peak RSS", " MiB"), ("CPU s/M", "")] {
            for n in &names {
                let _ = write!(head, " {what} {n}{unit} |");
                rule.push_str("---:|");
            }
            if two {
                let _ = write!(head, " {rname} |");
                rule.push_str("---:|");
            }
        }
        let _ = writeln!(m, "{head}\n{rule}");
        for row in &self.scenarios {
            let mut line = format!("| {} ({}) |", row.title, row.name);
            let r = row.ratio.as_ref();
            let cols: [(FigFmt, Option<f64>); 3] = [
                (&|f| rate(f.msgs_per_sec), r.map(|r| r.throughput)),
                (&|f| mib(f.peak_rss_kib), r.map(|r| r.peak_rss)),
                (
                    &|f| secs(f.cpu_secs_per_million),
                    r.map(|r| r.cpu_per_million),
                ),
            ];
            for (fmt, rat) in cols {
                for f in &row.servers {
                    let _ = write!(line, " {} |", fmt(f));
                }
                if two {
                    let _ = write!(line, " **{}** |", x(rat));
                }
            }
            let _ = writeln!(m, "{line}");
        }
        let _ = writeln!(m);

        for row in self
            .scenarios
            .iter()
            .filter(|r| r.servers.iter().any(|f| f.latency.is_some()))
        {
            let _ = writeln!(m, "## Latency: {} (µs)\n", row.title);
            if two {
                let _ = writeln!(
                    m,
                    "Both servers run side by side and the requests take turns in blocks of 100 \
                     (A, B, A, B, ...), one in flight at a time, so both see the same moment-to-moment machine load.\n"
                );
            }
            let _ = writeln!(m, "| server | p50 | p99 | p99.9 |\n|---|---:|---:|---:|");
            for f in &row.servers {
                if let Some(l) = &f.latency {
                    let _ = writeln!(
                        m,
                        "| {} | {:.1} | {:.1} | {:.1} |",
                        f.server, l.p50_us, l.p99_us, l.p999_us
                    );
                }
            }
            if let Some(r) = &row.ratio {
                let _ = writeln!(
                    m,
                    "| {rname} | **{}** | **{}** | **{}** |",
                    x(r.p50),
                    x(r.p99),
                    x(r.p999)
                );
            }
            let _ = writeln!(m);
        }

        let _ = writeln!(m, "## Memory (RSS from /proc/<pid>/status, MiB)\n");
        let mut head = String::from("| state |");
        let mut rule = String::from("|---|");
        for n in &names {
            let _ = write!(head, " {n} |");
            rule.push_str("---:|");
        }
        if two {
            let _ = write!(head, " {rname} |");
            rule.push_str("---:|");
        }
        let _ = writeln!(m, "{head}\n{rule}");
        let mut line = String::from("| idle, after start-up |");
        for v in &self.idle_rss_kib {
            let _ = write!(line, " {} |", mib(*v));
        }
        if two {
            let _ = write!(line, " **{}** |", x(self.idle_rss_ratio));
        }
        let _ = writeln!(m, "{line}");
        for row in self
            .scenarios
            .iter()
            .filter(|r| r.servers.iter().any(|f| f.conns_rss_kib.is_some()))
        {
            let mut line = format!("| {} idle connections ({}) |", conns_of(row), row.name);
            for f in &row.servers {
                let _ = write!(line, " {} |", mib(f.conns_rss_kib.unwrap_or(f64::NAN)));
            }
            if two {
                let _ = write!(
                    line,
                    " **{}** |",
                    x(row.ratio.as_ref().and_then(|r| r.conns_rss))
                );
            }
            let _ = writeln!(m, "{line}");
        }
        let peak_max = |i: usize| {
            self.scenarios
                .iter()
                .map(|r| r.servers[i].peak_rss_kib)
                .fold(f64::NAN, f64::max)
        };
        let mut line = String::from("| peak, highest of all scenarios |");
        let peaks: Vec<f64> = (0..names.len()).map(peak_max).collect();
        for p in &peaks {
            let _ = write!(line, " {} |", mib(*p));
        }
        if two {
            let _ = write!(line, " **{}** |", x(Some(ratio(peaks[0], peaks[1]))));
        }
        let _ = writeln!(m, "{line}\n");

        let _ = writeln!(
            m,
            "## Load generator\n\nCPU the generator used, as a share of the CPUs it may use (median); \
             near 100 % would mean the generator, not the server, set the pace.\n"
        );
        let mut head = String::from("| scenario |");
        let mut rule = String::from("|---|");
        for n in &names {
            let _ = write!(head, " vs {n} |");
            rule.push_str("---:|");
        }
        let _ = writeln!(m, "{head}\n{rule}");
        for row in &self.scenarios {
            let mut line = format!("| {} |", row.name);
            for f in &row.servers {
                let _ = write!(line, " {:.0} % |", f.generator_cpu_pct);
            }
            let _ = writeln!(m, "{line}");
        }
        let _ = writeln!(m);

        if !self.slow_consumer.is_empty() {
            let _ = writeln!(
                m,
                "## Slow-consumer protection\n\nA subscriber that never reads while 128 MiB are published to it \
                 must be disconnected, and the publisher must go on.\n"
            );
            let _ = writeln!(m, "| server | disconnected | publisher unaffected | MiB that reached it | |\n|---|---|---|---:|---|");
            for c in &self.slow_consumer {
                let name = &c.server;
                let yn = |b: bool| if b { "yes" } else { "**no**" };
                let _ = writeln!(
                    m,
                    "| {name} | {} | {} | {:.1} | {} |",
                    yn(c.disconnected),
                    yn(c.publisher_unaffected),
                    c.delivered_mib,
                    c.detail
                );
            }
            let _ = writeln!(m);
        }
        if !self.targets.is_empty() {
            let passed = self.targets.iter().filter(|t| t.pass).count();
            let _ = writeln!(
                m,
                "## Targets ({rname}): {passed} of {} met\n",
                self.targets.len()
            );
            let _ = writeln!(m, "| target | want | got | |\n|---|---|---:|---|");
            for t in &self.targets {
                let _ = writeln!(
                    m,
                    "| {} | {} | {:.2} | {} |",
                    t.what,
                    t.want,
                    t.got,
                    if t.pass { "met" } else { "**MISSED**" }
                );
            }
            let _ = writeln!(m);
        }
        let _ = writeln!(
            m,
            "## Message accounting\n\n{} deliveries counted by sequence number over all runs: {} lost, {} \
             duplicated. (Any loss, duplicate, slow-consumer disconnect or protocol error aborts the \
             run instead of producing this report.)",
            self.deliveries_counted, self.lost, self.duplicated
        );
        m
    }
}

fn conns_of(row: &ScenarioRow) -> usize {
    match row.shape {
        Shape::Broadcast { conns } => conns,
        _ => 0,
    }
}
