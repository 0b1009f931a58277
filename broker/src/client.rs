//! One client connection.
//!
//! Two tasks per connection, like nats-server's readLoop/writeLoop:
//! - the reader task reads into a reusable `BytesMut`, runs the [`Parser`] and dispatches every
//!   op. When it publishes, it appends `MSG`/`HMSG` bytes straight into each subscriber's
//!   outbound buffer (under that subscriber's small mutex) and, once per read batch, flushes every
//!   subscriber it touched: a burst of publishes becomes one `write` per subscriber. A small
//!   output is written right there with a non-blocking write when that subscriber's writer is
//!   idle (saves a task wakeup per request/reply hop); anything else wakes the writer. After
//!   input, one reader per process spins briefly before it parks (see `SPIN`): waking a parked
//!   thread costs more than a request/reply hop.
//! - the writer task sleeps until woken, takes everything pending in one swap and writes it with
//!   one (vectored) write, under `write_deadline`. It also sends the keepalive PINGs.
//!
//! All bytes the server sends to a client (INFO, +OK, -ERR, PONG, messages) go through the same
//! outbound buffer, so they stay in order and a slow socket never blocks a publisher: a publisher
//! only takes the subscriber's mutex for a memcpy (or one non-blocking write), and waits for a
//! subscriber at most a few milliseconds of flow control (see `STALL_AT`). A subscriber whose
//! unwritten bytes exceed `max_pending`, or whose writes stall past `write_deadline`, is a slow
//! consumer: it is closed without `-ERR`, counted and logged, exactly as nats-server does.
//!
//! Payloads: up to [`SHARE_MIN`] bytes they are copied into the subscriber's buffer (a memcpy of a
//! few hundred bytes is cheaper than a refcount plus an extra iovec, and it lets the publisher's
//! read buffer be reused at once); larger payloads are shared as `Bytes` slices of the publisher's
//! read buffer and written with `writev`, never copied per subscriber.

use crate::options::{Options, Permissions, SubjectPermission};
use crate::parser::{Msg, Op, ParseError, Parser};
use crate::server::{Account, ServerInner, Stats};
use crate::sublist::{valid_literal_subject, Sublist, SublistResult};
use bytes::{BufMut, Bytes, BytesMut};
use parking_lot::Mutex;
use serde::Deserialize;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use subtle::ConstantTimeEq;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

/// Payloads at least this long are shared (`Bytes` + writev) instead of copied per subscriber.
pub const SHARE_MIN: usize = 2048;
/// Smallest socket read; the read size doubles while reads fill the buffer.
const MIN_READ: usize = 512;
/// Largest socket read (fewer syscalls and refills per message for a streaming publisher; the
/// buffer is dropped once reads get small). Capped at max_pending/4 per connection: a whole read
/// batch is appended to a subscriber before flow control can act, so one batch must never carry
/// a subscriber past max_pending on its own.
const MAX_READ: usize = 128 * 1024;
/// An idle writer keeps its spare buffer only up to this capacity (small idle footprint).
const IDLE_KEEP: usize = 2048;
/// nats-server sends its first PING this soon after connect (then every ping_interval).
const FIRST_PING: Duration = Duration::from_secs(2);
/// Entries in the per-client subject → match-result cache before it is reset.
const CACHE_MAX: usize = 512;
/// A read batch writes a small pending output straight to the socket itself instead of waking
/// the writer task (nats-server's flushClients): one task wakeup less per request/reply hop.
/// Bigger batches go to the writer tasks, which run in parallel with the publisher.
const DIRECT_MAX: usize = 8 * 1024;
/// How long a reader that just had input keeps the runtime busy (polling for more) before it
/// parks; see `spin_for_input`.
const SPIN: Duration = Duration::from_micros(50);
/// Set while one reader spins (one spinner per process is enough to keep the driver polled).
static SPINNER: AtomicBool = AtomicBool::new(false);
/// Most iovecs handed to one writev.
const MAX_IOV: usize = 64;
/// Flow control (nats-server's "stall"): a publisher that filled a subscriber past this many
/// pending bytes waits, at the end of its read batch, up to [`STALL_MAX`] for that subscriber's
/// writer to drain. It bounds memory per subscriber under a fast producer without ever blocking a
/// publisher for long. A subscriber whose socket makes no progress is not waited for at all, and
/// one that failed to drain in time [`STALL_GIVE_UP`] times in a row is a slow consumer: nobody
/// waits for it any more (it runs into max_pending or write_deadline and is cut, as nats-server
/// does), so a slow consumer costs its publishers at most a few stalls.
const STALL_AT: usize = 256 * 1024;
/// Most subscribers one read batch waits for.
const STALL_TRACK: usize = 8;
const STALL_MAX: Duration = Duration::from_millis(5);
const STALL_GIVE_UP: u32 = 3;
/// A writer without progress for this long counts as blocked (no stalls on its behalf).
const STALL_PROGRESS_MS: u64 = 50;

/// Why a connection closed (nats-server's wording, used in the debug log and for monitoring).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseReason {
    ClientClosed,
    ReadError,
    WriteError,
    ParseError,
    ProtocolViolation,
    AuthViolation,
    AuthTimeout,
    StaleConnection,
    SlowConsumerPendingBytes,
    SlowConsumerWriteDeadline,
    MaxConnectionsExceeded,
    ServerShutdown,
    LameDuck,
}

impl CloseReason {
    pub fn as_str(self) -> &'static str {
        match self {
            CloseReason::ClientClosed => "Client Closed",
            CloseReason::ReadError => "Read Error",
            CloseReason::WriteError => "Write Error",
            CloseReason::ParseError => "Parse Error",
            CloseReason::ProtocolViolation => "Protocol Violation",
            CloseReason::AuthViolation => "Authentication Failure",
            CloseReason::AuthTimeout => "Authentication Timeout",
            CloseReason::StaleConnection => "Stale Connection",
            CloseReason::SlowConsumerPendingBytes => "Slow Consumer (Pending Bytes)",
            CloseReason::SlowConsumerWriteDeadline => "Slow Consumer (Write Deadline)",
            CloseReason::MaxConnectionsExceeded => "Maximum Connections Exceeded",
            CloseReason::ServerShutdown => "Server Shutdown",
            CloseReason::LameDuck => "Server Shutdown",
        }
    }

    /// Pending output is thrown away (nats-server's skipFlushOnClose).
    fn discards_output(self) -> bool {
        matches!(
            self,
            CloseReason::ReadError
                | CloseReason::WriteError
                | CloseReason::SlowConsumerPendingBytes
                | CloseReason::SlowConsumerWriteDeadline
        )
    }
}

/// Bytes waiting to be written to one client. Guarded by `ClientShared::out`.
#[derive(Default)]
struct Outbound {
    /// Large shared payloads (and the bytes before them), in order, written before `buf`.
    segs: Vec<Bytes>,
    /// The tail everything small is appended to.
    buf: BytesMut,
    /// Unwritten bytes, including the batch the writer is writing right now.
    pending: usize,
    /// The writer was already told to flush (avoid one wakeup per message).
    flush_scheduled: bool,
    closed: bool,
    discard: bool,
    out_msgs: u64,
    out_bytes: u64,
    /// The socket's write half, shared with the writer task for direct flushes (see
    /// `flush_direct`); taken away when the writer ends so that its drop closes the socket.
    wr: Option<Arc<OwnedWriteHalf>>,
    /// The writer task has a batch in flight: nobody else may write now (ordering).
    busy: bool,
}

/// What other connections (publishers, the server) may touch of a client.
pub struct ClientShared {
    pub cid: u64,
    pub addr: SocketAddr,
    out: Mutex<Outbound>,
    /// Wakes the writer: data to flush, a close, or nothing (spurious wakeups are harmless).
    wake: tokio::sync::Notify,
    /// Wakes the reader when the connection is closed from elsewhere.
    stop: tokio::sync::Notify,
    closed: AtomicBool,
    close_reason: Mutex<Option<CloseReason>>,
    /// The client accepts HMSG (CONNECT headers:true).
    headers: AtomicBool,
    max_pending: AtomicUsize,
    /// Server PINGs not yet answered.
    pings_out: AtomicU32,
    /// Milliseconds since `born` of the last read (keepalive skips PINGs to active clients).
    last_in_ms: AtomicU64,
    /// Milliseconds since `born` of the last completed write, and the writer's "drained" signal
    /// for stalled publishers.
    last_out_ms: AtomicU64,
    writing: AtomicBool,
    drained: tokio::sync::Notify,
    /// Stalls on this client's behalf that ran out of time in a row (see STALL_GIVE_UP).
    stall_misses: AtomicU32,
    born: Instant,
    /// sid → subscription. Locked on SUB/UNSUB/close and auto-unsubscribe only.
    subs: Mutex<HashMap<Bytes, Arc<Subscription>>>,
    pub in_msgs: AtomicU64,
    pub in_bytes: AtomicU64,
    /// CONNECT's name/lang/version, for monitoring.
    pub meta: Mutex<ClientMeta>,
    stats: Arc<Stats>,
    /// Set once by a successful CONNECT: the user's permissions (publishers read the subscribe
    /// deny list when delivering).
    perms: OnceLock<ClientPerms>,
    /// CONNECT was processed: the writer starts the short first-PING timer.
    connect_seen: AtomicBool,
    /// The configuration was reloaded: the reader re-checks this client's authorization now
    /// (the writer re-reads its keepalive settings on the accompanying `wake`).
    reload: tokio::sync::Notify,
}

