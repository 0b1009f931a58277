//! The server: listener, shared state, INFO, counters, shutdown, lame duck mode, reload.
//!
//! `Server` is a cheap handle (one `Arc`). The accept loop runs as a task on the caller's tokio
//! runtime; every accepted connection gets its own reader and writer task (`client.rs`). Shared
//! state is deliberately small: the sublist (its own locking), a client map touched only on
//! connect/close, and counters that readers add to once per read batch.

use crate::client::{self, ClientShared, ClientSnapshot, CloseReason, SubRef};
use crate::options::{Options, DEFAULT_PORT};
use crate::sublist::Sublist;
use parking_lot::{Mutex, RwLock};
use serde::Serialize;
use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::{watch, Notify};

/// The version natsd announces in INFO and in the startup banner.
///
/// Why not natsd's own "0.1.0": clients gate features on the server version. async-nats parses
/// `version` as semver in `Client::is_server_compatible(major, minor, patch)` (used before using
/// newer features), and nats.go/nats.py do the same; "0.1.0" would make every client treat natsd as
/// a pre-2.0 server. natsd implements the core protocol of the reference it is tested against, so
/// it reports that release. natsd's own version is printed next to it in the banner.
pub const COMPAT_VERSION: &str = "2.15.1";
/// natsd's own version (Cargo package version).
pub const NATSD_VERSION: &str = env!("CARGO_PKG_VERSION");
/// INFO `go`: clients require the field to exist; nothing parses it.
const GO_FIELD: &str = "natsd (rust)";

/// Server-wide counters (for /varz later). Updated with relaxed atomics, once per read batch.
#[derive(Default, Debug)]
pub struct Stats {
    pub in_msgs: AtomicU64,
    pub in_bytes: AtomicU64,
    pub out_msgs: AtomicU64,
    pub out_bytes: AtomicU64,
    pub slow_consumers: AtomicU64,
    pub total_connections: AtomicU64,
}

/// An account: its own subject space. Clients of different accounts never see each other's
/// messages. Without `accounts {}` in the config everyone is in the global account `$G`.
pub struct Account {
    pub name: String,
    pub(crate) sublist: Sublist<SubRef>,
}

/// nats-server's name for the global account.
pub const GLOBAL_ACCOUNT: &str = "$G";

/// The shared state behind a `Server` handle.
pub struct ServerInner {
    opts: RwLock<Arc<Options>>,
    opts_gen: AtomicU64,
    pub(crate) global: Arc<Account>,
    accounts: Mutex<HashMap<String, Arc<Account>>>,
    pub(crate) stats: Arc<Stats>,
    clients: Mutex<HashMap<u64, Arc<ClientShared>>>,
    next_cid: AtomicU64,
    server_id: String,
    server_name: String,
    local_addr: SocketAddr,
    lame_duck: AtomicBool,
    stopping: AtomicBool,
    stop_accept: Notify,
    clients_gone: Notify,
    done: watch::Sender<bool>,
    started: Instant,
    /// The runtime `start` ran on: `shutdown`/`lame_duck` may be called from any thread.
    runtime: tokio::runtime::Handle,
}

#[derive(Clone)]
pub struct Server {
    inner: Arc<ServerInner>,
}

#[derive(Serialize)]
struct Info<'a> {
    server_id: &'a str,
    server_name: &'a str,
    version: &'a str,
    proto: u8,
    go: &'a str,
    host: &'a str,
    port: u16,
    headers: bool,
    max_payload: usize,
    client_id: u64,
    client_ip: String,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    auth_required: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    connect_info: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    ldm: bool,
}

impl ServerInner {
    pub(crate) fn options(&self) -> Arc<Options> {
        self.opts.read().clone()
    }

    pub(crate) fn options_generation(&self) -> u64 {
        self.opts_gen.load(Ordering::Acquire)
    }

    /// `INFO {...} \r\n` for one client (nats-server puts a space before the CRLF).
    pub(crate) fn info_json(&self, c: &ClientShared, connect_info: bool) -> String {
        let opts = self.options();
        let info = Info {
            server_id: &self.server_id,
            server_name: &self.server_name,
            version: COMPAT_VERSION,
            proto: 1,
            go: GO_FIELD,
            host: &opts.host,
            port: self.local_addr.port(),
            headers: true,
            max_payload: opts.max_payload,
            client_id: c.cid,
            client_ip: c.addr.ip().to_string(),
            auth_required: opts.auth.required(),
            connect_info,
            ldm: self.lame_duck.load(Ordering::Relaxed),
        };
        let json = serde_json::to_string(&info).expect("INFO is always serialisable");
        format!("INFO {json} \r\n")
    }

