//! Every setting natsd understands, with nats-server's defaults.
//!
//! One `Options` value is built at start-up from three layers, lowest first: these defaults, the
//! config file (`conf.rs`), then the command-line flags (`cli.rs`). The server only ever reads an
//! `Options`; it never looks at flags or files itself, so SIGHUP reload is "build a new Options and
//! hand it over".

use std::path::PathBuf;
use std::time::Duration;

/// Default client port, as nats-server.
pub const DEFAULT_PORT: u16 = 4222;
/// Default largest message payload (1 MiB).
pub const DEFAULT_MAX_PAYLOAD: usize = 1024 * 1024;
/// Default longest control line (4 KiB).
pub const DEFAULT_MAX_CONTROL_LINE: usize = 4096;
/// Default most client connections.
pub const DEFAULT_MAX_CONNECTIONS: usize = 64 * 1024;
/// Default most pending outbound bytes per client before it is a slow consumer (64 MiB).
pub const DEFAULT_MAX_PENDING: usize = 64 * 1024 * 1024;

#[derive(Clone, Debug, PartialEq)]
pub struct Options {
    /// `-c`: the config file this Options was read from, kept for reload.
    pub config_file: Option<PathBuf>,
    /// `-n` / `server_name`. None = use the server id, as nats-server.
    pub server_name: Option<String>,
    /// `-a` / `host` / `listen` host part.
    pub host: String,
    /// `-p` / `port`. -1 = pick a random free port.
    pub port: i32,
    /// `-m` / `http_port`: monitoring; stored so it can be reported, served by a later issue.
    pub http_host: Option<String>,
    pub http_port: Option<i32>,

    pub max_payload: usize,
    pub max_control_line: usize,
    pub max_connections: usize,
    /// 0 = unlimited.
    pub max_subscriptions: usize,
    pub max_pending: usize,
    pub write_deadline: Duration,
    pub ping_interval: Duration,
    pub ping_max: u32,

    pub auth: Auth,

    /// `-l` / `log_file`.
    pub log_file: Option<PathBuf>,
    /// `-s` / `syslog`.
    pub syslog: bool,
    /// `-D` / `debug`.
    pub debug: bool,
    /// `-V` / `trace`.
    pub trace: bool,
    /// `-T` / `logtime` (default true).
    pub logtime: bool,
    /// `--logtime_utc`.
    pub logtime_utc: bool,
    /// `-P` / `pid_file`.
    pub pid_file: Option<PathBuf>,

    pub lame_duck_duration: Duration,
    pub lame_duck_grace_period: Duration,
}

/// `--user/--pass`, `--auth`, or `authorization { }` in the config file.
#[derive(Clone, Default, PartialEq)]
pub struct Auth {
    pub token: Option<String>,
    pub user: Option<String>,
    pub password: Option<String>,
    /// `authorization { timeout }`: how long a client may take to send CONNECT.
    pub timeout: Duration,
    /// `authorization { users = [...] }` plus the users of `accounts { A { users = [...] } }`
    /// (those carry `account`). Passwords may be bcrypt hashes.
    pub users: Vec<User>,
    /// `no_auth_user`: the user a client that sends no credentials becomes.
    pub no_auth_user: Option<String>,
}

/// One entry of a `users` list.
#[derive(Clone, Default, PartialEq)]
pub struct User {
    pub user: String,
    pub password: String,
    /// The account (from `accounts { NAME { users } }`); None = the global account.
    pub account: Option<String>,
    pub permissions: Option<Permissions>,
}

impl std::fmt::Debug for User {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("User")
            .field("user", &self.user)
            .field("password", &"[REDACTED]")
            .field("account", &self.account)
            .field("permissions", &self.permissions)
            .finish()
    }
}

/// `permissions { publish = ..., subscribe = ... }`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Permissions {
    pub publish: Option<SubjectPermission>,
    pub subscribe: Option<SubjectPermission>,
}

/// `["a.>"]` (= allow) or `{ allow = [...], deny = [...] }`. An empty `allow` with a `deny`
/// list allows everything not denied, as nats-server.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SubjectPermission {
    pub allow: Vec<String>,
    pub deny: Vec<String>,
}

// Never print secrets, not even in a Debug dump of the options.
impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("token", &self.token.as_ref().map(|_| "[REDACTED]"))
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "[REDACTED]"))
            .field("timeout", &self.timeout)
            .field("users", &self.users)
            .field("no_auth_user", &self.no_auth_user)
            .finish()
    }
}

impl Auth {
    /// True when clients must authenticate.
    pub fn required(&self) -> bool {
        self.token.is_some() || self.user.is_some() || !self.users.is_empty()
    }
}

impl Default for Options {
    fn default() -> Self {
        Options {
            config_file: None,
            server_name: None,
            host: "0.0.0.0".to_string(),
            port: DEFAULT_PORT as i32,
            http_host: None,
            http_port: None,
            max_payload: DEFAULT_MAX_PAYLOAD,
            max_control_line: DEFAULT_MAX_CONTROL_LINE,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_subscriptions: 0,
            max_pending: DEFAULT_MAX_PENDING,
            write_deadline: Duration::from_secs(10),
            ping_interval: Duration::from_secs(120),
            ping_max: 2,
            auth: Auth {
                timeout: Duration::from_secs(2),
                ..Auth::default()
            },
            log_file: None,
            syslog: false,
            debug: false,
            trace: false,
            logtime: true,
            logtime_utc: false,
            pid_file: None,
            lame_duck_duration: Duration::from_secs(120),
            lame_duck_grace_period: Duration::from_secs(10),
        }
    }
}
