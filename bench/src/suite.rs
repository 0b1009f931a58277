//! A whole benchmark: every selected scenario, `runs` times, servers interleaved per scenario
//! (A B, A B, ...) so drift in machine load hits both alike, each on a freshly started server.

use crate::procfs::{self, Machine};
use crate::report::{
    check_targets, Figures, Pinning, Report, ScenarioRow, ServerInfo, TargetCheck,
};
use crate::scenario::{self, Outcome, Params, Scenario};
use crate::server::{RunningServer, ServerSpec};
use crate::slowcons;
use crate::stats::median;
use anyhow::{bail, Context, Result};
use std::time::{Duration, SystemTime};

#[derive(Debug, Clone)]
pub struct SuiteConfig {
    pub servers: Vec<ServerSpec>,
    pub scenarios: Vec<Scenario>,
    pub runs: usize,
    /// Multiplies every scenario's message count.
    pub scale: f64,
    /// Overrides every scenario's message count.
    pub msgs: Option<u64>,
    pub params: Params,
    /// Pin servers to the last CPU and the generator to the others (needs >= 2 CPUs).
    /// Without pinning both share all CPUs under the normal scheduler.
    pub pin: bool,
    /// Check once per server that a never-reading subscriber gets disconnected.
    pub slow_consumer_check: bool,
    /// Print progress to stderr.
    pub verbose: bool,
}

/// How long a fresh server may settle before its idle RSS is read.
const SETTLE: Duration = Duration::from_millis(250);

/// Message count of `sc` under `cfg` (at least 1; request/reply at least 10 round trips).
pub fn msgs_for(sc: &Scenario, cfg: &SuiteConfig) -> u64 {
    let n = cfg
        .msgs
        .unwrap_or_else(|| (sc.msgs as f64 * cfg.scale).round() as u64);
    let min = if matches!(sc.shape, scenario::Shape::ReqReply) {
        10
    } else {
        1
    };
    n.max(min)
}