    /// The named account (created on first use), or the global one.
    pub(crate) fn account(&self, name: Option<&str>) -> Arc<Account> {
        match name {
            None => self.global.clone(),
            Some(n) if n == GLOBAL_ACCOUNT => self.global.clone(),
            Some(n) => self
                .accounts
                .lock()
                .entry(n.to_string())
                .or_insert_with(|| {
                    Arc::new(Account {
                        name: n.to_string(),
                        sublist: Sublist::new(),
                    })
                })
                .clone(),
        }
    }

    pub(crate) fn max_connections_exceeded(&self, opts: &Options) -> bool {
        self.clients.lock().len() > opts.max_connections
    }

    pub(crate) fn remove_client(&self, cid: u64) {
        let mut clients = self.clients.lock();
        clients.remove(&cid);
        if clients.is_empty() {
            self.clients_gone.notify_waiters();
        }
    }

    fn all_clients(&self) -> Vec<Arc<ClientShared>> {
        self.clients.lock().values().cloned().collect()
    }
}

/// nats-server's id shape: 56 characters of base32, starting with 'N' (an nkey server key).
fn new_server_id() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let rs = RandomState::new();
    let mut id = String::with_capacity(56);
    id.push('N');
    let mut i = 0u64;
    while id.len() < 56 {
        let mut r = rs.hash_one((i, Instant::now(), std::process::id()));
        for _ in 0..12 {
            if id.len() == 56 {
                break;
            }
            id.push(ALPHABET[(r & 31) as usize] as char);
            r >>= 5;
        }
        i += 1;
    }
    id
}

/// `host:port` as Go's net.JoinHostPort (IPv6 in brackets).
fn join_host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

async fn bind(host: &str, port: u16) -> io::Result<TcpListener> {
    let addr: SocketAddr = match host.parse::<IpAddr>() {
        Ok(ip) => SocketAddr::new(ip, port),
        Err(_) => {
            // A name (e.g. `localhost`): like Go's net.Listen, prefer its IPv4 address.
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port)).await?.collect();
            addrs
                .iter()
                .find(|a| a.is_ipv4())
                .or_else(|| addrs.first())
                .copied()
                .ok_or_else(|| {
                    io::Error::new(
                        io::ErrorKind::NotFound,
                        format!(
                            "cannot resolve host {host:?}: use an IP address or a resolvable name"
                        ),
                    )
                })?
        }
    };
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    // A restart right after SIGKILL must be able to take the port again (TIME_WAIT).
    socket.set_reuseaddr(true)?;
    socket.bind(addr).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!(
                "Error listening on port: {}, \"{e}\"",
                join_host_port(host, port)
            ),
        )
    })?;
    socket.listen(1024)
}