/// A user's permissions compiled to sublists (wildcard-aware matching with its own cache).
pub(crate) struct ClientPerms {
    publish: Option<SubjectPerms>,
    subscribe: Option<SubjectPerms>,
}

struct SubjectPerms {
    allow: Option<Sublist<u8>>,
    deny: Option<Sublist<u8>>,
}

impl SubjectPerms {
    fn new(p: &SubjectPermission) -> Self {
        let list = |subjects: &[String]| -> Option<Sublist<u8>> {
            if subjects.is_empty() {
                return None;
            }
            let l = Sublist::new();
            for s in subjects {
                // The config layer validated the subjects; an invalid one simply matches nothing.
                let _ = l.insert(s.as_bytes(), None, 0u8);
            }
            Some(l)
        };
        SubjectPerms {
            allow: list(&p.allow),
            deny: list(&p.deny),
        }
    }

    fn allows(&self, subject: &[u8]) -> bool {
        if let Some(a) = &self.allow {
            if a.matches(subject).psubs.is_empty() {
                return false;
            }
        }
        !self.denies(subject)
    }

    fn denies(&self, subject: &[u8]) -> bool {
        self.deny
            .as_ref()
            .is_some_and(|d| !d.matches(subject).psubs.is_empty())
    }
}

impl ClientPerms {
    fn new(p: &Permissions) -> Self {
        ClientPerms {
            publish: p.publish.as_ref().map(SubjectPerms::new),
            subscribe: p.subscribe.as_ref().map(SubjectPerms::new),
        }
    }
}

/// What a successful authentication grants.
#[derive(Default)]
struct Grant {
    account: Option<String>,
    permissions: Option<Permissions>,
    /// `"A/user:alice"` (account/user) for permission log lines, as nats-server 2.15 tags them.
    who: String,
}

#[derive(Clone, Debug, Default)]
pub struct ClientMeta {
    pub name: String,
    pub lang: String,
    pub version: String,
}

/// A point-in-time view of one connection, for monitoring.
#[derive(Clone, Debug)]
pub struct ClientSnapshot {
    pub cid: u64,
    pub addr: SocketAddr,
    pub subscriptions: Vec<String>,
    pub in_msgs: u64,
    pub in_bytes: u64,
    pub out_msgs: u64,
    pub out_bytes: u64,
    pub pending_bytes: usize,
    pub meta: ClientMeta,
}

impl ClientShared {
    /// `127.0.0.1:port - cid:N - `, nats-server's prefix for per-connection log lines.
    fn log_prefix(&self) -> String {
        format!("{} - cid:{} - ", self.addr, self.cid)
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    pub fn close_reason(&self) -> Option<CloseReason> {
        *self.close_reason.lock()
    }

    /// Closes the connection: the writer flushes what is pending (unless the reason discards
    /// output) and shuts the socket; the reader stops and removes the subscriptions.
    pub fn close(&self, reason: CloseReason) {
        if self.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        *self.close_reason.lock() = Some(reason);
        {
            let mut out = self.out.lock();
            out.closed = true;
            if reason.discards_output() {
                out.discard = true;
                out.segs = Vec::new();
                out.buf = BytesMut::new();
            }
        }
        crate::log_debug!(
            "{}Client connection closed: {}",
            self.log_prefix(),
            reason.as_str()
        );
        self.wake.notify_one();
        self.stop.notify_one();
    }

    /// Queues raw protocol bytes (INFO, +OK, -ERR, PING, PONG) and wakes the writer.
    pub fn send(&self, data: &[u8]) {
        {
            let mut out = self.out.lock();
            if out.closed {
                return;
            }
            out.buf.extend_from_slice(data);
            out.pending += data.len();
            if out.flush_scheduled {
                // A wakeup is already on its way (possibly deferred to the end of a read batch).
                return;
            }
            out.flush_scheduled = true;
        }
        self.wake.notify_one();
    }

    /// Queues `-ERR '<text>'`.
    pub fn send_err(&self, text: &str) {
        let mut line = Vec::with_capacity(text.len() + 9);
        line.extend_from_slice(b"-ERR '");
        line.extend_from_slice(text.as_bytes());
        line.extend_from_slice(b"'\r\n");
        self.send(&line);
    }

    /// Sends `-ERR` and closes (the error line is flushed first).
    pub fn send_err_and_close(&self, text: &str, reason: CloseReason) {
        self.send_err(text);
        self.close(reason);
    }

    pub fn snapshot(&self) -> ClientSnapshot {
        let (out_msgs, out_bytes, pending_bytes) = {
            let out = self.out.lock();
            (out.out_msgs, out.out_bytes, out.pending)
        };
        ClientSnapshot {
            cid: self.cid,
            addr: self.addr,
            subscriptions: self
                .subs
                .lock()
                .values()
                .map(|s| String::from_utf8_lossy(&s.subject).into_owned())
                .collect(),
            in_msgs: self.in_msgs.load(Ordering::Relaxed),
            in_bytes: self.in_bytes.load(Ordering::Relaxed),
            out_msgs,
            out_bytes,
            pending_bytes,
            meta: self.meta.lock().clone(),
        }
    }

    /// The flow-control window: STALL_AT, but always well below this client's max_pending so
    /// that publishers wait before the max_pending cut, not after.
    fn stall_at(&self) -> usize {
        STALL_AT.min(self.max_pending.load(Ordering::Relaxed) / 2)
    }

    /// Writes a small pending output right here (non-blocking) when the writer task is idle.
    /// True when everything went out, so the writer need not be woken. Holding `out` during
    /// the write keeps the order: nothing can be appended or taken meanwhile.
    fn flush_direct(&self) -> bool {
        let mut out = self.out.lock();
        let o = &mut *out;
        if o.busy || o.closed || !o.segs.is_empty() || o.buf.is_empty() || o.buf.len() > DIRECT_MAX
        {
            return o.buf.is_empty() && o.segs.is_empty() && !o.closed;
        }
        let Some(wr) = o.wr.as_ref() else {
            return false;
        };
        match wr.try_write(&o.buf) {
            Ok(n) => {
                o.pending -= n;
                if n == o.buf.len() {
                    o.buf.clear();
                    o.flush_scheduled = false;
                    true
                } else {
                    bytes::Buf::advance(&mut o.buf, n);
                    false
                }
            }
            // WouldBlock or an error: the writer task takes over (and reports errors).
            Err(_) => false,
        }
    }

    /// Tells the reader that the configuration was reloaded.
    pub fn notify_reload(&self) {
        self.reload.notify_one();
        self.wake.notify_one();
    }

    pub fn num_subscriptions(&self) -> usize {
        self.subs.lock().len()
    }

    fn touch(&self) {
        // Store only when the millisecond changed: publishers read this struct on every
        // delivery, so needless writes would bounce its cache line between cores.
        let now = self.born.elapsed().as_millis() as u64;
        if self.last_in_ms.load(Ordering::Relaxed) != now {
            self.last_in_ms.store(now, Ordering::Relaxed);
        }
    }

    /// Marks a slow consumer (pending bytes): counted and logged once.
    fn slow_consumer_pending(&self, max: usize) {
        if self.is_closed() {
            return;
        }
        self.stats.slow_consumers.fetch_add(1, Ordering::Relaxed);
        crate::log_info!(
            "{}Slow Consumer Detected: MaxPending of {} Exceeded",
            self.log_prefix(),
            max
        );
        self.close(CloseReason::SlowConsumerPendingBytes);
    }
}

/// One subscription. Shared by the owner's sid table and the sublist.
pub struct Subscription {
    pub client: Arc<ClientShared>,
    pub sid: Bytes,
    pub subject: Bytes,
    pub queue: Option<Bytes>,
    /// UNSUB max: 0 = unlimited. Only changed under the owner's `subs` lock.
    max: AtomicU64,
    /// Messages delivered. Written only under `client.out` (so load+store is race free).
    delivered: AtomicU64,
}

/// The sublist element: a subscription compared by identity.
#[derive(Clone)]
pub struct SubRef(pub Arc<Subscription>);

impl PartialEq for SubRef {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

/// FNV-1a: subjects are short, the map is per client and bounded, so HashDoS only hurts the
/// attacker's own connection; SipHash would cost more than the lookup saves.
#[derive(Default)]
struct Fnv(u64);
impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        let mut h = if self.0 == 0 {
            0xcbf29ce484222325
        } else {
            self.0
        };
        for &b in bytes {
            h ^= b as u64;
            h = h.wrapping_mul(0x100000001b3);
        }
        self.0 = h;
    }
}
type FnvMap<K, V> = HashMap<K, V, BuildHasherDefault<Fnv>>;

