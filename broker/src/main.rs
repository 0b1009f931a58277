//! natsd: parse flags → load the config file → merge (flags win) → `-t` check, or
//! log, pid file, runtime, `Server::start`, signals, wait, clean up.
//!
//! Errors before logging starts are printed as nats-server prints them, `<prog>: <reason>`;
//! fatal start-up errors after that are `[FTL] <reason>` log lines. Both exit 1.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use natsd::cli::{self, Cli};
use natsd::conf::{self, ErrorKind};
use natsd::options::Options;
use natsd::server::Server;
use natsd::signals::{self, Handlers, Signals};
use natsd::{log, log_fatal, log_warn};

fn fail(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("{}: {}", signals::process_name(), msg);
    ExitCode::from(1)
}

/// Defaults, then the config file (if any), then the flags. Returns the warnings to log.
fn build_options(cli: &Cli) -> Result<(Options, Option<conf::Loaded>), conf::ConfError> {
    let mut opts = Options::default();
    let loaded = match &cli.config {
        Some(path) => Some(conf::load(path, &mut opts)?),
        None => None,
    };
    cli.apply(&mut opts);
    Ok((opts, loaded))
}

fn main() -> ExitCode {
    let args = std::env::args_os()
        .skip(1)
        .map(|a| a.to_string_lossy().into_owned());
    let cli = match cli::parse(args) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    if cli.show_help {
        print!("{}", cli::USAGE);
        return ExitCode::SUCCESS;
    }
    if cli.show_help_tls {
        println!("natsd does not support TLS yet: a tls {{}} block or --tls* flag makes it refuse to start.");
        return ExitCode::SUCCESS;
    }
    if cli.show_version {
        // The nats-server version natsd is compatible with comes first, as in INFO: harnesses
        // that parse `-v` to skip tests for old servers must see a 2.x version.
        println!(
            "{}: v{} (natsd {})",
            signals::process_name(),
            natsd::server::COMPAT_VERSION,
            natsd::server::NATSD_VERSION
        );
        return ExitCode::SUCCESS;
    }
    if let Some(spec) = &cli.signal {
        return match signals::send(spec) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fail(e),
        };
    }
    if let Err(e) = cli.validate() {
        return fail(e);
    }

    let built = build_options(&cli);
    if cli.check_config {
        return check_config(&cli, built);
    }
    let (opts, loaded) = match built {
        Ok(b) => b,
        // Security settings natsd cannot honour are fatal start-up errors: log them as [FTL].
        Err(e) if e.kind == ErrorKind::Unsupported => {
            log_fatal!("{}", e);
            return ExitCode::from(1);
        }
        Err(e) => return fail(e),
    };
    if let Err(e) = log::init(&log::Config::from_options(&opts)) {
        return fail(e);
    }
    if let Some(reason) = cli.unsupported_reason() {
        log_fatal!("{}", reason);
        return ExitCode::from(1);
    }
    for w in &cli.warnings {
        log_warn!("{}", w);
    }
    for w in loaded.iter().flat_map(|l| &l.warnings) {
        log_warn!("{}", w);
    }
    let pid_file = opts.pid_file.clone();
    if let Some(p) = &pid_file {
        if let Err(e) = write_pid_file(p) {
            log_fatal!("Could not write pidfile {}: {}", p.display(), e);
            return ExitCode::from(1);
        }
    }
    let code = run(cli, opts);
    if let Some(p) = &pid_file {
        let _ = std::fs::remove_file(p);
    }
    code
}

/// `-t`: nats-server's messages on stderr, exit 0 when valid and 1 with the reason when not.
fn check_config(
    cli: &Cli,
    built: Result<(Options, Option<conf::Loaded>), conf::ConfError>,
) -> ExitCode {
    let (_, loaded) = match built {
        Ok(b) => b,
        Err(e) => return fail(e),
    };
    if let Some(reason) = cli.unsupported_reason() {
        return fail(reason);
    }
    let path = cli.config.as_deref().unwrap_or(Path::new(""));
    let digest = loaded.as_ref().map(|l| l.digest.as_str()).unwrap_or("");
    for w in loaded.iter().flat_map(|l| &l.warnings) {
        eprintln!("{}: warning: {}", signals::process_name(), w);
    }
    eprintln!(
        "{}: configuration file {} is valid (sha256:{})",
        signals::process_name(),
        path.display(),
        digest
    );
    ExitCode::SUCCESS
}

/// Written in place (truncate + one write), not via a temp file and rename: the FreeBSD rc.d
/// script pre-creates the pid file owned by the `nats` user in /var/run, a directory that user
/// cannot create files in.
fn write_pid_file(path: &PathBuf) -> std::io::Result<()> {
    std::fs::write(path, format!("{}", std::process::id()))
}

/// Runtime workers: half the CPUs (at least one). A broker's hops are short; what costs is
/// handing a ready socket from the worker that polled it to another one, and waking parked
/// workers (tens of µs on a VM). Fewer workers keep the reader that spins after input (see
/// client.rs `SPIN`) on the thread that owns the socket driver, and leave CPUs for the kernel's
/// network stack and local clients. Measured with natsbench on the 2-core team machine
/// (1 worker vs 2): request/reply p50 19 µs vs 47 µs, p99 107 µs vs 126 µs, every throughput
/// target still met. `block_in_place` (bcrypt) still works: it moves the worker to a new thread.
fn worker_threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| (n.get() / 2).max(1))
        .unwrap_or(1)
}

fn run(cli: Cli, opts: Options) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(worker_threads())
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            log_fatal!("Could not start the runtime: {}", e);
            return ExitCode::from(1);
        }
    };
    rt.block_on(async move {
        // Before the listener opens: a SIGTERM right after "Server is ready" must be handled.
        let sigs = match Signals::install() {
            Ok(s) => s,
            Err(e) => {
                log_fatal!("Could not install signal handlers: {}", e);
                return ExitCode::from(1);
            }
        };
        let server = match Server::start(opts).await {
            Ok(s) => s,
            Err(e) => {
                log_fatal!("{}", e);
                return ExitCode::from(1);
            }
        };
        let handlers = Handlers {
            shutdown: {
                let s = server.clone();
                Box::new(move || s.shutdown())
            },
            reload: {
                let s = server.clone();
                Box::new(move |o| s.reload(o))
            },
            lame_duck: {
                let s = server.clone();
                Box::new(move || s.lame_duck())
            },
            rebuild: Box::new(move || rebuild(&cli)),
        };
        tokio::spawn(sigs.run(handlers));
        server.wait().await;
        ExitCode::SUCCESS
    })
}

/// SIGHUP: re-read the config file and re-apply the flags, as at start-up.
fn rebuild(cli: &Cli) -> Result<Options, String> {
    if cli.config.is_none() {
        return Err(
            "can only reload config when a file is provided using -c or --config".to_string(),
        );
    }
    let (opts, loaded) = build_options(cli).map_err(|e| e.to_string())?;
    for w in loaded.iter().flat_map(|l| &l.warnings) {
        log_warn!("{}", w);
    }
    Ok(opts)
}