impl Server {
    /// Binds the listener, logs the startup lines incl. "Listening for client connections on H:P"
    /// and "Server is ready", spawns the accept loop on the current tokio runtime.
    pub async fn start(opts: Options) -> io::Result<Server> {
        let port: u16 = match opts.port {
            -1 => 0,
            0 => DEFAULT_PORT,
            p if (1..=65535).contains(&p) => p as u16,
            p => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("invalid port {p}: use 1-65535, or -1 for a random free port"),
                ))
            }
        };
        let server_id = new_server_id();
        let server_name = opts
            .server_name
            .clone()
            .unwrap_or_else(|| server_id.clone());
        crate::log_info!("Starting nats-server");
        crate::log_info!("  Version:  {} (natsd {})", COMPAT_VERSION, NATSD_VERSION);
        crate::log_info!("  Name:     {}", server_name);
        crate::log_info!("  ID:       {}", server_id);
        let listener = bind(&opts.host, port).await?;
        let local_addr = listener.local_addr()?;
        crate::log_info!(
            "Listening for client connections on {}",
            join_host_port(&opts.host, local_addr.port())
        );
        let (done, _) = watch::channel(false);
        let inner = Arc::new(ServerInner {
            opts: RwLock::new(Arc::new(opts)),
            opts_gen: AtomicU64::new(0),
            global: Arc::new(Account {
                name: GLOBAL_ACCOUNT.to_string(),
                sublist: Sublist::new(),
            }),
            accounts: Mutex::new(HashMap::new()),
            stats: Arc::new(Stats::default()),
            clients: Mutex::new(HashMap::new()),
            next_cid: AtomicU64::new(1),
            server_id,
            server_name,
            local_addr,
            lame_duck: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
            stop_accept: Notify::new(),
            clients_gone: Notify::new(),
            done,
            started: Instant::now(),
            runtime: tokio::runtime::Handle::current(),
        });
        tokio::spawn(accept_loop(inner.clone(), listener));
        crate::log_info!("Server is ready");
        Ok(Server { inner })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.inner.local_addr
    }

    pub fn server_id(&self) -> &str {
        &self.inner.server_id
    }

    pub fn server_name(&self) -> &str {
        &self.inner.server_name
    }

    /// The options in force (after reloads).
    pub fn options(&self) -> Arc<Options> {
        self.inner.options()
    }

    pub fn stats(&self) -> &Stats {
        &self.inner.stats
    }

    pub fn start_time(&self) -> Instant {
        self.inner.started
    }

    pub fn num_connections(&self) -> usize {
        self.inner.clients.lock().len()
    }

    pub fn num_subscriptions(&self) -> usize {
        self.inner.global.sublist.count()
            + self
                .inner
                .accounts
                .lock()
                .values()
                .map(|a| a.sublist.count())
                .sum::<usize>()
    }

    /// Per-connection views, ordered by client id (for /connz).
    pub fn clients(&self) -> Vec<ClientSnapshot> {
        let mut v: Vec<ClientSnapshot> = self
            .inner
            .all_clients()
            .iter()
            .map(|c| c.snapshot())
            .collect();
        v.sort_by_key(|c| c.cid);
        v
    }

    pub fn is_lame_duck(&self) -> bool {
        self.inner.lame_duck.load(Ordering::Relaxed)
    }

    /// Applies what can change at runtime: limits, auth, keepalive, lame duck timings. The
    /// listen address and the server name cannot change without a restart; a change there is
    /// logged and the old value kept. Running connections take the new limits at once and are
    /// re-authorized (closed if the new rules reject them, or if their account or permissions
    /// changed); their writers take the new keepalive and write deadline.
    pub fn reload(&self, mut opts: Options) {
        let old = self.inner.options();
        let mut kept = Vec::new();
        if opts.host != old.host {
            kept.push(format!("host (keeping {})", old.host));
            opts.host = old.host.clone();
        }
        if opts.port != old.port {
            kept.push(format!("port (keeping {})", old.port));
            opts.port = old.port;
        }
        if opts.server_name != old.server_name {
            kept.push(format!("server_name (keeping {})", self.inner.server_name));
            opts.server_name = old.server_name.clone();
        }
        for k in &kept {
            crate::log_warn!("Config reload: {} cannot change at runtime", k);
        }
        *self.inner.opts.write() = Arc::new(opts);
        self.inner.opts_gen.fetch_add(1, Ordering::AcqRel);
        // Every reader re-reads the options now (limits, and authorization: clients the new
        // rules reject are closed, as nats-server does).
        for c in self.inner.all_clients() {
            c.notify_reload();
        }
        crate::log_info!("Reloaded server configuration");
    }

    /// Lame duck mode: stop accepting, tell every client (`INFO` with `"ldm":true`), wait
    /// `lame_duck_grace_period`, close the clients spread over the rest of `lame_duck_duration`,
    /// then shut down.
    pub fn lame_duck(&self) {
        let inner = &self.inner;
        if inner.stopping.load(Ordering::Acquire) || inner.lame_duck.swap(true, Ordering::AcqRel) {
            return;
        }
        crate::log_info!("Entering lame duck mode, stop accepting new clients");
        inner.stop_accept.notify_one();
        let clients = inner.all_clients();
        for c in &clients {
            c.send(inner.info_json(c, false).as_bytes());
        }
        let opts = inner.options();
        let server = self.clone();
        self.inner.runtime.spawn(async move {
            let grace = opts.lame_duck_grace_period;
            let mut dur = opts.lame_duck_duration.saturating_sub(grace);
            if dur.is_zero() {
                dur = Duration::from_secs(1);
            }
            tokio::time::sleep(grace).await;
            if server.inner.stopping.load(Ordering::Acquire) {
                return;
            }
            crate::log_info!("Closing existing clients");
            let clients = server.inner.all_clients();
            let n = clients.len().max(1) as u128;
            // nats-server: one close every dur/n, at most 1 s apart, in batches when n is huge.
            let mut si = dur.as_nanos() / n;
            let mut batch = 1usize;
            if si < 1_000 {
                batch = (n / (dur.as_nanos() / 1_000).max(1)).max(1) as usize;
                si = 1_000;
            }
            let si = Duration::from_nanos(si.min(1_000_000_000) as u64);
            for (i, c) in clients.iter().enumerate() {
                c.close(CloseReason::LameDuck);
                if i + 1 == clients.len() {
                    break;
                }
                if batch == 1 || i % batch == 0 {
                    tokio::time::sleep(si).await;
                }
            }
            server.shutdown();
        });
    }

    /// Graceful shutdown: stop accepting, flush and close every client, then resolve `wait`.
    pub fn shutdown(&self) {
        let inner = self.inner.clone();
        if inner.stopping.swap(true, Ordering::AcqRel) {
            return;
        }
        crate::log_info!("Initiating Shutdown...");
        inner.stop_accept.notify_one();
        for c in inner.all_clients() {
            c.close(CloseReason::ServerShutdown);
        }
        self.inner.runtime.spawn(async move {
            // Writers flush within write_deadline at most; don't wait longer than that.
            let deadline = inner.options().write_deadline + Duration::from_millis(100);
            let _ = tokio::time::timeout(deadline, async {
                loop {
                    let gone = inner.clients_gone.notified();
                    if inner.clients.lock().is_empty() {
                        return;
                    }
                    gone.await;
                }
            })
            .await;
            crate::log_info!("Server Exiting..");
            inner.done.send_replace(true);
        });
    }

    /// Resolves once the server has fully stopped.
    pub async fn wait(&self) {
        let mut rx = self.inner.done.subscribe();
        let _ = rx.wait_for(|done| *done).await;
    }
}

