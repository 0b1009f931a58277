//! Signals, both directions.
//!
//! In the running server ([`handle`]): SIGTERM/SIGINT stop gracefully, SIGHUP reloads the config
//! file (flags re-applied on top), SIGUSR1 reopens the log file, SIGUSR2 enters lame duck mode.
//! Each is logged as nats-server does (`Trapped "hangup" signal`).
//!
//! From the command line ([`send`]): `natsd --signal reload[=<pid|pidfile>]` sends the matching
//! signal to a running natsd, as `nats-server --signal` does. The FreeBSD rc.d script always names
//! the pid file; without one, the process is found with `pgrep`.

use std::path::Path;

use crate::options::Options;
use crate::{log_error, log_info};

/// `--signal` commands and the signal each sends (nats-server's table: `stop` is SIGKILL,
/// `quit` SIGINT, `term` SIGTERM).
pub const COMMANDS: &[(&str, libc::c_int)] = &[
    ("stop", libc::SIGKILL),
    ("quit", libc::SIGINT),
    ("term", libc::SIGTERM),
    ("reopen", libc::SIGUSR1),
    ("reload", libc::SIGHUP),
    ("ldm", libc::SIGUSR2),
];

/// This program's own name: `natsd`, or `nats-server` when installed under that name for client
/// test harnesses. Messages are prefixed with it and `pgrep` looks for it.
pub fn process_name() -> String {
    std::env::args_os()
        .next()
        .and_then(|a| {
            Path::new(&a)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
        })
        .unwrap_or_else(|| "natsd".to_string())
}

/// Parses `cmd[=pid|pidfile]` into the signal number and the target (None = find it).
pub fn parse_command(spec: &str) -> Result<(&'static str, libc::c_int, Option<&str>), String> {
    let (cmd, target) = match spec.split_once('=') {
        Some((c, t)) => (c, Some(t)),
        None => (spec, None),
    };
    let Some(&(name, sig)) = COMMANDS.iter().find(|(n, _)| *n == cmd) else {
        return Err(format!(
            "unknown signal \"{}\"; use one of ldm, stop, quit, term, reopen, reload",
            cmd
        ));
    };
    match target {
        Some("") => Err(format!(
            "--signal {}= needs a pid or a pid file after the '='",
            name
        )),
        t => Ok((name, sig, t)),
    }
}

/// Resolves a target: a number is a pid, anything else is a pid file to read.
pub fn resolve_pid(target: &str) -> Result<libc::pid_t, String> {
    if let Ok(pid) = target.parse::<libc::pid_t>() {
        return if pid > 0 {
            Ok(pid)
        } else {
            Err(format!(
                "invalid pid: {} (must be a positive number)",
                target
            ))
        };
    }
    let text = std::fs::read_to_string(target).map_err(|e| {
        format!(
            "invalid pid: cannot read pid file {}: {}; is natsd running, and is this the file named by -P / pid_file?",
            target,
            match e.kind() {
                std::io::ErrorKind::NotFound => "no such file or directory".to_string(),
                std::io::ErrorKind::PermissionDenied => "permission denied".to_string(),
                _ => e.to_string(),
            }
        )
    })?;
    text.trim()
        .parse::<libc::pid_t>()
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| {
            format!(
                "invalid pid: pid file {} does not hold a process id (found {:?})",
                target,
                text.trim().chars().take(40).collect::<String>()
            )
        })
}

/// Finds the single other running process with our name, as nats-server does with pgrep.
fn find_pid() -> Result<libc::pid_t, String> {
    let name = process_name();
    let out = std::process::Command::new("pgrep")
        .arg("-x")
        .arg(&name)
        .output()
        .map_err(|e| {
            format!(
                "cannot run pgrep to find {} ({}); give the pid or pid file: --signal <cmd>=<pid|pidfile>",
                name, e
            )
        })?;
    let me = std::process::id() as libc::pid_t;
    let pids: Vec<libc::pid_t> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .filter(|p| *p != me)
        .collect();
    match pids.as_slice() {
        [] => Err(format!("no {} processes running", name)),
        [one] => Ok(*one),
        many => Err(format!(
            "multiple {} processes running:\n{}\ngive the pid or pid file: --signal <cmd>=<pid|pidfile>",
            name,
            many.iter().map(|p| p.to_string()).collect::<Vec<_>>().join("\n")
        )),
    }
}

/// `--signal cmd[=pid|pidfile]`: sends the signal. The error text is ready to print.
pub fn send(spec: &str) -> Result<(), String> {
    let (name, sig, target) = parse_command(spec)?;
    let pid = match target {
        Some(t) => resolve_pid(t)?,
        None => find_pid()?,
    };
    // SAFETY: kill(2) with a positive pid and a valid signal number has no memory effects.
    if unsafe { libc::kill(pid, sig) } != 0 {
        let e = std::io::Error::last_os_error();
        let why = match e.raw_os_error() {
            Some(libc::ESRCH) => "no such process".to_string(),
            Some(libc::EPERM) => {
                "operation not permitted (run as the server's user or root)".to_string()
            }
            _ => e.to_string(),
        };
        return Err(format!("signal \"{}\" {}: {}", name, pid, why));
    }
    Ok(())
}