/// The CONNECT JSON. Absent fields keep their current value, as nats-server's json.Unmarshal into
/// the existing options does (so `CONNECT {}` stays verbose, the pre-CONNECT default).
#[derive(Deserialize, Default, Clone)]
struct ConnectArgs {
    verbose: Option<bool>,
    pedantic: Option<bool>,
    echo: Option<bool>,
    headers: Option<bool>,
    no_responders: Option<bool>,
    protocol: Option<i64>,
    auth_token: Option<String>,
    user: Option<String>,
    pass: Option<String>,
    name: Option<String>,
    lang: Option<String>,
    version: Option<String>,
}

/// The reader task's state: everything only this connection's reader touches.
struct Reader {
    srv: Arc<ServerInner>,
    me: Arc<ClientShared>,
    /// The account this connection publishes and subscribes in (set by CONNECT).
    acc: Arc<Account>,
    /// For log lines about permissions (`"$G/user:alice"`).
    who: String,
    /// The credentials CONNECT presented and what they were granted, kept (in memory only, as
    /// nats-server does) to re-check the client when a reload changes authorization.
    creds: Option<ConnectArgs>,
    granted: (Option<String>, Option<Permissions>),
    opts: Arc<Options>,
    opts_gen: u64,
    parser: Parser,
    // CONNECT options. Defaults before CONNECT are nats-server's: verbose, pedantic and echo on.
    verbose: bool,
    pedantic: bool,
    echo: bool,
    headers: bool,
    no_responders: bool,
    protocol: i64,
    connected: bool,
    connect_info_sent: bool,
    cache: FnvMap<Box<[u8]>, Arc<SublistResult<SubRef>>>,
    cache_gen: u64,
    /// Clients whose writers must be woken at the end of this read batch.
    to_wake: Vec<Arc<ClientShared>>,
    /// A subscriber this batch filled past STALL_AT (see there).
    stall: Vec<Arc<ClientShared>>,
    // Per-batch counters, added to the server totals once per read.
    in_msgs: u64,
    in_bytes: u64,
    out_msgs: u64,
    out_bytes: u64,
    rng: u64,
}

/// Accepted-connection entry point: registers nothing itself (the server did), sends INFO,
/// runs the reader here and the writer in its own task.
pub(crate) async fn run(srv: Arc<ServerInner>, me: Arc<ClientShared>, stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let (rd, wr) = stream.into_split();
    let wr = Arc::new(wr);
    me.out.lock().wr = Some(wr.clone());
    let opts = srv.options();
    me.send(srv.info_json(&me, false).as_bytes());
    let writer = tokio::spawn(write_loop(me.clone(), wr, srv.clone()));
    if srv.max_connections_exceeded(&opts) {
        crate::log_error!("{}maximum connections exceeded", me.log_prefix());
        me.send_err_and_close(
            "maximum connections exceeded",
            CloseReason::MaxConnectionsExceeded,
        );
    } else {
        crate::log_debug!("{}Client connection created", me.log_prefix());
        let mut reader = Reader::new(srv.clone(), me.clone(), opts);
        reader.read_loop(rd).await;
        reader.cleanup();
    }
    let _ = writer.await;
    srv.remove_client(me.cid);
}

pub(crate) fn new_shared(
    cid: u64,
    addr: SocketAddr,
    opts: &Options,
    stats: Arc<Stats>,
) -> Arc<ClientShared> {
    Arc::new(ClientShared {
        cid,
        addr,
        out: Mutex::new(Outbound::default()),
        wake: tokio::sync::Notify::new(),
        stop: tokio::sync::Notify::new(),
        closed: AtomicBool::new(false),
        close_reason: Mutex::new(None),
        headers: AtomicBool::new(false),
        max_pending: AtomicUsize::new(opts.max_pending),
        pings_out: AtomicU32::new(0),
        last_in_ms: AtomicU64::new(0),
        last_out_ms: AtomicU64::new(0),
        writing: AtomicBool::new(false),
        drained: tokio::sync::Notify::new(),
        stall_misses: AtomicU32::new(0),
        born: Instant::now(),
        subs: Mutex::new(HashMap::new()),
        in_msgs: AtomicU64::new(0),
        in_bytes: AtomicU64::new(0),
        meta: Mutex::new(ClientMeta::default()),
        stats,
        perms: OnceLock::new(),
        connect_seen: AtomicBool::new(false),
        reload: tokio::sync::Notify::new(),
    })
}

impl Reader {
    fn new(srv: Arc<ServerInner>, me: Arc<ClientShared>, opts: Arc<Options>) -> Self {
        // Never 0: xorshift would stay at 0 and always pick the same queue member.
        let seed =
            (me.cid.wrapping_mul(0x9E3779B97F4A7C15) ^ me.born.elapsed().as_nanos() as u64) | 1;
        Reader {
            parser: Parser::new(opts.max_control_line, opts.max_payload),
            opts_gen: srv.options_generation(),
            opts,
            acc: srv.account(None),
            who: String::new(),
            creds: None,
            granted: (None, None),
            srv,
            me,
            verbose: true,
            pedantic: true,
            echo: true,
            headers: false,
            no_responders: false,
            protocol: 0,
            connected: false,
            connect_info_sent: false,
            cache: FnvMap::default(),
            cache_gen: u64::MAX,
            to_wake: Vec::new(),
            stall: Vec::new(),
            in_msgs: 0,
            in_bytes: 0,
            out_msgs: 0,
            out_bytes: 0,
            rng: seed,
        }
    }