async fn accept_loop(inner: Arc<ServerInner>, listener: TcpListener) {
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = inner.stop_accept.notified() => break,
        };
        match accepted {
            Ok((stream, addr)) => {
                if inner.stopping.load(Ordering::Acquire) || inner.lame_duck.load(Ordering::Acquire)
                {
                    continue;
                }
                let cid = inner.next_cid.fetch_add(1, Ordering::Relaxed);
                inner
                    .stats
                    .total_connections
                    .fetch_add(1, Ordering::Relaxed);
                let opts = inner.options();
                let shared = client::new_shared(cid, addr, &opts, inner.stats.clone());
                inner.clients.lock().insert(cid, shared.clone());
                tokio::spawn(client::run(inner.clone(), shared, stream));
            }
            Err(e) => {
                // EMFILE and friends: log, back off a little, keep serving the others.
                crate::log_error!("Error accepting client connection: {}", e);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
    // Dropping the listener closes the port.
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

    async fn start(f: impl FnOnce(&mut Options)) -> Server {
        let mut o = Options {
            host: "127.0.0.1".into(),
            port: -1,
            ..Options::default()
        };
        f(&mut o);
        Server::start(o).await.expect("server starts")
    }

    fn url(s: &Server) -> String {
        format!("nats://{}", s.local_addr())
    }

    /// A raw protocol connection that has read the INFO line.
    struct Raw {
        rd: BufReader<tokio::net::tcp::OwnedReadHalf>,
        wr: tokio::net::tcp::OwnedWriteHalf,
        info: String,
    }

    impl Raw {
        async fn connect(s: &Server) -> Raw {
            let stream = tokio::net::TcpStream::connect(s.local_addr())
                .await
                .unwrap();
            let (rd, wr) = stream.into_split();
            let mut raw = Raw {
                rd: BufReader::new(rd),
                wr,
                info: String::new(),
            };
            raw.info = raw.line().await;
            raw
        }
        async fn send(&mut self, b: &[u8]) {
            self.wr.write_all(b).await.unwrap();
        }
        async fn line(&mut self) -> String {
            let mut l = String::new();
            tokio::time::timeout(Duration::from_secs(5), self.rd.read_line(&mut l))
                .await
                .expect("line in time")
                .unwrap();
            l
        }
        async fn eof(&mut self) -> bool {
            let mut b = [0u8; 64];
            matches!(
                tokio::time::timeout(Duration::from_secs(5), self.rd.read(&mut b)).await,
                Ok(Ok(0)) | Ok(Err(_))
            )
        }
    }

    #[tokio::test]
    async fn info_and_ping() {
        let s = start(|_| {}).await;
        let mut c = Raw::connect(&s).await;
        assert!(
            c.info.starts_with("INFO {") && c.info.ends_with("} \r\n"),
            "{}",
            c.info
        );
        let v: serde_json::Value = serde_json::from_str(&c.info[5..c.info.len() - 3]).unwrap();
        for k in [
            "server_id",
            "version",
            "go",
            "host",
            "port",
            "headers",
            "max_payload",
            "client_id",
        ] {
            assert!(v.get(k).is_some(), "INFO lacks {k}");
        }
        assert_eq!(v["port"], s.local_addr().port());
        assert_eq!(v["proto"], 1);
        c.send(b"CONNECT {\"verbose\":false,\"protocol\":1}\r\nPING\r\n")
            .await;
        assert_eq!(c.line().await, "PONG\r\n");
        let info2 = c.line().await;
        assert!(info2.contains("\"connect_info\":true"), "{info2}");
        c.send(b"SUB foo 1\r\nPUB foo r 3\r\nabc\r\n").await;
        assert_eq!(c.line().await, "MSG foo 1 r 3\r\n");
        assert_eq!(c.line().await, "abc\r\n");
        c.send(b"FOO\r\n").await;
        assert_eq!(c.line().await, "-ERR 'Unknown Protocol Operation'\r\n");
        assert!(c.eof().await);
    }

    #[tokio::test]
    async fn async_nats_pub_sub_queue_request() {
        let s = start(|_| {}).await;
        let a = async_nats::connect(url(&s)).await.unwrap();
        let b = async_nats::connect(url(&s)).await.unwrap();
        let mut sub = b.subscribe("foo.*").await.unwrap();
        let mut q1 = b.queue_subscribe("work", "g".into()).await.unwrap();
        let mut q2 = a.queue_subscribe("work", "g".into()).await.unwrap();
        b.flush().await.unwrap();
        a.flush().await.unwrap();
        for i in 0..10 {
            a.publish("foo.bar", format!("m{i}").into()).await.unwrap();
            a.publish("work", "w".into()).await.unwrap();
        }
        a.flush().await.unwrap();
        for i in 0..10 {
            let m = sub.next().await.unwrap();
            assert_eq!(m.subject.as_str(), "foo.bar");
            assert_eq!(&m.payload[..], format!("m{i}").as_bytes());
        }
        // Each of the 10 work messages goes to exactly one queue member.
        let mut got = 0;
        while got < 10 {
            tokio::select! {
                Some(_) = q1.next() => got += 1,
                Some(_) = q2.next() => got += 1,
                _ = tokio::time::sleep(Duration::from_secs(5)) => panic!("only {got} work msgs"),
            }
        }
        tokio::select! {
            Some(_) = q1.next() => panic!("extra delivery"),
            Some(_) = q2.next() => panic!("extra delivery"),
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
        }
        // Request/reply.
        let mut svc = b.subscribe("svc").await.unwrap();
        b.flush().await.unwrap();
        let bc = b.clone();
        tokio::spawn(async move {
            while let Some(m) = svc.next().await {
                let reply = m.reply.unwrap();
                bc.publish(reply, m.payload).await.unwrap();
            }
        });
        let r = a.request("svc", "ping".into()).await.unwrap();
        assert_eq!(&r.payload[..], b"ping");
        // No responders.
        let e = a.request("nobody", "x".into()).await.unwrap_err();
        assert_eq!(e.kind(), async_nats::RequestErrorKind::NoResponders);
        // Headers round trip and a large (shared) payload.
        let mut hs = b.subscribe("h").await.unwrap();
        b.flush().await.unwrap();
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("K", "v");
        let big = vec![7u8; 100_000];
        a.publish_with_headers("h", headers, big.clone().into())
            .await
            .unwrap();
        a.flush().await.unwrap();
        let m = hs.next().await.unwrap();
        assert_eq!(m.headers.unwrap().get("K").unwrap().as_str(), "v");
        assert_eq!(&m.payload[..], &big[..]);
        assert!(s.stats().in_msgs.load(Ordering::Relaxed) >= 22);
    }

    #[tokio::test]
    async fn token_auth_and_violation() {
        let s = start(|o| o.auth.token = Some("s3cr3t".into())).await;
        let mut c = Raw::connect(&s).await;
        assert!(c.info.contains("\"auth_required\":true"), "{}", c.info);
        c.send(b"CONNECT {\"auth_token\":\"wrong\"}\r\n").await;
        assert_eq!(c.line().await, "-ERR 'Authorization Violation'\r\n");
        assert!(c.eof().await);
        let mut c = Raw::connect(&s).await;
        c.send(b"PING\r\n").await;
        assert_eq!(c.line().await, "-ERR 'Authorization Violation'\r\n");
        let ok = async_nats::ConnectOptions::with_token("s3cr3t".into())
            .connect(url(&s))
            .await
            .unwrap();
        ok.flush().await.unwrap();
    }

    #[tokio::test]
    async fn user_password_and_auth_timeout() {
        let s = start(|o| {
            o.auth.user = Some("derek".into());
            o.auth.password = Some("pw".into());
            o.auth.timeout = Duration::from_millis(200);
        })
        .await;
        let c = async_nats::ConnectOptions::with_user_and_password("derek".into(), "pw".into())
            .connect(url(&s))
            .await
            .unwrap();
        c.flush().await.unwrap();
        let mut raw = Raw::connect(&s).await;
        raw.send(b"CONNECT {\"user\":\"derek\",\"pass\":\"nope\"}\r\n")
            .await;
        assert_eq!(raw.line().await, "-ERR 'Authorization Violation'\r\n");
        let mut idle = Raw::connect(&s).await;
        assert_eq!(idle.line().await, "-ERR 'Authentication Timeout'\r\n");
        assert!(idle.eof().await);
    }

    #[tokio::test]
    async fn verbose_echo_unsub_max() {
        let s = start(|_| {}).await;
        let mut c = Raw::connect(&s).await;
        c.send(
            b"CONNECT {\"verbose\":true,\"echo\":false}\r\nSUB foo 1\r\nPUB foo 1\r\na\r\nPING\r\n",
        )
        .await;
        for _ in 0..3 {
            assert_eq!(c.line().await, "+OK\r\n");
        }
        assert_eq!(
            c.line().await,
            "PONG\r\n",
            "echo:false must suppress own messages"
        );
        let mut d = Raw::connect(&s).await;
        d.send(b"CONNECT {\"verbose\":false}\r\nSUB bar 7\r\nUNSUB 7 2\r\nPING\r\n")
            .await;
        assert_eq!(d.line().await, "PONG\r\n");
        c.send(b"PUB bar 1\r\n1\r\nPUB bar 1\r\n2\r\nPUB bar 1\r\n3\r\n")
            .await;
        // c is verbose: its three +OKs mean the PUBs were routed, so d's deliveries are queued
        // before the PONG below (without this wait the PING on d could overtake them).
        for _ in 0..3 {
            assert_eq!(c.line().await, "+OK\r\n");
        }
        d.send(b"PING\r\n").await;
        assert_eq!(d.line().await, "MSG bar 7 1\r\n");
        assert_eq!(d.line().await, "1\r\n");
        assert_eq!(d.line().await, "MSG bar 7 1\r\n");
        assert_eq!(d.line().await, "2\r\n");
        // The third message is past max; the sid is gone.
        assert_eq!(d.line().await, "PONG\r\n");
        assert_eq!(s.num_subscriptions(), 1);
    }

    #[tokio::test]
    async fn max_subscriptions_and_connections() {
        let s = start(|o| {
            o.max_subscriptions = 1;
            o.max_connections = 1;
        })
        .await;
        let mut c = Raw::connect(&s).await;
        c.send(b"CONNECT {\"verbose\":false}\r\nSUB a 1\r\nSUB b 2\r\nPING\r\n")
            .await;
        assert_eq!(c.line().await, "-ERR 'maximum subscriptions exceeded'\r\n");
        assert_eq!(c.line().await, "PONG\r\n");
        let mut over = Raw::connect(&s).await;
        assert_eq!(over.line().await, "-ERR 'maximum connections exceeded'\r\n");
        assert!(over.eof().await);
    }

    #[tokio::test]
    async fn slow_consumer_is_cut_and_others_unaffected() {
        let s = start(|o| o.max_pending = 256 * 1024).await;
        let mut slow = Raw::connect(&s).await;
        slow.send(b"CONNECT {\"verbose\":false}\r\nSUB foo 1\r\nPING\r\n")
            .await;
        assert_eq!(slow.line().await, "PONG\r\n");
        let good = async_nats::connect(url(&s)).await.unwrap();
        let mut sub = good.subscribe("foo").await.unwrap();
        good.flush().await.unwrap();
        let publ = async_nats::connect(url(&s)).await.unwrap();
        let n = 20_000;
        let payload = bytes::Bytes::from(vec![b'x'; 1024]);
        let reader = tokio::spawn(async move {
            let mut got = 0;
            while got < n {
                sub.next().await.unwrap();
                got += 1;
            }
            got
        });
        for _ in 0..n {
            publ.publish("foo", payload.clone()).await.unwrap();
        }
        publ.flush().await.unwrap();
        let got = tokio::time::timeout(Duration::from_secs(20), reader)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got, n);
        assert!(s.stats().slow_consumers.load(Ordering::Relaxed) >= 1);
        // The slow one gets what was already written, then EOF, and no -ERR.
        let mut all = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(10), slow.rd.read_to_end(&mut all)).await;
        assert!(!String::from_utf8_lossy(&all).contains("-ERR"));
    }

    #[tokio::test]
    async fn stale_connection() {
        let s = start(|o| {
            o.ping_interval = Duration::from_millis(100);
            o.ping_max = 2;
        })
        .await;
        let mut c = Raw::connect(&s).await;
        c.send(b"CONNECT {\"verbose\":false}\r\n").await;
        assert_eq!(c.line().await, "PING\r\n");
        assert_eq!(c.line().await, "PING\r\n");
        assert_eq!(c.line().await, "-ERR 'Stale Connection'\r\n");
        assert!(c.eof().await);
    }

    #[tokio::test]
    async fn lame_duck_then_stop() {
        let s = start(|o| {
            o.lame_duck_grace_period = Duration::from_millis(50);
            o.lame_duck_duration = Duration::from_millis(300);
        })
        .await;
        let mut c = Raw::connect(&s).await;
        c.send(b"CONNECT {\"verbose\":false}\r\nPING\r\n").await;
        assert_eq!(c.line().await, "PONG\r\n");
        s.lame_duck();
        let info = c.line().await;
        assert!(
            info.starts_with("INFO ") && info.contains("\"ldm\":true"),
            "{info}"
        );
        assert!(c.eof().await);
        tokio::time::timeout(Duration::from_secs(5), s.wait())
            .await
            .expect("stops");
        assert!(tokio::net::TcpStream::connect(s.local_addr())
            .await
            .is_err());
    }

    #[tokio::test]
    async fn shutdown_flushes_and_port_is_reusable() {
        let s = start(|_| {}).await;
        let addr = s.local_addr();
        let mut c = Raw::connect(&s).await;
        c.send(b"CONNECT {\"verbose\":false}\r\nPING\r\n").await;
        assert_eq!(c.line().await, "PONG\r\n");
        s.shutdown();
        assert!(c.eof().await);
        tokio::time::timeout(Duration::from_secs(5), s.wait())
            .await
            .expect("stops");
        let again = start(|o| o.port = addr.port() as i32).await;
        assert_eq!(again.local_addr().port(), addr.port());
    }

    #[tokio::test]
    async fn split_frames_and_no_responders_exact_bytes() {
        let s = start(|_| {}).await;
        let mut c = Raw::connect(&s).await;
        c.send(
            b"CONNECT {\"verbose\":false,\"headers\":true,\"no_responders\":true}\r\nSUB rep 9\r\n",
        )
        .await;
        // A PUB split across writes at awkward places.
        for piece in [
            &b"PU"[..],
            b"B nothing r",
            b"ep 0\r",
            b"\n\r",
            b"\nPING\r\n",
        ] {
            c.send(piece).await;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(c.line().await, "HMSG rep 9 39 39\r\n");
        assert_eq!(c.line().await, "NATS/1.0 503\r\n");
        assert_eq!(c.line().await, "Nats-Subject: nothing\r\n");
        assert_eq!(c.line().await, "\r\n");
        assert_eq!(c.line().await, "\r\n");
        assert_eq!(c.line().await, "PONG\r\n");
    }

    #[tokio::test]
    async fn ipv6_host() {
        let s = start(|o| o.host = "::1".into()).await;
        assert!(s.local_addr().is_ipv6());
        assert_eq!(join_host_port("::1", 4222), "[::1]:4222");
        let c = async_nats::connect(format!("nats://[::1]:{}", s.local_addr().port()))
            .await
            .unwrap();
        c.flush().await.unwrap();
    }

    #[tokio::test]
    async fn reload_applies_limits_keeps_port() {
        let s = start(|_| {}).await;
        let mut o = (*s.options()).clone();
        o.max_payload = 10;
        o.port = 1;
        s.reload(o);
        assert_eq!(s.options().max_payload, 10);
        assert_eq!(s.options().port, -1, "port cannot change at runtime");
        let mut c = Raw::connect(&s).await;
        assert!(c.info.contains("\"max_payload\":10"), "{}", c.info);
        c.send(b"PUB foo 11\r\n").await;
        assert_eq!(c.line().await, "-ERR 'Maximum Payload Violation'\r\n");
    }

    #[test]
    fn server_id_shape() {
        let id = new_server_id();
        assert_eq!(id.len(), 56);
        assert!(id.starts_with('N'));
        assert!(id
            .bytes()
            .all(|b| b.is_ascii_uppercase() || (b'2'..=b'7').contains(&b)));
        assert_ne!(id, new_server_id());
    }

    fn user(
        name: &str,
        account: Option<&str>,
        perms: Option<crate::options::Permissions>,
    ) -> crate::options::User {
        crate::options::User {
            user: name.into(),
            password: "p".into(),
            account: account.map(String::from),
            permissions: perms,
        }
    }

    #[tokio::test]
    async fn accounts_isolate_and_no_auth_user() {
        let s = start(|o| {
            o.auth.users = vec![
                user("a1", Some("A"), None),
                user("a2", Some("A"), None),
                user("b1", Some("B"), None),
            ];
            o.auth.no_auth_user = Some("a2".into());
        })
        .await;
        let mut a1 = Raw::connect(&s).await;
        a1.send(
            b"CONNECT {\"verbose\":false,\"user\":\"a1\",\"pass\":\"p\"}\r\nSUB x 1\r\nPING\r\n",
        )
        .await;
        assert_eq!(a1.line().await, "PONG\r\n");
        let mut b1 = Raw::connect(&s).await;
        b1.send(
            b"CONNECT {\"verbose\":false,\"user\":\"b1\",\"pass\":\"p\"}\r\nSUB x 1\r\nPING\r\n",
        )
        .await;
        assert_eq!(b1.line().await, "PONG\r\n");
        let mut anon = Raw::connect(&s).await;
        anon.send(b"CONNECT {\"verbose\":false}\r\nPUB x 2\r\nhi\r\nPING\r\n")
            .await;
        assert_eq!(anon.line().await, "PONG\r\n");
        b1.send(b"PUB x 1\r\nb\r\nPING\r\n").await;
        assert_eq!(
            b1.line().await,
            "MSG x 1 1\r\n",
            "b1 hears only its own account"
        );
        assert_eq!(b1.line().await, "b\r\n");
        assert_eq!(b1.line().await, "PONG\r\n");
        a1.send(b"PING\r\n").await;
        assert_eq!(a1.line().await, "MSG x 1 2\r\n");
        assert_eq!(a1.line().await, "hi\r\n");
        assert_eq!(a1.line().await, "PONG\r\n");
        assert_eq!(s.num_subscriptions(), 2);
    }

    #[tokio::test]
    async fn permissions_violations_stay_open() {
        use crate::options::{Permissions, SubjectPermission};
        let perms = Permissions {
            publish: Some(SubjectPermission {
                allow: vec!["a.>".into()],
                deny: vec![],
            }),
            subscribe: Some(SubjectPermission {
                allow: vec!["a.>".into(), "q.>".into()],
                deny: vec!["a.secret".into()],
            }),
        };
        let s = start(|o| {
            o.auth.users = vec![user("alice", None, Some(perms)), user("bob", None, None)]
        })
        .await;
        let mut a = Raw::connect(&s).await;
        a.send(b"CONNECT {\"verbose\":false,\"user\":\"alice\",\"pass\":\"p\"}\r\nPUB b.x 1\r\nx\r\nSUB b.x 1\r\nSUB a.secret 2\r\nSUB b.y grp 3\r\nSUB a.> 4\r\nPUB a.secret 1\r\ns\r\nPUB a.ok 1\r\ny\r\nPING\r\n").await;
        assert_eq!(
            a.line().await,
            "-ERR 'Permissions Violation for Publish to \"b.x\"'\r\n"
        );
        assert_eq!(
            a.line().await,
            "-ERR 'Permissions Violation for Subscription to \"b.x\"'\r\n"
        );
        assert_eq!(
            a.line().await,
            "-ERR 'Permissions Violation for Subscription to \"a.secret\"'\r\n"
        );
        assert_eq!(
            a.line().await,
            "-ERR 'Permissions Violation for Subscription to \"b.y\" using queue \"grp\"'\r\n"
        );
        // a.> is allowed but never delivers the denied a.secret.
        assert_eq!(a.line().await, "MSG a.ok 4 1\r\n");
        assert_eq!(a.line().await, "y\r\n");
        assert_eq!(a.line().await, "PONG\r\n");
    }

    #[tokio::test]
    async fn reload_closes_clients_the_new_auth_rejects() {
        let s = start(|o| o.auth.users = vec![user("a", None, None), user("b", None, None)]).await;
        let mut a = Raw::connect(&s).await;
        a.send(b"CONNECT {\"verbose\":false,\"user\":\"a\",\"pass\":\"p\"}\r\nPING\r\n")
            .await;
        assert_eq!(a.line().await, "PONG\r\n");
        let mut b = Raw::connect(&s).await;
        b.send(b"CONNECT {\"verbose\":false,\"user\":\"b\",\"pass\":\"p\"}\r\nPING\r\n")
            .await;
        assert_eq!(b.line().await, "PONG\r\n");
        let mut o = (*s.options()).clone();
        o.auth.users.retain(|u| u.user == "a");
        s.reload(o);
        assert_eq!(b.line().await, "-ERR 'Authorization Violation'\r\n");
        assert!(b.eof().await);
        a.send(b"PING\r\n").await;
        assert_eq!(a.line().await, "PONG\r\n", "a is still allowed");
    }

    #[tokio::test]
    async fn headers_stripped_for_a_subscriber_without_headers() {
        let s = start(|_| {}).await;
        let mut sub = Raw::connect(&s).await;
        sub.send(b"CONNECT {\"verbose\":false,\"headers\":false}\r\nSUB h 1\r\nPING\r\n")
            .await;
        assert_eq!(sub.line().await, "PONG\r\n");
        let mut publ = Raw::connect(&s).await;
        publ.send(b"CONNECT {\"verbose\":false,\"headers\":true}\r\nHPUB h r 12 14\r\nNATS/1.0\r\n\r\nhi\r\nHPUB h 02 2\r\n\r\n\r\nPING\r\n").await;
        assert_eq!(publ.line().await, "PONG\r\n");
        // As nats-server: MSG with the payload only, its size recomputed.
        assert_eq!(sub.line().await, "MSG h 1 r 2\r\n");
        assert_eq!(sub.line().await, "hi\r\n");
        assert_eq!(sub.line().await, "MSG h 1 0\r\n");
        assert_eq!(sub.line().await, "\r\n");
    }
}