pub fn run_suite(cfg: &SuiteConfig) -> Result<Report> {
    if cfg.servers.is_empty() {
        bail!("no server to benchmark: give --server NAME=PATH");
    }
    if cfg.runs == 0 {
        bail!("--runs must be at least 1");
    }
    let started = utc_now();
    let mut machine = Machine::probe();
    let _ = procfs::raise_fd_limit();
    let cpus = procfs::online_cpus();
    let pinning = (cfg.pin && cpus >= 2).then(|| Pinning {
        server_cpus: vec![cpus - 1],
        generator_cpus: (0..cpus - 1).collect(),
    });
    let gen_cpus = match &pinning {
        Some(p) => {
            // Threads started from here on (all generator threads) inherit this.
            procfs::pin_current(&p.generator_cpus).context("pinning the load generator")?;
            p.generator_cpus.len()
        }
        None => cpus,
    };
    let mut servers = Vec::new();
    for s in &cfg.servers {
        if !s.path.is_file() {
            bail!(
                "{}: {} does not exist (build it, or fix the --server path)",
                s.name,
                s.path.display()
            );
        }
        servers.push(ServerInfo {
            name: s.name.clone(),
            path: s.path.display().to_string(),
            version: s.version().unwrap_or_else(|e| format!("unknown ({e})")),
        });
    }
    let ns = cfg.servers.len();
    let mut outcomes: Vec<Vec<Vec<Outcome>>> = vec![vec![Vec::new(); ns]; cfg.scenarios.len()];
    let mut idle: Vec<Vec<f64>> = vec![Vec::new(); ns];
    for run in 0..cfg.runs {
        for (si, sc) in cfg.scenarios.iter().enumerate() {
            let msgs = msgs_for(sc, cfg);
            let server_cpus = || pinning.as_ref().map(|p| p.server_cpus.clone());
            let outs: Vec<Outcome> = if matches!(sc.shape, scenario::Shape::ReqReply) && ns > 1 {
                // Latency: all servers side by side, requests taking turns (see run_reqrep_paired).
                let mut srvs = Vec::with_capacity(ns);
                for spec in &cfg.servers {
                    srvs.push(RunningServer::start(spec, server_cpus())?);
                }
                std::thread::sleep(SETTLE);
                for (vi, srv) in srvs.iter().enumerate() {
                    idle[vi].push(procfs::status_kb(srv.pid, "VmRSS")? as f64);
                }
                let outs = scenario::run_reqrep_paired(&mut srvs, sc, msgs, gen_cpus)
                    .with_context(|| format!("run {} of {}", run + 1, cfg.runs))?;
                srvs.into_iter().for_each(RunningServer::stop);
                outs
            } else {
                let mut outs = Vec::with_capacity(ns);
                for (vi, spec) in cfg.servers.iter().enumerate() {
                    let mut srv = RunningServer::start(spec, server_cpus())?;
                    std::thread::sleep(SETTLE);
                    idle[vi].push(procfs::status_kb(srv.pid, "VmRSS")? as f64);
                    outs.push(
                        scenario::run(&mut srv, sc, msgs, &cfg.params, gen_cpus)
                            .with_context(|| format!("run {} of {}", run + 1, cfg.runs))?,
                    );
                    srv.stop();
                }
                outs
            };
            for (vi, (spec, out)) in cfg.servers.iter().zip(outs).enumerate() {
                if cfg.verbose {
                    let lat = out
                        .latency
                        .map(|l| format!(", p50 {:.0} µs p99 {:.0} µs", l.p50_us, l.p99_us))
                        .unwrap_or_default();
                    eprintln!(
                        "[run {}/{}] {:<14} {:<12} {:>12.0} msgs/s in {:>6.2} s{lat}, peak RSS {:.1} MiB, \
                         server CPU {:.2} s, generator {:.0} %",
                        run + 1,
                        cfg.runs,
                        sc.name,
                        spec.name,
                        out.msgs_per_sec,
                        out.secs,
                        out.peak_rss_kib as f64 / 1024.0,
                        out.server_cpu_secs,
                        out.generator_cpu_pct
                    );
                }
                outcomes[si][vi].push(out);
            }
        }
    }
    let mut slow_consumer = Vec::new();
    if cfg.slow_consumer_check {
        for spec in &cfg.servers {
            let mut srv =
                RunningServer::start(spec, pinning.as_ref().map(|p| p.server_cpus.clone()))?;
            let c = slowcons::check(&srv)
                .with_context(|| format!("slow-consumer check against {}", spec.name))?;
            srv.check_alive()?;
            srv.stop();
            if cfg.verbose {
                eprintln!(
                    "[check] slow consumer  {:<12} {} ({:.1} of {:.0} MiB reached it)",
                    spec.name,
                    if c.pass() {
                        "protected"
                    } else {
                        "NOT PROTECTED"
                    },
                    c.delivered_mib,
                    c.published_mib
                );
            }
            slow_consumer.push(c);
        }
    }
    let mut deliveries = 0;
    let mut lost = 0;
    let mut duplicated = 0;
    let mut rows = Vec::new();
    for (si, sc) in cfg.scenarios.iter().enumerate() {
        let per_server: Vec<Figures> = cfg
            .servers
            .iter()
            .zip(std::mem::take(&mut outcomes[si]))
            .map(|(spec, runs)| {
                for o in &runs {
                    deliveries += o.tally.received;
                    lost += o.tally.missing;
                    duplicated += o.tally.duplicates;
                }
                Figures::from_runs(&spec.name, runs)
            })
            .collect();
        rows.push(ScenarioRow::new(sc, msgs_for(sc, cfg), per_server));
    }
    let idle_rss_kib: Vec<f64> = idle.iter().map(|v| median(v).unwrap_or(f64::NAN)).collect();
    let idle_rss_ratio = (ns == 2).then(|| idle_rss_kib[0] / idle_rss_kib[1]);
    let mut targets = if ns == 2 {
        check_targets(&rows, idle_rss_ratio)
    } else {
        Vec::new()
    };
    // Only the first server (natsd) has to keep the protection on; the reference always does.
    if let Some(c) = slow_consumer.first() {
        targets.push(TargetCheck {
            what: format!("slow-consumer protection on ({})", c.server),
            want: "disconnect".into(),
            got: f64::from(u8::from(c.pass())),
            pass: c.pass(),
        });
    }
    let order = (0..ns)
        .map(|i| char::from(b'A' + i as u8).to_string())
        .collect::<Vec<_>>()
        .join(" ");
    machine.load_avg_at_end = procfs::load_avg();
    Ok(Report {
        tool: format!("natsbench {}", env!("CARGO_PKG_VERSION")),
        started_utc: started,
        finished_utc: utc_now(),
        machine,
        servers,
        runs: cfg.runs,
        order: format!("{order} per scenario, repeated {} times", cfg.runs),
        scale: cfg.scale,
        pinning,
        params: cfg.params.clone(),
        idle_rss_kib,
        idle_rss_ratio,
        scenarios: rows,
        targets,
        slow_consumer,
        deliveries_counted: deliveries,
        lost,
        duplicated,
    })
}

/// `YYYY-MM-DD HH:MM:SS` in UTC, without a date crate.
pub fn utc_now() -> String {
    let secs = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (y, mo, d) = civil_from_days((secs / 86_400) as i64);
    let t = secs % 86_400;
    format!(
        "{y:04}-{mo:02}-{d:02} {:02}:{:02}:{:02}",
        t / 3600,
        t / 60 % 60,
        t % 60
    )
}

/// Days since 1970-01-01 → (year, month, day) (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(20_791), (2026, 12, 4));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    }
}