    async fn read_loop(&mut self, rd: OwnedReadHalf) {
        let mut buf = BytesMut::new();
        let mut read_size = MIN_READ;
        let auth_deadline = if self.opts.auth.required() {
            Some(tokio::time::Instant::now() + self.opts.auth.timeout)
        } else {
            None
        };
        let me = self.me.clone();
        // Data arrived since this reader last waited: it may spin before it parks (see SPIN).
        let mut spin_armed = false;
        loop {
            if me.is_closed() {
                return;
            }
            if std::mem::take(&mut spin_armed) {
                spin_for_input(&rd, &me).await;
            }
            let awaiting_auth = auth_deadline.filter(|_| !self.connected);
            // `stop` uses notify_one, which leaves a permit when nobody waits: no lost wakeup.
            tokio::select! {
                biased;
                _ = me.stop.notified() => return,
                _ = me.reload.notified() => {
                    if !self.refresh_options() {
                        return;
                    }
                    continue;
                }
                _ = sleep_until_opt(awaiting_auth) => {
                    crate::log_debug!("{}Authentication Timeout", self.me.log_prefix());
                    self.me.send_err_and_close("Authentication Timeout", CloseReason::AuthTimeout);
                    return;
                }
                r = rd.readable() => {
                    if r.is_err() {
                        self.me.close(CloseReason::ReadError);
                        return;
                    }
                }
            }
            let want = self.parser.needed().unwrap_or(0).max(buf.len() + read_size);
            if buf.capacity() < want {
                buf.reserve(want - buf.len());
            }
            let n = match rd.try_read_buf(&mut buf) {
                Ok(0) => {
                    self.me.close(CloseReason::ClientClosed);
                    return;
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(_) => {
                    self.me.close(CloseReason::ReadError);
                    return;
                }
            };
            self.me.touch();
            spin_armed = true;
            // Adapt the read size like nats-server: grow while reads fill it, shrink when small.
            let max_read = MAX_READ.min(self.opts.max_pending / 4).max(MIN_READ);
            if n >= read_size && read_size < max_read {
                read_size *= 2;
            } else if n < read_size / 4 && read_size > MIN_READ {
                read_size /= 2;
            }
            if !self.refresh_options() {
                return;
            }
            let ok = self.process(&mut buf);
            self.end_batch();
            if !ok {
                return;
            }
            if !self.stall.is_empty() {
                // One deadline for all of them: a batch never waits more than STALL_MAX.
                let deadline = tokio::time::Instant::now() + STALL_MAX;
                for c in self.stall.drain(..) {
                    stall_on(&c, deadline).await;
                }
            }
            // Not streaming (the read did not fill the buffer) and nothing partial left: hold no
            // read buffer, so idle connections stay small even after a burst.
            if buf.is_empty() && n < read_size / 2 {
                buf = BytesMut::new();
            }
        }
    }

    /// Parses and dispatches everything complete in `buf`. False when the connection must end.
    fn process(&mut self, buf: &mut BytesMut) -> bool {
        loop {
            match self.parser.parse(buf) {
                Ok(Some(op)) => {
                    if !self.dispatch(op) {
                        return false;
                    }
                }
                Ok(None) => return true,
                Err(e) => {
                    self.parse_error(e, buf);
                    return false;
                }
            }
        }
    }

    /// Logs as nats-server does and closes (with `-ERR` where nats-server sends one).
    fn parse_error(&mut self, e: ParseError, buf: &[u8]) {
        if !self.connected && self.opts.auth.required() && e == ParseError::UnknownOp {
            // nats-server checks auth before it parses anything but CONNECT.
            self.auth_violation(None);
            return;
        }
        match &e {
            ParseError::UnknownOp => {
                let snippet = &buf[..buf.len().min(32)];
                crate::log_error!(
                    "{}{}: proto='\"{}\"...'",
                    self.me.log_prefix(),
                    e,
                    snippet.escape_ascii()
                );
            }
            _ => crate::log_error!("{}{}", self.me.log_prefix(), e),
        }
        match e.wire_text() {
            Some(text) => self.me.send_err_and_close(text, CloseReason::ParseError),
            None => self.me.close(CloseReason::ParseError),
        }
    }

    fn ok(&self) {
        if self.verbose {
            self.me.send(b"+OK\r\n");
        }
    }

    /// Handles one op. False when the connection must end.
    fn dispatch(&mut self, op: Op) -> bool {
        if crate::log::enabled(crate::log::Level::Trace) {
            self.trace_in(&op);
        }
        if !self.connected && self.opts.auth.required() && !matches!(op, Op::Connect(_)) {
            self.auth_violation(None);
            return false;
        }
        match op {
            Op::Connect(json) => return self.connect(&json),
            Op::Pub(msg) => {
                self.in_msgs += 1;
                self.in_bytes += msg.body().len() as u64;
                if msg.hdr_len().is_some() && !self.headers {
                    // nats-server closes a client that sends HPUB without announcing headers.
                    crate::log_error!("{}message headers not supported", self.me.log_prefix());
                    self.me.close(CloseReason::ProtocolViolation);
                    return false;
                }
                // nats-server's order: the -ERR for a bad subject, then +OK, then deliveries.
                // The -ERR is only a warning: nats-server still routes the message (a wildcard
                // subject matches subscriptions literally).
                if self.pedantic && !valid_literal_subject(msg.subject()) {
                    self.me.send_err("Invalid Publish Subject");
                }
                // A permissions violation replaces the +OK (nats-server returns before sendOK).
                if self.may_publish(msg.subject()) {
                    self.ok();
                    self.publish(&msg);
                }
            }
            Op::Sub {
                subject,
                queue,
                sid,
            } => self.subscribe(subject, queue, sid),
            Op::Unsub { sid, max } => {
                self.unsubscribe(&sid, max);
                self.ok();
            }
            Op::Ping => {
                self.me.send(b"PONG\r\n");
                if self.connected && self.protocol >= 1 && !self.connect_info_sent {
                    // nats-server follows the first PONG to a protocol-1 client with an async
                    // INFO marked connect_info.
                    self.connect_info_sent = true;
                    self.me.send(self.srv.info_json(&self.me, true).as_bytes());
                }
            }
            Op::Pong => {
                self.me.pings_out.store(0, Ordering::Relaxed);
            }
            Op::Ok | Op::Info => {}
        }
        true
    }

    /// nats-server's log line: `authentication error`, naming the user (never a secret).
    /// `-V`: nats-server's `<<- [OP args]` trace of what the client sent (secrets redacted).
    fn trace_in(&self, op: &Op) {
        let prefix = self.me.log_prefix();
        let line = match op {
            Op::Connect(json) => format!("CONNECT {}", redact_connect(json)),
            Op::Pub(m) => {
                let mut l = String::from(if m.hdr_len().is_some() {
                    "HPUB "
                } else {
                    "PUB "
                });
                l.push_str(&String::from_utf8_lossy(m.subject()));
                if let Some(r) = m.reply() {
                    l.push(' ');
                    l.push_str(&String::from_utf8_lossy(r));
                }
                let (h, n) = m.size_tokens();
                if let Some(h) = h {
                    l.push(' ');
                    l.push_str(&String::from_utf8_lossy(h));
                }
                l.push(' ');
                l.push_str(&String::from_utf8_lossy(n));
                l
            }
            Op::Sub {
                subject,
                queue,
                sid,
            } => match queue {
                Some(q) => format!(
                    "SUB {} {} {}",
                    String::from_utf8_lossy(subject),
                    String::from_utf8_lossy(q),
                    String::from_utf8_lossy(sid)
                ),
                None => format!(
                    "SUB {} {}",
                    String::from_utf8_lossy(subject),
                    String::from_utf8_lossy(sid)
                ),
            },
            Op::Unsub { sid, max } => match max {
                Some(m) => format!("UNSUB {} {m}", String::from_utf8_lossy(sid)),
                None => format!("UNSUB {}", String::from_utf8_lossy(sid)),
            },
            Op::Ping => "PING".into(),
            Op::Pong => "PONG".into(),
            Op::Ok => "+OK".into(),
            Op::Info => "INFO".into(),
        };
        crate::log_trace!("{prefix}<<- [{line}]");
        if let Op::Pub(m) = op {
            crate::log_trace!(
                "{prefix}<<- MSG_PAYLOAD: [{:?}]",
                String::from_utf8_lossy(m.body())
            );
        }
    }

    /// The publish permission check; a violation is reported and the connection stays open.
    fn may_publish(&self, subject: &[u8]) -> bool {
        let Some(p) = self.me.perms.get().and_then(|p| p.publish.as_ref()) else {
            return true;
        };
        if p.allows(subject) {
            return true;
        }
        let subj = String::from_utf8_lossy(subject);
        crate::log_error!(
            "{}{} - Publish Violation - Subject {:?}",
            self.me.log_prefix(),
            self.who,
            subj
        );
        self.me
            .send_err(&format!("Permissions Violation for Publish to {subj:?}"));
        false
    }

    /// The subscribe permission check (allow and deny lists).
    fn may_subscribe(&self, subject: &[u8], queue: Option<&[u8]>, sid: &[u8]) -> bool {
        let Some(p) = self.me.perms.get().and_then(|p| p.subscribe.as_ref()) else {
            return true;
        };
        if p.allows(subject) {
            return true;
        }
        let subj = String::from_utf8_lossy(subject);
        let sid = String::from_utf8_lossy(sid);
        match queue {
            Some(q) => {
                let q = String::from_utf8_lossy(q);
                crate::log_error!(
                    "{}{} - Subscription Violation - Subject {:?}, Queue: {:?}, SID {}",
                    self.me.log_prefix(),
                    self.who,
                    subj,
                    q,
                    sid
                );
                self.me.send_err(&format!(
                    "Permissions Violation for Subscription to {subj:?} using queue {q:?}"
                ));
            }
            None => {
                crate::log_error!(
                    "{}{} - Subscription Violation - Subject {:?}, SID {}",
                    self.me.log_prefix(),
                    self.who,
                    subj,
                    sid
                );
                self.me.send_err(&format!(
                    "Permissions Violation for Subscription to {subj:?}"
                ));
            }
        }
        false
    }

    fn auth_violation(&self, args: Option<&ConnectArgs>) {
        let who = match args {
            Some(a) if a.user.is_some() => {
                format!(" - User {:?}", a.user.as_deref().unwrap_or(""))
            }
            Some(a) if a.auth_token.is_some() => " - Token \"[REDACTED]\"".to_string(),
            _ => String::new(),
        };
        crate::log_error!("{}authentication error{}", self.me.log_prefix(), who);
        self.me
            .send_err_and_close("Authorization Violation", CloseReason::AuthViolation);
    }

    fn connect(&mut self, json: &[u8]) -> bool {
        let args: ConnectArgs = match serde_json::from_slice(json) {
            Ok(a) => a,
            Err(e) => {
                // nats-server logs the JSON decoder's message alone.
                crate::log_error!("{}{}", self.me.log_prefix(), e);
                self.me.close(CloseReason::ParseError);
                return false;
            }
        };
        if !self.connected {
            let grant = match check_auth(&self.opts, &args) {
                Some(g) => g,
                None if self.opts.auth.required() => {
                    self.auth_violation(Some(&args));
                    return false;
                }
                None => Grant::default(),
            };
            if grant.account.is_some() {
                self.acc = self.srv.account(grant.account.as_deref());
                // A different sublist: its generations say nothing about the cache.
                self.cache.clear();
                self.cache_gen = u64::MAX;
            }
            if let Some(p) = &grant.permissions {
                let _ = self.me.perms.set(ClientPerms::new(p));
            }
            self.who = grant.who;
            self.granted = (grant.account, grant.permissions);
            self.creds = Some(ConnectArgs {
                user: args.user.clone(),
                pass: args.pass.clone(),
                auth_token: args.auth_token.clone(),
                ..ConnectArgs::default()
            });
        }
        if let Some(p) = args.protocol {
            if !(0..=1).contains(&p) {
                crate::log_error!("{}invalid client protocol", self.me.log_prefix());
                self.me
                    .send_err_and_close("invalid client protocol", CloseReason::ProtocolViolation);
                return false;
            }
            self.protocol = p;
        }
        self.verbose = args.verbose.unwrap_or(self.verbose);
        self.pedantic = args.pedantic.unwrap_or(self.pedantic);
        self.echo = args.echo.unwrap_or(self.echo);
        self.headers = args.headers.unwrap_or(self.headers);
        self.no_responders = args.no_responders.unwrap_or(self.no_responders);
        if self.no_responders && !self.headers {
            crate::log_error!(
                "{}no responders requires headers support",
                self.me.log_prefix()
            );
            self.me.send_err_and_close(
                "no responders requires headers support",
                CloseReason::ProtocolViolation,
            );
            return false;
        }
        self.me.headers.store(self.headers, Ordering::Relaxed);
        {
            let mut meta = self.me.meta.lock();
            if let Some(n) = args.name {
                meta.name = n;
            }
            if let Some(l) = args.lang {
                meta.lang = l;
            }
            if let Some(v) = args.version {
                meta.version = v;
            }
        }
        self.connected = true;
        self.me.connect_seen.store(true, Ordering::Release);
        self.me.wake.notify_one();
        self.ok();
        true
    }

    fn subscribe(&mut self, subject: Bytes, queue: Option<Bytes>, sid: Bytes) {
        if !self.may_subscribe(&subject, queue.as_deref(), &sid) {
            return;
        }
        let max_subs = self.opts.max_subscriptions;
        let sub = {
            let mut subs = self.me.subs.lock();
            if subs.contains_key(&sid) {
                // nats-server ignores a SUB that reuses a live sid (and still says +OK).
                drop(subs);
                self.ok();
                return;
            }
            if max_subs > 0 && subs.len() >= max_subs {
                drop(subs);
                crate::log_error!("{}maximum subscriptions exceeded", self.me.log_prefix());
                self.me.send_err("maximum subscriptions exceeded");
                return;
            }
            let sub = Arc::new(Subscription {
                client: self.me.clone(),
                sid: sid.clone(),
                subject,
                queue,
                max: AtomicU64::new(0),
                delivered: AtomicU64::new(0),
            });
            if self
                .acc
                .sublist
                .insert(&sub.subject, sub.queue.as_deref(), SubRef(sub.clone()))
                .is_err()
            {
                drop(subs);
                self.me.send_err("Invalid Subject");
                return;
            }
            subs.insert(sid, sub.clone());
            sub
        };
        let _ = sub;
        self.ok();
    }

    fn unsubscribe(&mut self, sid: &[u8], max: Option<u64>) {
        let mut subs = self.me.subs.lock();
        let Some(sub) = subs.get(sid).cloned() else {
            return;
        };
        let delivered = {
            // delivered is written under the out lock.
            let _out = self.me.out.lock();
            sub.delivered.load(Ordering::Relaxed)
        };
        match max {
            Some(m) if m > 0 && m > delivered => sub.max.store(m, Ordering::Relaxed),
            _ => {
                subs.remove(sid);
                drop(subs);
                self.acc
                    .sublist
                    .remove(&sub.subject, sub.queue.as_deref(), &SubRef(sub.clone()));
            }
        }
    }

    /// Routes one published message to every matching subscription.
    fn publish(&mut self, msg: &Msg) {
        let result = self.lookup(msg.subject());
        let mut delivered = false;
        for sub in &result.psubs {
            delivered |= self.deliver(&sub.0, msg);
        }
        for group in &result.qsubs {
            if group.is_empty() {
                continue;
            }
            // One member per group: start at a random member, take the first that accepts.
            let start = (self.next_rand() % group.len() as u64) as usize;
            for i in 0..group.len() {
                let sub = &group[(start + i) % group.len()];
                if self.deliver(&sub.0, msg) {
                    delivered = true;
                    break;
                }
            }
        }
        // nats-server: nothing delivered (no interest, own message with echo off, ...) and the
        // requester asked for it.
        if !delivered && self.no_responders && msg.reply().is_some() {
            self.send_no_responders(msg);
        }
    }

    /// The match result for `subject`, from this client's cache when the sublist is unchanged.
    fn lookup(&mut self, subject: &[u8]) -> Arc<SublistResult<SubRef>> {
        let gen = self.acc.sublist.generation();
        if gen != self.cache_gen {
            self.cache.clear();
            self.cache_gen = gen;
        }
        if let Some(r) = self.cache.get(subject) {
            return r.clone();
        }
        let r = self.acc.sublist.matches(subject);
        if self.cache.len() >= CACHE_MAX {
            self.cache.clear();
        }
        self.cache.insert(subject.into(), r.clone());
        r
    }

    fn next_rand(&mut self) -> u64 {
        // xorshift64: queue member choice needs speed, not quality.
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng = x;
        x
    }

    /// Appends one MSG/HMSG for `sub`. False when the subscription did not take it (own message
    /// with echo off, max reached, closed), so a queue group can try another member.
    fn deliver(&mut self, sub: &Arc<Subscription>, msg: &Msg) -> bool {
        let client = &sub.client;
        let own = Arc::ptr_eq(client, &self.me);
        if own && !self.echo {
            return false;
        }
        // A wildcard subscription never receives subjects its user is denied (nats-server's
        // checkDenySub).
        if let Some(p) = client.perms.get().and_then(|p| p.subscribe.as_ref()) {
            if p.denies(msg.subject()) {
                return false;
            }
        }
        let max = sub.max.load(Ordering::Relaxed);
        let mut hit_max = false;
        {
            let mut out = client.out.lock();
            if out.closed {
                return false;
            }
            let n = sub.delivered.load(Ordering::Relaxed) + 1;
            if max != 0 {
                if n > max {
                    return false;
                }
                hit_max = n == max;
            }
            sub.delivered.store(n, Ordering::Relaxed);
            let body = msg.body();
            let (hdr, body) = match msg.hdr_len() {
                Some(h) if client.headers.load(Ordering::Relaxed) => (Some(h), body),
                // A subscriber without headers support gets the payload only, as nats-server.
                Some(h) => (None, &body[h..]),
                None => (None, body),
            };
            let before = out.buf.len();
            let header_bytes = {
                let b = &mut out.buf;
                b.reserve(msg.subject().len() + sub.sid.len() + 48 + body.len().min(SHARE_MIN));
                b.put_slice(if hdr.is_some() { b"HMSG " } else { b"MSG " });
                b.put_slice(msg.subject());
                b.put_u8(b' ');
                b.put_slice(&sub.sid);
                b.put_u8(b' ');
                if let Some(r) = msg.reply() {
                    b.put_slice(r);
                    b.put_u8(b' ');
                }
                // The sizes as the publisher wrote them (nats-server copies them verbatim), unless
                // the headers were stripped for this subscriber.
                let (hdr_tok, size_tok) = msg.size_tokens();
                if hdr.is_some() {
                    b.put_slice(hdr_tok.unwrap_or_default());
                    b.put_u8(b' ');
                    b.put_slice(size_tok);
                } else if msg.hdr_len().is_none() {
                    b.put_slice(size_tok);
                } else {
                    b.put_slice(itoa::Buffer::new().format(body.len()).as_bytes());
                }
                b.put_slice(b"\r\n");
                b.len() - before
            };
            if body.len() >= SHARE_MIN {
                let head = out.buf.split().freeze();
                out.segs.push(head);
                let start = msg.body().len() - body.len();
                let shared = msg.body_bytes().slice(start..);
                out.segs.push(shared);
            } else {
                out.buf.put_slice(body);
            }
            out.buf.put_slice(b"\r\n");
            let total = header_bytes + body.len() + 2;
            out.pending += total;
            out.out_msgs += 1;
            out.out_bytes += body.len() as u64;
            let max_pending = client.max_pending.load(Ordering::Relaxed);
            if out.pending > max_pending {
                drop(out);
                client.slow_consumer_pending(max_pending);
                return false;
            }
            if out.pending > client.stall_at()
                && !own
                && self.stall.len() < STALL_TRACK
                && !self.stall.iter().any(|c| Arc::ptr_eq(c, client))
            {
                self.stall.push(client.clone());
            }
            if !out.flush_scheduled {
                out.flush_scheduled = true;
                if !own {
                    self.to_wake.push(client.clone());
                }
            }
            self.out_msgs += 1;
            self.out_bytes += body.len() as u64;
        }
        if hit_max {
            let removed = {
                let mut subs = client.subs.lock();
                // Only if the sid still names this subscription (it may have been reused).
                match subs.get(&sub.sid) {
                    Some(s) if Arc::ptr_eq(s, sub) => subs.remove(&sub.sid).is_some(),
                    _ => false,
                }
            };
            if removed {
                self.acc
                    .sublist
                    .remove(&sub.subject, sub.queue.as_deref(), &SubRef(sub.clone()));
            }
        }
        true
    }

    /// `HMSG <reply> <sid> N N\r\nNATS/1.0 503\r\nNats-Subject: <subj>\r\n\r\n\r\n` on this
    /// client's own subscription that matches the reply subject.
    fn send_no_responders(&mut self, msg: &Msg) {
        let Some(reply) = msg.reply() else { return };
        let result = self.acc.sublist.matches(reply);
        let Some(sub) = result
            .psubs
            .iter()
            .find(|s| Arc::ptr_eq(&s.0.client, &self.me))
        else {
            return;
        };
        let mut hdr = Vec::with_capacity(40 + msg.subject().len());
        hdr.extend_from_slice(b"NATS/1.0 503\r\nNats-Subject: ");
        hdr.extend_from_slice(msg.subject());
        hdr.extend_from_slice(b"\r\n\r\n");
        let mut line = Vec::with_capacity(hdr.len() * 2 + 64);
        line.extend_from_slice(b"HMSG ");
        line.extend_from_slice(reply);
        line.push(b' ');
        line.extend_from_slice(&sub.0.sid);
        let n = hdr.len().to_string();
        line.extend_from_slice(format!(" {n} {n}\r\n").as_bytes());
        line.extend_from_slice(&hdr);
        line.extend_from_slice(b"\r\n");
        self.me.send(&line);
    }

    /// Picks up a reloaded configuration (checked once per read batch: one atomic load).
    /// False when the reloaded authorization no longer admits this client (it is then closed).
    fn refresh_options(&mut self) -> bool {
        let gen = self.srv.options_generation();
        if gen == self.opts_gen {
            return true;
        }
        self.opts_gen = gen;
        let old = std::mem::replace(&mut self.opts, self.srv.options());
        self.parser
            .set_limits(self.opts.max_control_line, self.opts.max_payload);
        self.me
            .max_pending
            .store(self.opts.max_pending, Ordering::Relaxed);
        if self.connected && old.auth != self.opts.auth {
            let creds = self.creds.take().unwrap_or_default();
            match check_auth(&self.opts, &creds) {
                None if self.opts.auth.required() => {
                    // nats-server's reloadAuthorization: a client the new rules reject is closed.
                    self.auth_violation(Some(&creds));
                    return false;
                }
                Some(g) if (g.account.clone(), g.permissions.clone()) != self.granted => {
                    // Permissions and accounts are fixed per connection here: rather than keep
                    // serving it with stale (possibly wider) rights, close it; it reconnects and
                    // gets the new ones.
                    crate::log_info!(
                        "{}Closing connection: its account or permissions changed on reload",
                        self.me.log_prefix()
                    );
                    self.me.close(CloseReason::AuthViolation);
                    return false;
                }
                _ => self.creds = Some(creds),
            }
        }
        true
    }

    /// End of one read batch: wake the writers touched, add counters to the server totals.
    fn end_batch(&mut self) {
        for c in self.to_wake.drain(..) {
            if !c.flush_direct() {
                c.wake.notify_one();
            }
        }
        if self.in_msgs > 0 {
            self.me.in_msgs.fetch_add(self.in_msgs, Ordering::Relaxed);
            self.me.in_bytes.fetch_add(self.in_bytes, Ordering::Relaxed);
            self.srv
                .stats
                .in_msgs
                .fetch_add(self.in_msgs, Ordering::Relaxed);
            self.srv
                .stats
                .in_bytes
                .fetch_add(self.in_bytes, Ordering::Relaxed);
            self.in_msgs = 0;
            self.in_bytes = 0;
        }
        if self.out_msgs > 0 {
            self.srv
                .stats
                .out_msgs
                .fetch_add(self.out_msgs, Ordering::Relaxed);
            self.srv
                .stats
                .out_bytes
                .fetch_add(self.out_bytes, Ordering::Relaxed);
            self.out_msgs = 0;
            self.out_bytes = 0;
        }
        // Own output (PONG, +OK, echo) was queued with flush_scheduled set but not woken.
        if !self.me.flush_direct() {
            self.me.wake.notify_one();
        }
    }

    /// Removes every subscription of this connection.
    fn cleanup(&mut self) {
        self.end_batch();
        let subs: Vec<Arc<Subscription>> = self.me.subs.lock().drain().map(|(_, s)| s).collect();
        for sub in subs {
            self.acc
                .sublist
                .remove(&sub.subject, sub.queue.as_deref(), &SubRef(sub.clone()));
        }
        self.cache.clear();
    }
}

/// Checks the CONNECT credentials against `users`, the token, or the single user, in
/// nats-server's order; secrets are compared in constant time (or with bcrypt) and never logged.
/// A client without credentials becomes `no_auth_user` when that is set.
fn check_auth(opts: &Options, args: &ConnectArgs) -> Option<Grant> {
    let auth = &opts.auth;
    if !auth.users.is_empty() {
        let no_creds = args.user.is_none() && args.pass.is_none() && args.auth_token.is_none();
        let (name, pass, check_pass) = match (&auth.no_auth_user, no_creds) {
            (Some(nau), true) => (nau.as_str(), "", false),
            _ => (
                args.user.as_deref().unwrap_or(""),
                args.pass.as_deref().unwrap_or(""),
                true,
            ),
        };
        // User names are not secret (nats-server keeps them in a map and logs them).
        let u = auth.users.iter().find(|u| u.user == name)?;
        if check_pass && !password_matches(pass, &u.password) {
            return None;
        }
        return Some(Grant {
            account: u.account.clone(),
            permissions: u.permissions.clone(),
            who: format!(
                "\"{}/user:{}\"",
                u.account.as_deref().unwrap_or("$G"),
                u.user
            ),
        });
    }
    if let Some(token) = &auth.token {
        let given = args.auth_token.as_deref().unwrap_or("");
        // nats-server verifies a bcrypt-hashed token like a password.
        return password_matches(given, token).then(|| Grant {
            who: "Token \"[REDACTED]\"".into(),
            ..Grant::default()
        });
    }
    if let Some(user) = &auth.user {
        let given_user = args.user.as_deref().unwrap_or("");
        let given_pass = args.pass.as_deref().unwrap_or("");
        let want_pass = auth.password.as_deref().unwrap_or("");
        // Evaluate both compares (no early exit that would reveal which one failed).
        let u = ct_eq(given_user.as_bytes(), user.as_bytes());
        let p = password_matches(given_pass, want_pass);
        return (u & p).then(|| Grant {
            who: format!("\"$G/user:{user}\""),
            ..Grant::default()
        });
    }
    Some(Grant::default())
}

/// nats-server's comparePasswords: a configured `$2a$`/`$2b$`/`$2x$`/`$2y$` value is a bcrypt hash,
/// anything else a plain password compared in constant time.
/// (bcrypt costs tens of ms by design; it runs once per CONNECT.)
fn password_matches(given: &str, configured: &str) -> bool {
    if is_bcrypt(configured) {
        return off_worker(|| bcrypt::verify(given, configured).unwrap_or(false));
    }
    ct_eq(given.as_bytes(), configured.as_bytes())
}

/// Runs `f` (CPU-heavy: a bcrypt verification costs tens of ms) without stalling the other
/// connections served by this runtime worker: on the multi-thread runtime `block_in_place` hands
/// the worker's queued tasks to another thread first. The CONNECT handler is synchronous (it runs
/// inside the parse loop, whose ops must stay in order), so a `spawn_blocking` round trip would
/// need the whole loop to suspend mid-buffer; `block_in_place` gives the same isolation for the
/// other clients while this one, correctly, waits for its own verdict. Outside a multi-thread
/// runtime (unit tests, embedders) it just runs `f`.
fn off_worker<T>(f: impl FnOnce() -> T) -> T {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current() {
        Ok(h) if h.runtime_flavor() == RuntimeFlavor::MultiThread => tokio::task::block_in_place(f),
        _ => f(),
    }
}

/// `^\$2[abxy]\$\d{2}\$`, as nats-server's validBcryptPrefix.
fn is_bcrypt(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() > 7
        && b[0] == b'$'
        && b[1] == b'2'
        && matches!(b[2], b'a' | b'b' | b'x' | b'y')
        && b[3] == b'$'
        && b[4].is_ascii_digit()
        && b[5].is_ascii_digit()
        && b[6] == b'$'
}

fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    // `subtle`'s slice compare returns early on a length mismatch, which only reveals the length.
    a.ct_eq(b).into()
}

