//! Starting and stopping the servers under test, exactly like the official client test harnesses
//! do: `<binary> -a 127.0.0.1 -p -1`, then read the log for the port it picked. Every scenario
//! gets a fresh process, so one scenario's heap never inflates the next one's RSS.

use anyhow::{bail, Context, Result};
use serde::Serialize;
use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A server to benchmark: a label (`natsd`, `nats-server`) and its binary.
#[derive(Debug, Clone, Serialize)]
pub struct ServerSpec {
    pub name: String,
    pub path: PathBuf,
}

impl ServerSpec {
    /// Parse `NAME=PATH` as given to `--server`.
    pub fn parse(s: &str) -> Result<ServerSpec, String> {
        let (name, path) = s.split_once('=').ok_or_else(|| {
            format!("--server wants NAME=PATH (e.g. natsd=target/release/natsd), got {s:?}")
        })?;
        if name.is_empty() || path.is_empty() {
            return Err(format!(
                "--server wants NAME=PATH with both parts non-empty, got {s:?}"
            ));
        }
        Ok(ServerSpec {
            name: name.into(),
            path: path.into(),
        })
    }

    /// What `<binary> --version` prints (first line), e.g. `nats-server: v2.15.1`.
    pub fn version(&self) -> Result<String> {
        let out = Command::new(&self.path)
            .arg("--version")
            .output()
            .with_context(|| format!("cannot run {} --version", self.path.display()))?;
        let text = String::from_utf8_lossy(if out.stdout.is_empty() {
            &out.stderr
        } else {
            &out.stdout
        })
        .into_owned();
        Ok(text.lines().next().unwrap_or("").trim().to_string())
    }
}

const START_TIMEOUT: Duration = Duration::from_secs(15);
const LOG_TAIL: usize = 40;

pub struct RunningServer {
    pub name: String,
    pub pid: u32,
    pub addr: SocketAddr,
    child: Child,
    log: Arc<Mutex<VecDeque<String>>>,
}

impl RunningServer {
    /// Start the server on a fresh random port, optionally pinned to `cpus`, and wait until it
    /// accepts clients.
    pub fn start(spec: &ServerSpec, cpus: Option<Vec<usize>>) -> Result<RunningServer> {
        let mut cmd = Command::new(&spec.path);
        cmd.args(["-a", "127.0.0.1", "-p", "-1"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(cpus) = cpus {
            // SAFETY: between fork and exec only sched_setaffinity (a plain syscall) runs.
            unsafe {
                cmd.pre_exec(move || crate::procfs::pin_current(&cpus));
            }
        }
        let mut child = cmd
            .spawn()
            .with_context(|| format!("cannot start {} ({})", spec.name, spec.path.display()))?;
        let log = Arc::new(Mutex::new(VecDeque::new()));
        let (tx, rx) = mpsc::channel::<String>();
        // Drain both pipes for the server's whole life (a full pipe would block its logging).
        for pipe in [
            child
                .stdout
                .take()
                .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
            child
                .stderr
                .take()
                .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let (tx, log) = (tx.clone(), log.clone());
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    let _ = tx.send(line.clone());
                    let mut l = log.lock().unwrap_or_else(|e| e.into_inner());
                    if l.len() == LOG_TAIL {
                        l.pop_front();
                    }
                    l.push_back(line);
                }
            });
        }
        drop(tx);
        let pid = child.id();
        let mut srv = RunningServer {
            name: spec.name.clone(),
            pid,
            addr: ([127, 0, 0, 1], 0).into(),
            child,
            log,
        };
        let deadline = Instant::now() + START_TIMEOUT;
        let mut addr = None;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left.min(Duration::from_millis(100))) {
                Ok(line) => {
                    if let Some(a) = parse_listen_line(&line) {
                        addr = Some(a);
                    }
                    if addr.is_some() && line.contains("Server is ready") {
                        break;
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    if addr.is_some() {
                        break;
                    }
                }
            }
            if let Ok(Some(status)) = srv.child.try_wait() {
                bail!(
                    "{} exited during start-up ({status}); its log:\n{}",
                    spec.name,
                    srv.log_tail()
                );
            }
            if Instant::now() >= deadline {
                if addr.is_some() {
                    break; // listening but never said "ready": go on, connecting will tell
                }
                bail!(
                    "{} printed no 'Listening for client connections on' line within {:?}; its log:\n{}",
                    spec.name,
                    START_TIMEOUT,
                    srv.log_tail()
                );
            }
        }
        srv.addr = addr.expect("checked above");
        Ok(srv)
    }

    /// The last lines the server logged (for error messages).
    pub fn log_tail(&self) -> String {
        let l = self.log.lock().unwrap_or_else(|e| e.into_inner());
        l.iter().cloned().collect::<Vec<_>>().join("\n")
    }

    /// Fail if the process has died (a crash mid-scenario must not look like a slow run).
    pub fn check_alive(&mut self) -> Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!(
                "{} died ({status}); its log:\n{}",
                self.name,
                self.log_tail()
            );
        }
        Ok(())
    }

    /// SIGTERM, then SIGKILL if it has not exited within 5 s.
    pub fn stop(mut self) {
        self.terminate();
    }

    fn terminate(&mut self) {
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            return;
        }
        // SAFETY: kill(2) on the pid of our own child, which has not been reaped yet.
        unsafe { libc::kill(self.pid as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        self.terminate();
    }
}

/// `[pid] date time [INF] Listening for client connections on 127.0.0.1:4222` → the address.
fn parse_listen_line(line: &str) -> Option<SocketAddr> {
    let rest = line
        .split_once("Listening for client connections on ")?
        .1
        .trim();
    let (host, port) = rest.rsplit_once(':')?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port: u16 = port.parse().ok()?;
    let ip = if host == "0.0.0.0" || host.is_empty() {
        "127.0.0.1"
    } else {
        host
    };
    Some(SocketAddr::new(ip.parse().ok()?, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_listen_lines() {
        let l = "[13799] 2026/12/04 03:36:13.055931 [INF] Listening for client connections on 127.0.0.1:34861";
        assert_eq!(
            parse_listen_line(l),
            Some("127.0.0.1:34861".parse().unwrap())
        );
        let l6 =
            "[1] 2026/12/04 03:36:13.055931 [INF] Listening for client connections on [::1]:4222";
        assert_eq!(parse_listen_line(l6), Some("[::1]:4222".parse().unwrap()));
        assert_eq!(parse_listen_line("[INF] Server is ready"), None);
    }

    #[test]
    fn parses_server_specs() {
        let s = ServerSpec::parse("natsd=target/release/natsd").unwrap();
        assert_eq!(
            (s.name.as_str(), s.path.to_str().unwrap()),
            ("natsd", "target/release/natsd")
        );
        assert!(ServerSpec::parse("natsd")
            .unwrap_err()
            .contains("NAME=PATH"));
        assert!(ServerSpec::parse("=x").is_err());
    }
}
