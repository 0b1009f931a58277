//! The natsd binary as client test harnesses and the FreeBSD rc.d script drive it: flags, config
//! file, port discovery from the log, signals, pid file, exit codes.

use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_natsd");
/// Upper bound for anything to happen; only reached when a test is failing.
const PATIENCE: Duration = Duration::from_secs(20);

fn configs() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/configs")
}

/// A running natsd whose stderr lines arrive on a channel.
struct Natsd {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Natsd {
    fn spawn(args: &[&str]) -> Natsd {
        let mut child = Command::new(BIN)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn natsd");
        let (tx, rx) = mpsc::channel();
        let err = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Natsd {
            child,
            lines: rx,
            seen: Vec::new(),
        }
    }

    /// Waits for a stderr line containing `needle` and returns it.
    fn wait_line(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => {
                    self.seen.push(l.clone());
                    if l.contains(needle) {
                        return l;
                    }
                }
                Err(_) => panic!(
                    "no line with {:?}; natsd printed:\n{}",
                    needle,
                    self.seen.join("\n")
                ),
            }
        }
    }

    fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    fn signal(&self, sig: i32) {
        assert_eq!(unsafe { libc::kill(self.pid(), sig) }, 0);
    }

    fn wait_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("natsd did not exit; it printed:\n{}", self.seen.join("\n"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Natsd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `[pid] date time [INF] Listening for client connections on 127.0.0.1:4222` → the address.
fn listen_addr(line: &str) -> SocketAddr {
    let addr = line
        .rsplit("Listening for client connections on ")
        .next()
        .unwrap()
        .trim();
    addr.parse()
        .unwrap_or_else(|_| panic!("bad address in {:?}", line))
}

fn read_info(addr: SocketAddr) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut line = String::new();
    BufReader::new(&mut s).read_line(&mut line).unwrap();
    line
}

fn run(args: &[&str]) -> (ExitStatus, String, String) {
    let out = Command::new(BIN).args(args).output().unwrap();
    (
        out.status,
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Waits until the file contains `needle` (the -l log is written by another process).
fn wait_file(path: &Path, needle: &str) -> String {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if text.contains(needle) {
            return text;
        }
        if Instant::now() > deadline {
            panic!(
                "{} never contained {:?}; it has:\n{}",
                path.display(),
                needle,
                text
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn random_port_info_sigterm_and_pid_file() {
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("natsd.pid");
    let mut n = Natsd::spawn(&[
        "-p",
        "-1",
        "-a",
        "127.0.0.1",
        "-P",
        pid_file.to_str().unwrap(),
    ]);
    let line = n.wait_line("Listening for client connections on");
    // nats-server's shape: "[pid] YYYY/MM/DD HH:MM:SS.micros [INF] ..."
    assert!(line.starts_with(&format!("[{}] ", n.pid())), "{}", line);
    assert!(line.contains(" [INF] "), "{}", line);
    let addr = listen_addr(&line);
    assert_eq!(addr.ip().to_string(), "127.0.0.1");
    assert_ne!(addr.port(), 4222);
    n.wait_line("Server is ready");
    let info = read_info(addr);
    assert!(info.starts_with("INFO {"), "{:?}", info);
    assert_eq!(
        std::fs::read_to_string(&pid_file).unwrap().trim(),
        n.pid().to_string()
    );

    n.signal(libc::SIGTERM);
    let st = n.wait_exit();
    assert_eq!(st.code(), Some(0), "{:?}", st);
    assert!(!pid_file.exists(), "pid file left behind");
}

#[test]
fn flags_override_config_file_also_on_reload() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("n.conf");
    // Port 1 cannot be bound by a test: natsd only starts because -p -1 replaces it.
    std::fs::write(&conf, "listen: 127.0.0.1:1\nmax_payload: 1KB\n").unwrap();
    let mut n = Natsd::spawn(&["-c", conf.to_str().unwrap(), "-p", "-1"]);
    let addr = listen_addr(&n.wait_line("Listening for client connections on"));
    assert_eq!(addr.ip().to_string(), "127.0.0.1");
    assert_ne!(addr.port(), 1);
    n.wait_line("Server is ready");
    assert!(read_info(addr).contains("\"max_payload\":1024"));

    // SIGHUP re-reads the file and lays the flags over it again: the new limit applies and the
    // port stays the flag's (no "cannot change at runtime" complaint about port 1).
    std::fs::write(&conf, "listen: 127.0.0.1:1\nmax_payload: 2KB\n").unwrap();
    n.signal(libc::SIGHUP);
    n.wait_line("Reloaded server configuration");
    assert!(
        !n.seen
            .iter()
            .any(|l| l.contains("cannot change at runtime")),
        "{:?}",
        n.seen
    );
    let info = read_info(addr);
    assert!(info.contains("\"max_payload\":2048"), "{}", info);

    n.signal(libc::SIGINT);
    n.wait_line("Trapped \"interrupt\" signal");
    assert_eq!(n.wait_exit().code(), Some(0));
}

#[test]
fn log_file_reload_and_reopen_via_signal_flag() {
    let dir = tempfile::tempdir().unwrap();
    let (conf, log, pid) = (
        dir.path().join("n.conf"),
        dir.path().join("n.log"),
        dir.path().join("n.pid"),
    );
    std::fs::write(&conf, "port: -1\nhost: 127.0.0.1\n").unwrap();
    let mut n = Natsd::spawn(&[
        "-c",
        conf.to_str().unwrap(),
        "-l",
        log.to_str().unwrap(),
        "-P",
        pid.to_str().unwrap(),
    ]);
    let text = wait_file(&log, "Server is ready");
    let line = text
        .lines()
        .find(|l| l.contains("Listening for client connections on"))
        .unwrap();
    read_info(listen_addr(line));
    let pid_arg = |cmd: &str| format!("{}={}", cmd, pid.display());

    // What `service nats reload` runs.
    let (st, _, err) = run(&["--signal", &pid_arg("reload")]);
    assert!(st.success(), "{}", err);
    wait_file(&log, "Reloaded server configuration");

    // A broken file on reload: logged, the server keeps running.
    std::fs::write(&conf, "port: -1\nbogus_key: 1\n").unwrap();
    assert!(run(&["--signal", &pid_arg("reload")]).0.success());
    let text = wait_file(&log, "Failed to reload server configuration");
    assert!(
        text.contains("n.conf:2:1: unknown field \"bogus_key\""),
        "{}",
        text
    );

    // What newsyslog + `service nats reopen` do.
    let rotated = dir.path().join("n.log.0");
    std::fs::rename(&log, &rotated).unwrap();
    assert!(run(&["--signal", &pid_arg("reopen")]).0.success());
    wait_file(&log, "File log re-opened");
    assert!(std::fs::read_to_string(&rotated)
        .unwrap()
        .contains("Trapped \"user defined signal 1\" signal"));

    assert!(run(&["--signal", &pid_arg("term")]).0.success());
    assert_eq!(n.wait_exit().code(), Some(0));
    assert!(!pid.exists());
}

#[test]
fn signal_stop_kills_like_nats_server() {
    let dir = tempfile::tempdir().unwrap();
    let pid = dir.path().join("n.pid");
    let mut n = Natsd::spawn(&["-p", "-1", "-a", "127.0.0.1", "-P", pid.to_str().unwrap()]);
    n.wait_line("Server is ready");
    let (st, _, err) = run(&["--signal", &format!("stop={}", pid.display())]);
    assert!(st.success(), "{}", err);
    // nats-server's "stop" is SIGKILL; "term"/"quit" are the graceful ones.
    assert_eq!(n.wait_exit().signal(), Some(libc::SIGKILL));
}

#[test]
fn lame_duck_via_signal_flag_then_exit() {
    let dir = tempfile::tempdir().unwrap();
    let (conf, pid) = (dir.path().join("n.conf"), dir.path().join("n.pid"));
    std::fs::write(
        &conf,
        "listen: 127.0.0.1:-1\nlame_duck_duration: \"1s\"\nlame_duck_grace_period: \"100ms\"\n",
    )
    .unwrap();
    let mut n = Natsd::spawn(&["-c", conf.to_str().unwrap(), "-P", pid.to_str().unwrap()]);
    n.wait_line("Server is ready");
    assert!(run(&["--signal", &format!("ldm={}", pid.display())])
        .0
        .success());
    n.wait_line("Trapped \"user defined signal 2\" signal");
    assert_eq!(n.wait_exit().code(), Some(0));
}

#[test]
fn signal_errors_are_clear() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("none.pid");
    let (st, _, err) = run(&["--signal", &format!("reload={}", missing.display())]);
    assert_eq!(st.code(), Some(1));
    assert!(
        err.starts_with("natsd: invalid pid: cannot read pid file"),
        "{}",
        err
    );
    assert!(err.contains("no such file or directory"), "{}", err);
    let (st, _, err) = run(&["--signal", "bogus=1"]);
    assert_eq!(st.code(), Some(1));
    assert!(err.contains("unknown signal \"bogus\""), "{}", err);
}

/// The package's sample config (pkg/nats.conf.sample), as shipped and with every commented
/// example switched on (`#key` lines, not `# prose`), passes `natsd -t`: what the comments tell
/// an operator to enable must be something natsd accepts (e.g. a bcrypt password).
#[test]
fn package_sample_config_checks_with_every_example_uncommented() {
    let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("../pkg/nats.conf.sample");
    let text = std::fs::read_to_string(&sample).unwrap();
    let uncommented: String = text
        .lines()
        .map(|l| match l.strip_prefix('#') {
            Some(r) if !r.starts_with(' ') && !r.is_empty() => r,
            _ => l,
        })
        .map(|l| format!("{l}\n"))
        .collect();
    assert!(uncommented.contains("\nauthorization {"), "{}", uncommented);
    let dir = tempfile::tempdir().unwrap();
    let all = dir.path().join("all.conf");
    std::fs::write(&all, &uncommented).unwrap();
    for p in [&sample, &all] {
        let (st, _, err) = run(&["-t", "-c", p.to_str().unwrap()]);
        assert_eq!(st.code(), Some(0), "natsd -t {}: {}", p.display(), err);
        assert!(err.contains("is valid (sha256:"), "{}", err);
    }
}

#[test]
fn check_config_good_and_bad() {
    let c = configs();
    let good = c.join("freebsd-sample.conf");
    let (st, _, err) = run(&["-t", "-c", good.to_str().unwrap()]);
    assert_eq!(st.code(), Some(0), "{}", err);
    assert!(
        err.contains(&format!(
            "natsd: configuration file {} is valid (sha256:",
            good.display()
        )),
        "{}",
        err
    );

    let bad = c.join("unknown-key.conf");
    let (st, _, err) = run(&["-t", "-c", bad.to_str().unwrap()]);
    assert_eq!(st.code(), Some(1));
    assert!(
        err.starts_with(&format!(
            "natsd: {}:6:1: unknown field \"max_paylod\"",
            bad.display()
        )),
        "{}",
        err
    );

    let syn = c.join("syntax-error.conf");
    let (st, _, err) = run(&["-t", "-c", syn.to_str().unwrap()]);
    assert_eq!(st.code(), Some(1));
    assert!(err.contains("syntax-error.conf:4:"), "{}", err);

    let (st, _, err) = run(&["-t"]);
    assert_eq!(st.code(), Some(1));
    assert!(err.contains("must specify [-c, --config]"), "{}", err);

    let (st, _, err) = run(&["-t", "-c", c.join("tls.conf").to_str().unwrap()]);
    assert_eq!(st.code(), Some(1));
    assert!(
        err.contains("tls.conf:4:1: 'tls': TLS is not supported"),
        "{}",
        err
    );
}

#[test]
fn version_and_help() {
    let (st, out, _) = run(&["-v"]);
    assert!(st.success());
    assert_eq!(
        out,
        format!(
            "natsd: v{} (natsd {})\n",
            natsd::server::COMPAT_VERSION,
            env!("CARGO_PKG_VERSION")
        )
    );
    let (st, out, _) = run(&["--help"]);
    assert!(st.success());
    assert!(out.contains("Usage: natsd [options]") && out.contains("--signal"));
}

#[test]
fn tls_is_fatal_never_open() {
    for args in [
        &["--tls", "-p", "-1"][..],
        &["--tlscert", "c.pem", "--tlskey", "k.pem", "-p", "-1"],
        &["--tlsverify", "-p", "-1"],
    ] {
        let mut child = Command::new(BIN)
            .args(args)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut err = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        let st = child.wait().unwrap();
        assert_eq!(st.code(), Some(1), "{:?}: {}", args, err);
        assert!(
            err.contains("[FTL] TLS is not supported by natsd yet"),
            "{}",
            err
        );
        assert!(err.contains(args[0]), "{}", err);
        assert!(!err.contains("Listening for client connections"), "{}", err);
    }
    let (st, _, err) = run(&["-c", configs().join("tls.conf").to_str().unwrap()]);
    assert_eq!(st.code(), Some(1));
    assert!(err.contains("[FTL]") && err.contains("'tls'"), "{}", err);
    assert!(!err.contains("Listening"), "{}", err);
}

#[test]
fn harness_flags_are_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let sd = format!("-sd={}", dir.path().display());
    let mut n = Natsd::spawn(&[
        "-p",
        "-1",
        "-a",
        "127.0.0.1",
        "-js",
        &sd,
        "-DV",
        "--cluster_name",
        "c1",
    ]);
    let w = n.wait_line("[WRN]");
    assert!(w.contains("JetStream"), "{}", w);
    n.wait_line("Server is ready");
    n.signal(libc::SIGTERM);
    assert_eq!(n.wait_exit().code(), Some(0));
}

#[test]
fn unknown_flag_and_bad_port() {
    let (st, _, err) = run(&["--bogus"]);
    assert_eq!(st.code(), Some(1));
    assert!(
        err.starts_with("natsd: flag provided but not defined: -bogus"),
        "{}",
        err
    );
    let (st, _, err) = run(&["-p", "abc"]);
    assert_eq!(st.code(), Some(1));
    assert!(err.contains("invalid value \"abc\" for flag -p"), "{}", err);
}

#[test]
fn unwritable_pid_file_is_fatal() {
    let dir = tempfile::tempdir().unwrap();
    let pid = dir.path().join("no/such/dir/n.pid");
    let (st, _, err) = run(&["-p", "-1", "-a", "127.0.0.1", "-P", pid.to_str().unwrap()]);
    assert_eq!(st.code(), Some(1));
    assert!(err.contains("[FTL] Could not write pidfile"), "{}", err);
    assert!(!err.contains("Listening"), "{}", err);
}

#[test]
fn pid_file_from_config_and_pre_created_file_is_reused() {
    // The rc.d script pre-creates the pid file (owned by the nats user); natsd writes into it.
    let dir = tempfile::tempdir().unwrap();
    let (conf, pid) = (dir.path().join("n.conf"), dir.path().join("nats.pid"));
    std::fs::write(&pid, "").unwrap();
    std::fs::write(
        &conf,
        format!("listen: 127.0.0.1:-1\npid_file: \"{}\"\n", pid.display()),
    )
    .unwrap();
    let mut n = Natsd::spawn(&["-c", conf.to_str().unwrap()]);
    n.wait_line("Server is ready");
    assert_eq!(std::fs::read_to_string(&pid).unwrap(), n.pid().to_string());
    assert!(run(&["--signal", &format!("quit={}", pid.display())])
        .0
        .success());
    assert_eq!(n.wait_exit().code(), Some(0));
    assert!(!pid.exists());
}