/// CONNECT JSON for the trace log with every secret replaced, as nats-server does.
fn redact_connect(json: &[u8]) -> String {
    match serde_json::from_slice::<serde_json::Value>(json) {
        Ok(serde_json::Value::Object(mut m)) => {
            for k in ["pass", "auth_token", "sig", "jwt", "nkey_sig"] {
                if let Some(v) = m.get_mut(k) {
                    *v = serde_json::Value::String("[REDACTED]".into());
                }
            }
            serde_json::Value::Object(m).to_string()
        }
        // Not an object: it will be rejected; don't echo bytes that might hold a secret.
        _ => "[UNPARSABLE]".into(),
    }
}

/// Waits (bounded) for a subscriber's writer to drain below STALL_AT, if it is making progress.
async fn stall_on(c: &ClientShared, deadline: tokio::time::Instant) {
    if c.stall_misses.load(Ordering::Relaxed) >= STALL_GIVE_UP {
        return;
    }
    loop {
        let drained = c.drained.notified();
        tokio::pin!(drained);
        drained.as_mut().enable();
        let pending = c.out.lock().pending;
        let now_ms = c.born.elapsed().as_millis() as u64;
        let blocked = c.writing.load(Ordering::Relaxed)
            && now_ms.saturating_sub(c.last_out_ms.load(Ordering::Relaxed)) > STALL_PROGRESS_MS;
        if pending <= c.stall_at() {
            // Drained in time: a fast consumer that was only momentarily behind.
            if c.stall_misses.load(Ordering::Relaxed) != 0 {
                c.stall_misses.store(0, Ordering::Relaxed);
            }
            return;
        }
        if blocked || c.is_closed() {
            return;
        }
        if tokio::time::timeout_at(deadline, drained).await.is_err() {
            c.stall_misses.fetch_add(1, Ordering::Relaxed);
            return;
        }
    }
}