/// What the running server does on each signal. main.rs fills these in with `Server` calls;
/// keeping them as closures lets the signal loop be tested without a server.
pub struct Handlers {
    pub shutdown: Box<dyn Fn() + Send + Sync>,
    /// Gets the freshly built Options (file re-read, flags re-applied).
    pub reload: Box<dyn Fn(Options) + Send + Sync>,
    pub lame_duck: Box<dyn Fn() + Send + Sync>,
    /// Rebuilds Options for SIGHUP; Err is logged and the running config kept.
    pub rebuild: Box<dyn Fn() -> Result<Options, String> + Send + Sync>,
}

/// The server's signal streams. Installed before the server starts listening, so a SIGTERM that
/// arrives the moment "Server is ready" is logged is handled, not fatal.
pub struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
    usr1: tokio::signal::unix::Signal,
    usr2: tokio::signal::unix::Signal,
}

impl Signals {
    /// Must be called inside a tokio runtime.
    pub fn install() -> std::io::Result<Signals> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            hup: signal(SignalKind::hangup())?,
            usr1: signal(SignalKind::user_defined1())?,
            usr2: signal(SignalKind::user_defined2())?,
        })
    }

    /// Acts on signals until SIGTERM/SIGINT, which call `shutdown` and return.
    pub async fn run(mut self, h: Handlers) {
        loop {
            tokio::select! {
                _ = self.term.recv() => {
                    log_info!("Trapped \"terminated\" signal");
                    (h.shutdown)();
                    return;
                }
                _ = self.int.recv() => {
                    log_info!("Trapped \"interrupt\" signal");
                    (h.shutdown)();
                    return;
                }
                _ = self.hup.recv() => {
                    log_info!("Trapped \"hangup\" signal");
                    reload(&h);
                }
                _ = self.usr1.recv() => {
                    log_info!("Trapped \"user defined signal 1\" signal");
                    match crate::log::reopen() {
                        Ok(true) => log_info!("File log re-opened"),
                        Ok(false) => {}
                        Err(e) => log_error!("{}", e),
                    }
                }
                _ = self.usr2.recv() => {
                    log_info!("Trapped \"user defined signal 2\" signal");
                    (h.lame_duck)();
                }
            }
        }
    }
}

/// SIGHUP: build new Options; on any error keep running with the old ones, as nats-server does.
fn reload(h: &Handlers) {
    match (h.rebuild)() {
        Ok(opts) => {
            if let Err(e) = crate::log::init(&crate::log::Config::from_options(&opts)) {
                log_error!("Failed to reload server configuration: {}", e);
                return;
            }
            // Server::reload logs "Reloaded server configuration" (and what it could not change).
            (h.reload)(opts);
        }
        Err(e) => log_error!("Failed to reload server configuration: {}", e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_map_to_nats_server_signals() {
        assert_eq!(
            parse_command("reload").unwrap(),
            ("reload", libc::SIGHUP, None)
        );
        assert_eq!(
            parse_command("ldm=/var/run/nats.pid").unwrap(),
            ("ldm", libc::SIGUSR2, Some("/var/run/nats.pid"))
        );
        assert_eq!(parse_command("stop=1").unwrap().1, libc::SIGKILL);
        assert_eq!(parse_command("quit").unwrap().1, libc::SIGINT);
        assert_eq!(parse_command("term").unwrap().1, libc::SIGTERM);
        assert_eq!(parse_command("reopen").unwrap().1, libc::SIGUSR1);
        assert!(parse_command("bogus")
            .unwrap_err()
            .contains("unknown signal \"bogus\""));
        assert!(parse_command("reload=").is_err());
    }

    #[test]
    fn pid_targets() {
        assert_eq!(resolve_pid("123").unwrap(), 123);
        assert!(resolve_pid("0").is_err());
        assert!(resolve_pid("-5").is_err());
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("n.pid");
        std::fs::write(&f, "4242\n").unwrap();
        assert_eq!(resolve_pid(f.to_str().unwrap()).unwrap(), 4242);
        std::fs::write(&f, "garbage").unwrap();
        assert!(resolve_pid(f.to_str().unwrap())
            .unwrap_err()
            .contains("does not hold a process id"));
        let missing = dir.path().join("missing.pid");
        let e = resolve_pid(missing.to_str().unwrap()).unwrap_err();
        assert!(e.contains("no such file or directory"), "{}", e);
    }

    #[test]
    fn send_to_a_dead_pid_says_no_such_process() {
        // A child that has exited and been reaped: its pid is free (and unlikely reused at once).
        let mut c = std::process::Command::new("true").spawn().unwrap();
        let pid = c.id();
        c.wait().unwrap();
        let e = send(&format!("reload={}", pid)).unwrap_err();
        assert_eq!(e, format!("signal \"reload\" {}: no such process", pid));
    }

    #[test]
    fn send_delivers_the_signal() {
        // `sleep` dies of SIGTERM; the exit status shows which signal arrived.
        use std::os::unix::process::ExitStatusExt;
        let mut c = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        send(&format!("term={}", c.id())).unwrap();
        assert_eq!(c.wait().unwrap().signal(), Some(libc::SIGTERM));
    }
}