/// Spins (yielding to the runtime, which polls the socket driver between yields) for up to
/// [`SPIN`] until this reader's socket is readable or the connection closes. At most one reader
/// of the process spins at a time (`SPINNER`), so this costs at most one worker's time for SPIN
/// after the last input anywhere, like Go's scheduler spinning before it parks an idle P.
/// Why: a parked worker thread (and on a VM its idle vCPU) takes tens of µs to wake up, which
/// dominated request/reply latency: with the CPUs kept busy by an unrelated niced spinner natsd's
/// round trip p50 was 0.65× nats-server's, with idle CPUs 1.6×.
async fn spin_for_input(rd: &OwnedReadHalf, me: &ClientShared) {
    if SPINNER
        .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
        .is_err()
    {
        return;
    }
    // Released on drop, so a reader task cancelled mid-spin cannot leave the flag set (which
    // would silently end spinning for the whole process).
    struct Release;
    impl Drop for Release {
        fn drop(&mut self) {
            SPINNER.store(false, Ordering::Release);
        }
    }
    let _release = Release;
    let until = Instant::now() + SPIN;
    loop {
        tokio::task::yield_now().await;
        if me.is_closed() || Instant::now() >= until {
            break;
        }
        // Poll readiness once (the driver set it if the socket became readable meanwhile).
        let ready = tokio::select! {
            biased;
            _ = rd.readable() => true,
            _ = std::future::ready(()) => false,
        };
        if ready {
            break;
        }
    }
}

async fn sleep_until_opt(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// The writer task: flushes the outbound buffer in batches and sends keepalive PINGs.
async fn write_loop(me: Arc<ClientShared>, wr: Arc<OwnedWriteHalf>, srv: Arc<ServerInner>) {
    write_loop_inner(&me, &wr, srv).await;
    // The last reference to the write half is ours now: dropping it sends FIN.
    me.out.lock().wr = None;
}

async fn write_loop_inner(me: &Arc<ClientShared>, wr: &OwnedWriteHalf, srv: Arc<ServerInner>) {
    let mut spare = BytesMut::new();
    let mut segs: Vec<Bytes> = Vec::new();
    let opts = srv.options();
    let mut opts_gen = srv.options_generation();
    let mut ping_interval = opts.ping_interval.max(Duration::from_millis(10));
    let mut ping_max = opts.ping_max;
    let mut write_deadline = opts.write_deadline;
    // nats-server adds up to 20% random delay to the first PING.
    let first = FIRST_PING.min(ping_interval);
    let jitter = (me.born.elapsed().as_nanos() as u64 ^ me.cid.wrapping_mul(0x9E37_79B9_7F4A_7C15))
        % (first.as_nanos() as u64 / 5).max(1);
    // Before CONNECT the timer runs on ping_interval; CONNECT starts the short first one, as
    // nats-server's setFirstPingTimer (a client still authenticating is never pinged).
    let mut next_ping = tokio::time::Instant::now() + ping_interval;
    let mut first_ping_scheduled = false;
    let mut first_ping_done = false;
    loop {
        let (closed, discard) = {
            let mut out = me.out.lock();
            out.flush_scheduled = false;
            std::mem::swap(&mut out.buf, &mut spare);
            std::mem::swap(&mut out.segs, &mut segs);
            out.busy = !spare.is_empty() || !segs.is_empty();
            (out.closed, out.discard)
        };
        if discard {
            return;
        }
        let total: usize = spare.len() + segs.iter().map(|s| s.len()).sum::<usize>();
        if total > 0 {
            let chunks = segs.len() + usize::from(!spare.is_empty());
            me.last_out_ms
                .store(me.born.elapsed().as_millis() as u64, Ordering::Relaxed);
            me.writing.store(true, Ordering::Relaxed);
            let res = tokio::select! {
                r = write_all(wr, &segs, &spare) => r.map_err(Some),
                _ = tokio::time::sleep(write_deadline) => Err(None),
                _ = wait_discard(me) => return,
            };
            match res {
                Ok(()) => {
                    me.writing.store(false, Ordering::Relaxed);
                    let left = {
                        let mut out = me.out.lock();
                        out.pending -= total;
                        out.busy = false;
                        out.pending
                    };
                    if left < me.stall_at() / 2 && me.stall_misses.load(Ordering::Relaxed) != 0 {
                        // Caught up: it may be waited for again.
                        me.stall_misses.store(0, Ordering::Relaxed);
                    }
                    me.drained.notify_waiters();
                }
                Err(None) => {
                    me.stats.slow_consumers.fetch_add(1, Ordering::Relaxed);
                    crate::log_info!(
                        "{}Slow Consumer Detected: WriteDeadline of {} exceeded with {} chunks of {} total bytes.",
                        me.log_prefix(),
                        go_duration(write_deadline),
                        chunks,
                        total
                    );
                    me.close(CloseReason::SlowConsumerWriteDeadline);
                    return;
                }
                Err(Some(_)) => {
                    me.close(CloseReason::WriteError);
                    return;
                }
            }
            segs.clear();
            spare.clear();
            continue;
        }
        if closed {
            // Everything flushed: dropping the write half sends FIN.
            return;
        }
        // Idle: give back burst-sized buffers (both halves of the double buffer).
        if spare.capacity() > IDLE_KEEP {
            spare = BytesMut::new();
        }
        {
            let mut out = me.out.lock();
            if out.buf.is_empty() && out.buf.capacity() > IDLE_KEEP {
                out.buf = BytesMut::new();
            }
        }
        if segs.capacity() > 16 {
            segs = Vec::new();
        }
        // A reload changes the keepalive and the write deadline of running connections too.
        let gen = srv.options_generation();
        if gen != opts_gen {
            opts_gen = gen;
            let o = srv.options();
            if o.ping_interval != ping_interval {
                next_ping =
                    tokio::time::Instant::now() + o.ping_interval.max(Duration::from_millis(10));
            }
            ping_interval = o.ping_interval.max(Duration::from_millis(10));
            ping_max = o.ping_max;
            write_deadline = o.write_deadline;
        }
        if !first_ping_scheduled && me.connect_seen.load(Ordering::Acquire) {
            first_ping_scheduled = true;
            next_ping = tokio::time::Instant::now() + first + Duration::from_nanos(jitter);
        }
        tokio::select! {
            _ = me.wake.notified() => {}
            _ = tokio::time::sleep_until(next_ping) => {
                next_ping = tokio::time::Instant::now() + ping_interval;
                let now_ms = me.born.elapsed().as_millis() as u64;
                let last_in = me.last_in_ms.load(Ordering::Relaxed);
                // Like nats-server: after the first PING, skip PINGs to a client that was active
                // within the interval.
                if first_ping_done && now_ms.saturating_sub(last_in) < ping_interval.as_millis() as u64 {
                    continue;
                }
                first_ping_done = true;
                let out = me.pings_out.fetch_add(1, Ordering::Relaxed);
                if out + 1 > ping_max {
                    crate::log_debug!("{}Stale Client Connection - Closing", me.log_prefix());
                    me.send_err_and_close("Stale Connection", CloseReason::StaleConnection);
                } else {
                    me.send(b"PING\r\n");
                }
            }
        }
    }
}

/// Resolves when the connection is closed with output discarded (a slow consumer elsewhere, an
/// error): a blocked write must not keep the socket open.
async fn wait_discard(me: &ClientShared) {
    loop {
        me.wake.notified().await;
        if me.out.lock().discard {
            return;
        }
    }
}

/// Writes `segs` then `tail` completely: one write when it is all in `tail`, else writev.
async fn write_all(wr: &OwnedWriteHalf, segs: &[Bytes], tail: &[u8]) -> io::Result<()> {
    // Position: part index (segs..., then tail) and offset inside it.
    let parts = segs.len() + 1;
    let part = |i: usize| -> &[u8] {
        if i < segs.len() {
            &segs[i]
        } else {
            tail
        }
    };
    let (mut idx, mut off) = (0usize, 0usize);
    while idx < parts && part(idx).len() == off {
        idx += 1;
        off = 0;
    }
    while idx < parts {
        let written = if idx == parts - 1 {
            try_write(wr, &part(idx)[off..]).await?
        } else {
            let mut iov: Vec<IoSlice<'_>> = Vec::with_capacity(MAX_IOV.min(parts - idx));
            iov.push(IoSlice::new(&part(idx)[off..]));
            for j in idx + 1..parts.min(idx + MAX_IOV) {
                if !part(j).is_empty() {
                    iov.push(IoSlice::new(part(j)));
                }
            }
            loop {
                match wr.try_write_vectored(&iov) {
                    Ok(n) => break n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => wr.writable().await?,
                    Err(e) => return Err(e),
                }
            }
        };
        if written == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        let mut left = written;
        while left > 0 && idx < parts {
            let avail = part(idx).len() - off;
            if left >= avail {
                left -= avail;
                idx += 1;
                off = 0;
            } else {
                off += left;
                left = 0;
            }
        }
        while idx < parts && part(idx).len() == off {
            idx += 1;
            off = 0;
        }
    }
    Ok(())
}

async fn try_write(wr: &OwnedWriteHalf, data: &[u8]) -> io::Result<usize> {
    loop {
        match wr.try_write(data) {
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => wr.writable().await?,
            Err(e) => return Err(e),
        }
    }
}

/// A duration as Go prints it (`10s`, `100ms`, `2m0s`, `1.5s`): nats-server's log lines use it.
pub fn go_duration(d: Duration) -> String {
    let ns = d.as_nanos();
    if ns == 0 {
        return "0s".into();
    }
    let frac = |v: u128, unit: u128, suffix: &str| -> String {
        let whole = v / unit;
        let rest = v % unit;
        if rest == 0 {
            format!("{whole}{suffix}")
        } else {
            let digits = unit.to_string().len() - 1;
            let s = format!("{rest:0digits$}");
            format!("{whole}.{}{suffix}", s.trim_end_matches('0'))
        }
    };
    if ns < 1_000 {
        return format!("{ns}ns");
    }
    if ns < 1_000_000 {
        return frac(ns, 1_000, "µs");
    }
    if ns < 1_000_000_000 {
        return frac(ns, 1_000_000, "ms");
    }
    let secs_total = ns / 1_000_000_000;
    let sub = ns % 1_000_000_000;
    let h = secs_total / 3600;
    let m = (secs_total % 3600) / 60;
    let s = secs_total % 60;
    let secs = frac(s * 1_000_000_000 + sub, 1_000_000_000, "s");
    if h > 0 {
        format!("{h}h{m}m{secs}")
    } else if m > 0 {
        format!("{m}m{secs}")
    } else {
        secs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_redacts_secrets() {
        let t = redact_connect(
            br#"{"user":"derek","pass":"hunter2","auth_token":"tok","verbose":false}"#,
        );
        assert!(!t.contains("hunter2") && !t.contains("tok\""), "{t}");
        assert!(
            t.contains("\"user\":\"derek\"") && t.contains("[REDACTED]"),
            "{t}"
        );
        assert_eq!(redact_connect(b"{not json"), "[UNPARSABLE]");
    }

    #[test]
    fn go_durations() {
        assert_eq!(go_duration(Duration::from_secs(10)), "10s");
        assert_eq!(go_duration(Duration::from_millis(100)), "100ms");
        assert_eq!(go_duration(Duration::from_secs(120)), "2m0s");
        assert_eq!(go_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(go_duration(Duration::from_secs(3723)), "1h2m3s");
        assert_eq!(go_duration(Duration::ZERO), "0s");
    }

    #[test]
    fn auth_compares() {
        let mut o = Options::default();
        let args = |tok: Option<&str>, u: Option<&str>, p: Option<&str>| ConnectArgs {
            auth_token: tok.map(String::from),
            user: u.map(String::from),
            pass: p.map(String::from),
            ..Default::default()
        };
        let check_auth = |o: &Options, a: &ConnectArgs| super::check_auth(o, a).is_some();
        assert!(check_auth(&o, &args(None, None, None)));
        o.auth.token = Some("s3cr3t".into());
        assert!(check_auth(&o, &args(Some("s3cr3t"), None, None)));
        assert!(!check_auth(&o, &args(Some("s3cr3"), None, None)));
        assert!(!check_auth(&o, &args(None, None, None)));
        o.auth.token = None;
        o.auth.user = Some("derek".into());
        o.auth.password = Some("pw".into());
        assert!(check_auth(&o, &args(None, Some("derek"), Some("pw"))));
        assert!(!check_auth(&o, &args(None, Some("derek"), Some("px"))));
        assert!(!check_auth(&o, &args(None, Some("dere"), Some("pw"))));
        // A bcrypt hash (cost 4) of "pw", as `nats server passwd` would write it.
        let hash = bcrypt::hash_with_salt("pw", 4, [7u8; 16])
            .unwrap()
            .format_for_version(bcrypt::Version::TwoA);
        assert!(is_bcrypt(&hash), "{hash}");
        o.auth.password = Some(hash);
        assert!(check_auth(&o, &args(None, Some("derek"), Some("pw"))));
        assert!(!check_auth(&o, &args(None, Some("derek"), Some("px"))));
    }
}
