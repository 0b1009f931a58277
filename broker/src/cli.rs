//! nats-server's command-line flags, parsed the way Go's `flag` package does.
//!
//! Why hand-written and not clap: client test harnesses launch the server with Go-style flags,
//! where a single dash may start a long name (`-js`, `-sd=DIR`, `-DV`, `-DVV`, `-ms`, `-sl`) and
//! `-p -1` means "port -1". clap treats `-js` as the two short flags `-j -s` and `-1` as a flag;
//! bending it to Go's rules would take more code than this table. The rules here are Go's:
//! `-name`, `--name`, `-name=value`, `-name value` (non-boolean flags only; booleans take
//! `-name=false`), parsing stops at `--` or the first non-flag argument.
//!
//! The result, [`Cli`], is applied on top of the config file ([`Cli::apply`]), so a flag always
//! wins over the same setting in the file.

use std::fmt;
use std::path::PathBuf;

use crate::options::Options;

/// Everything the command line said. `None` = flag not given (the config file or default stands).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Cli {
    pub config: Option<PathBuf>,
    /// `-t`: check the config and exit.
    pub check_config: bool,
    /// `--signal cmd[=pid|pidfile]`, unparsed (see `signals::send`).
    pub signal: Option<String>,
    pub show_version: bool,
    pub show_help: bool,
    pub show_help_tls: bool,

    pub host: Option<String>,
    pub port: Option<i32>,
    pub http_port: Option<i32>,
    pub server_name: Option<String>,
    pub pid_file: Option<PathBuf>,
    pub log_file: Option<PathBuf>,
    pub user: Option<String>,
    pub pass: Option<String>,
    pub token: Option<String>,
    pub debug: Option<bool>,
    pub trace: Option<bool>,
    pub logtime: Option<bool>,
    pub logtime_utc: Option<bool>,
    pub syslog: Option<bool>,

    /// Flags accepted but without effect in natsd (JetStream, cluster, ...): log as `[WRN]`.
    pub warnings: Vec<String>,
    /// Security flags natsd cannot honour (TLS): fatal, never serve open instead.
    pub unsupported: Vec<String>,
}

/// A command line that cannot be understood. Printed as `<prog>: <message>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CliError(pub String);

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CliError {}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Bool,
    Value,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Flag {
    Host,
    Port,
    HttpPort,
    HttpsPort,
    Name,
    Pid,
    Config,
    Check,
    Signal,
    Log,
    LogTime,
    LogTimeUtc,
    Syslog,
    RemoteSyslog,
    Debug,
    Trace,
    TraceVerbose,
    DebugTrace,
    DebugTraceVerbose,
    User,
    Pass,
    Auth,
    Help,
    HelpTls,
    Version,
    /// TLS: natsd has none yet, so asking for it is fatal.
    Tls(&'static str),
    TlsBool(&'static str),
    /// Accepted for harness compatibility, ignored with a warning: (flag, feature).
    Ignored(&'static str),
    IgnoredBool(&'static str),
}

/// Every flag nats-server 2.x accepts, by every name it has.
fn lookup(name: &str) -> Option<(Flag, Kind)> {
    use Flag::*;
    use Kind::*;
    Some(match name {
        "a" | "addr" | "net" => (Host, Value),
        "p" | "port" => (Port, Value),
        "m" | "http_port" => (HttpPort, Value),
        "ms" | "https_port" => (HttpsPort, Value),
        "n" | "name" | "server_name" => (Name, Value),
        "P" | "pid" => (Pid, Value),
        "c" | "config" => (Config, Value),
        "t" => (Check, Bool),
        "sl" | "signal" => (Signal, Value),
        "l" | "log" => (Log, Value),
        "T" | "logtime" => (LogTime, Bool),
        "logtime_utc" => (LogTimeUtc, Bool),
        "s" | "syslog" => (Syslog, Bool),
        "r" | "remote_syslog" => (RemoteSyslog, Value),
        "D" | "debug" => (Debug, Bool),
        "V" | "trace" => (Trace, Bool),
        "VV" => (TraceVerbose, Bool),
        "DV" => (DebugTrace, Bool),
        "DVV" => (DebugTraceVerbose, Bool),
        "user" => (User, Value),
        "pass" => (Pass, Value),
        "auth" => (Auth, Value),
        "h" | "help" => (Help, Bool),
        "help_tls" => (HelpTls, Bool),
        "v" | "version" => (Version, Bool),
        "tls" => (TlsBool("--tls"), Bool),
        "tlsverify" => (TlsBool("--tlsverify"), Bool),
        "tlscert" => (Tls("--tlscert"), Value),
        "tlskey" => (Tls("--tlskey"), Value),
        "tlscacert" => (Tls("--tlscacert"), Value),
        "js" | "jetstream" => (IgnoredBool("JetStream (--jetstream)"), Bool),
        "sd" | "store_dir" => (Ignored("JetStream (--store_dir)"), Value),
        "routes" => (Ignored("clustering (--routes)"), Value),
        "cluster" => (Ignored("clustering (--cluster)"), Value),
        "cluster_name" => (Ignored("clustering (--cluster_name)"), Value),
        "cluster_listen" => (Ignored("clustering (--cluster_listen)"), Value),
        "cluster_advertise" => (Ignored("clustering (--cluster_advertise)"), Value),
        "connect_retries" => (Ignored("clustering (--connect_retries)"), Value),
        "no_advertise" => (IgnoredBool("clustering (--no_advertise)"), Bool),
        "client_advertise" => (Ignored("client advertise (--client_advertise)"), Value),
        "ports_file_dir" => (Ignored("the ports file (--ports_file_dir)"), Value),
        "profile" => (Ignored("profiling (--profile)"), Value),
        "log_size_limit" => (Ignored("log rotation by size (--log_size_limit)"), Value),
        "max_traced_msg_len" => (Ignored("trace length limits (--max_traced_msg_len)"), Value),
        _ => return None,
    })
}

/// Go's `strconv.ParseBool`.
fn parse_go_bool(flag: &str, v: &str) -> Result<bool, CliError> {
    match v {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
        _ => Err(CliError(format!(
            "invalid boolean value \"{}\" for -{}: use -{}=true or -{}=false",
            v, flag, flag, flag
        ))),
    }
}

fn parse_port(flag: &str, v: &str) -> Result<i32, CliError> {
    v.parse::<i32>()
        .ok()
        .filter(|p| (-1..=65535).contains(p))
        .ok_or_else(|| {
            CliError(format!(
                "invalid value \"{}\" for flag -{}: use a port from 0 to 65535, or -1 for a random port",
                v, flag
            ))
        })
}

/// Parses the arguments after the program name.
pub fn parse<I, S>(args: I) -> Result<Cli, CliError>
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    let args: Vec<String> = args.into_iter().map(Into::into).collect();
    let mut cli = Cli::default();
    let mut i = 0;
    while i < args.len() {
        let arg = &args[i];
        i += 1;
        if arg == "--" {
            break;
        }
        let body = match arg.strip_prefix("--").or_else(|| arg.strip_prefix('-')) {
            Some(b) if !b.is_empty() && !arg.starts_with("---") => b,
            _ => {
                // The first non-flag ends the flags; nats-server calls the rest "commands".
                i -= 1;
                break;
            }
        };
        let (name, inline) = match body.split_once('=') {
            Some((n, v)) => (n, Some(v.to_string())),
            None => (body, None),
        };
        let Some((flag, kind)) = lookup(name) else {
            return Err(CliError(format!(
                "flag provided but not defined: -{}\nRun with --help to list the flags.",
                name
            )));
        };
        let value = match kind {
            Kind::Bool => match &inline {
                Some(v) => {
                    if parse_go_bool(name, v)? {
                        "true".to_string()
                    } else {
                        "false".to_string()
                    }
                }
                None => "true".to_string(),
            },
            Kind::Value => match inline {
                Some(v) => v,
                None => {
                    let Some(v) = args.get(i) else {
                        return Err(CliError(format!("flag needs an argument: -{}", name)));
                    };
                    i += 1;
                    v.clone()
                }
            },
        };
        let on = value == "true";
        set(&mut cli, flag, name, value, on)?;
    }
    if let Some(extra) = args.get(i) {
        return Err(CliError(format!(
            "unrecognized command: \"{}\"; natsd takes only flags (see --help)",
            extra
        )));
    }
    Ok(cli)
}

fn set(cli: &mut Cli, flag: Flag, name: &str, value: String, on: bool) -> Result<(), CliError> {
    use Flag::*;
    match flag {
        Host => cli.host = Some(value),
        Port => cli.port = Some(parse_port(name, &value)?),
        HttpPort => {
            cli.http_port = Some(parse_port(name, &value)?);
            cli.warnings.push(
                "HTTP monitoring (-m/--http_port) is not available in natsd yet; the flag is ignored"
                    .to_string(),
            );
        }
        HttpsPort => {
            parse_port(name, &value)?;
            cli.warnings.push(
                "HTTPS monitoring (-ms/--https_port) is not available in natsd yet; the flag is ignored"
                    .to_string(),
            );
        }
        Name => cli.server_name = Some(value),
        Pid => cli.pid_file = Some(PathBuf::from(value)),
        Config => cli.config = Some(PathBuf::from(value)),
        Check => cli.check_config = on,
        Signal => cli.signal = Some(value),
        Log => cli.log_file = Some(PathBuf::from(value)),
        LogTime => cli.logtime = Some(on),
        LogTimeUtc => cli.logtime_utc = Some(on),
        Syslog => cli.syslog = Some(on),
        RemoteSyslog => cli.warnings.push(
            "remote syslog (-r/--remote_syslog) is not available in natsd yet; logging locally"
                .to_string(),
        ),
        Debug => cli.debug = Some(on),
        Trace | TraceVerbose => cli.trace = Some(on),
        DebugTrace | DebugTraceVerbose => {
            cli.debug = Some(on);
            cli.trace = Some(on);
        }
        User => cli.user = Some(value),
        Pass => cli.pass = Some(value),
        Auth => cli.token = Some(value),
        Help => cli.show_help = on,
        HelpTls => cli.show_help_tls = on,
        Version => cli.show_version = on,
        Tls(f) => cli.unsupported.push(f.to_string()),
        TlsBool(f) => {
            if on {
                cli.unsupported.push(f.to_string());
            }
        }
        Ignored(what) => cli.warnings.push(format!(
            "{} is ignored: the feature is not available in natsd yet",
            what
        )),
        IgnoredBool(what) => {
            if on {
                cli.warnings.push(format!(
                    "{} is ignored: the feature is not available in natsd yet",
                    what
                ));
            }
        }
    }
    Ok(())
}

impl Cli {
    /// The fatal reason when a TLS flag was given, naming the flags.
    pub fn unsupported_reason(&self) -> Option<String> {
        if self.unsupported.is_empty() {
            return None;
        }
        Some(format!(
            "TLS is not supported by natsd yet ({} given); refusing to start rather than serve clients without TLS",
            self.unsupported.join(", ")
        ))
    }

    /// Lays the flags over `opts` (defaults + config file). Flags always win.
    pub fn apply(&self, opts: &mut Options) {
        if let Some(h) = &self.host {
            opts.host = h.clone();
        }
        if let Some(p) = self.port {
            opts.port = p;
        }
        if let Some(p) = self.http_port {
            opts.http_port = Some(p);
        }
        if let Some(n) = &self.server_name {
            opts.server_name = Some(n.clone());
        }
        if let Some(p) = &self.pid_file {
            opts.pid_file = Some(p.clone());
        }
        if let Some(l) = &self.log_file {
            opts.log_file = Some(l.clone());
        }
        if let Some(c) = &self.config {
            opts.config_file = Some(c.clone());
        }
        // --user/--pass/--auth replace whatever authorization the file had, as in nats-server.
        if self.user.is_some() || self.pass.is_some() {
            opts.auth.token = None;
            opts.auth.user = self.user.clone().or(opts.auth.user.take());
            opts.auth.password = self.pass.clone().or(opts.auth.password.take());
        }
        if let Some(t) = &self.token {
            opts.auth.token = Some(t.clone());
            opts.auth.user = None;
            opts.auth.password = None;
        }
        let set = |dst: &mut bool, src: Option<bool>| {
            if let Some(v) = src {
                *dst = v;
            }
        };
        set(&mut opts.debug, self.debug);
        set(&mut opts.trace, self.trace);
        set(&mut opts.logtime, self.logtime);
        set(&mut opts.logtime_utc, self.logtime_utc);
        set(&mut opts.syslog, self.syslog);
    }

    /// Checks the combination of flags that no single flag can: returned as a usage error.
    pub fn validate(&self) -> Result<(), CliError> {
        if self.check_config && self.config.is_none() {
            return Err(CliError(
                "must specify [-c, --config] option to check configuration file syntax".to_string(),
            ));
        }
        if self.user.is_some() != self.pass.is_some() {
            return Err(CliError(
                "--user and --pass must be given together".to_string(),
            ));
        }
        if self.token.is_some() && self.user.is_some() {
            return Err(CliError(
                "--auth (token) cannot be combined with --user/--pass; use one".to_string(),
            ));
        }
        Ok(())
    }
}

/// `-h` output: nats-server's flags, marking the ones natsd accepts without acting on them.
pub const USAGE: &str = "
Usage: natsd [options]

Server Options:
    -a, --addr, --net <host>         Bind to host address (default: 0.0.0.0)
    -p, --port <port>                Use port for clients (default: 4222, -1 = random)
    -n, --name
        --server_name <server_name>  Server name (default: auto)
    -P, --pid <file>                 File to store PID
    -m, --http_port <port>           Use port for http monitoring (not available yet)
    -c, --config <file>              Configuration file
    -t                               Test configuration and exit
    -sl,--signal <signal>[=<pid>]    Send signal to natsd process (ldm, stop, quit, term, reopen, reload)
                                     <pid> can be either a PID (e.g. 1) or the path to a PID file (e.g. /var/run/nats.pid)

Logging Options:
    -l, --log <file>                 File to redirect log output
    -T, --logtime                    Timestamp log entries (default: true)
        --logtime_utc                Timestamps in UTC instead of local timezone (default: false)
    -s, --syslog                     Log to syslog
    -D, --debug                      Enable debugging output
    -V, --trace                      Trace the raw protocol
    -DV                              Debug and trace

Authorization Options:
        --user <user>                User required for connections
        --pass <password>            Password required for connections
        --auth <token>               Authorization token required for connections

Accepted for compatibility, not available in natsd yet (a warning is logged):
    -js, --jetstream, -sd, --store_dir, --routes, --cluster, --cluster_name, --cluster_listen,
    -r, --remote_syslog, -ms, --https_port
TLS flags (--tls, --tlscert, --tlskey, --tlsverify, --tlscacert) are refused: natsd has no TLS yet.

Common Options:
    -h, --help                       Show this message
    -v, --version                    Show version
";

#[cfg(test)]
mod tests {
    use super::*;

    fn p(args: &[&str]) -> Result<Cli, CliError> {
        parse(args.iter().copied())
    }

    #[test]
    fn go_flag_syntax_forms() {
        for args in [
            &["-p", "4333"][..],
            &["-p=4333"],
            &["--port", "4333"],
            &["--port=4333"],
        ] {
            assert_eq!(p(args).unwrap().port, Some(4333), "{:?}", args);
        }
        assert_eq!(p(&["-p", "-1"]).unwrap().port, Some(-1));
        assert_eq!(p(&["-p=-1"]).unwrap().port, Some(-1));
    }

    #[test]
    fn all_server_names() {
        let c = p(&[
            "-a", "::1", "-n", "x", "-P", "/tmp/p", "-c", "f.conf", "-l", "/tmp/l", "--user", "u",
            "--pass", "pw",
        ])
        .unwrap();
        assert_eq!(c.host.as_deref(), Some("::1"));
        assert_eq!(c.server_name.as_deref(), Some("x"));
        assert_eq!(c.pid_file, Some("/tmp/p".into()));
        assert_eq!(c.config, Some("f.conf".into()));
        assert_eq!(c.log_file, Some("/tmp/l".into()));
        assert_eq!(
            (c.user.as_deref(), c.pass.as_deref()),
            (Some("u"), Some("pw"))
        );
        assert_eq!(p(&["--addr", "h"]).unwrap().host.as_deref(), Some("h"));
        assert_eq!(p(&["--net", "h"]).unwrap().host.as_deref(), Some("h"));
        assert_eq!(
            p(&["--server_name", "s"]).unwrap().server_name.as_deref(),
            Some("s")
        );
        assert_eq!(
            p(&["--name", "s"]).unwrap().server_name.as_deref(),
            Some("s")
        );
        assert_eq!(p(&["--auth", "tok"]).unwrap().token.as_deref(), Some("tok"));
    }

    #[test]
    fn single_dash_long_flags() {
        let c = p(&["-DV"]).unwrap();
        assert_eq!((c.debug, c.trace), (Some(true), Some(true)));
        let c = p(&["-DVV"]).unwrap();
        assert_eq!((c.debug, c.trace), (Some(true), Some(true)));
        let c = p(&["-VV"]).unwrap();
        assert_eq!((c.debug, c.trace), (None, Some(true)));
        let c = p(&["-js", "-sd=/tmp/js", "--store_dir", "/x"]).unwrap();
        assert_eq!(c.warnings.len(), 3);
        assert!(c.warnings[0].contains("JetStream"));
        assert!(c.unsupported.is_empty());
    }

    #[test]
    fn booleans_take_only_inline_values() {
        let c = p(&["-T=false", "-D=true", "-s"]).unwrap();
        assert_eq!(c.logtime, Some(false));
        assert_eq!(c.debug, Some(true));
        assert_eq!(c.syslog, Some(true));
        // `-D false`: "false" is not a flag value, so it ends the flags as a stray command.
        assert!(p(&["-D", "false"])
            .unwrap_err()
            .0
            .contains("unrecognized command"));
        assert!(p(&["-D=maybe"]).is_err());
        assert_eq!(p(&["-js=false"]).unwrap().warnings.len(), 0);
    }

    #[test]
    fn cluster_flags_warn() {
        let c = p(&[
            "--cluster",
            "nats://127.0.0.1:6222",
            "--routes",
            "nats://a:1,nats://b:2",
            "--cluster_name",
            "c",
            "--cluster_listen",
            "nats://0.0.0.0:6222",
        ])
        .unwrap();
        assert_eq!(c.warnings.len(), 4);
        assert!(c.warnings.iter().all(|w| w.contains("clustering")));
    }

    #[test]
    fn tls_flags_are_fatal_and_named() {
        let c = p(&[
            "--tls",
            "--tlscert",
            "c.pem",
            "--tlskey",
            "k.pem",
            "--tlsverify",
            "--tlscacert",
            "ca.pem",
        ])
        .unwrap();
        let r = c.unsupported_reason().unwrap();
        for f in [
            "--tls",
            "--tlscert",
            "--tlskey",
            "--tlsverify",
            "--tlscacert",
        ] {
            assert!(r.contains(f), "{}", r);
        }
        assert!(p(&["--tls=false"]).unwrap().unsupported_reason().is_none());
        assert!(p(&["-p", "1"]).unwrap().unsupported_reason().is_none());
    }

    #[test]
    fn signal_check_version_help() {
        let c = p(&["--signal", "reload=/var/run/nats.pid"]).unwrap();
        assert_eq!(c.signal.as_deref(), Some("reload=/var/run/nats.pid"));
        // Only the first '=' separates a flag from its value.
        let c = p(&["-sl=ldm=/var/run/nats.pid"]).unwrap();
        assert_eq!(c.signal.as_deref(), Some("ldm=/var/run/nats.pid"));
        assert!(p(&["-t", "-c", "x.conf"]).unwrap().check_config);
        assert!(p(&["-v"]).unwrap().show_version);
        assert!(p(&["--version"]).unwrap().show_version);
        assert!(p(&["-h"]).unwrap().show_help);
    }

    #[test]
    fn errors() {
        assert!(p(&["--bogus"])
            .unwrap_err()
            .0
            .starts_with("flag provided but not defined: -bogus"));
        assert_eq!(p(&["-p"]).unwrap_err().0, "flag needs an argument: -p");
        assert!(p(&["-p", "abc"])
            .unwrap_err()
            .0
            .contains("invalid value \"abc\" for flag -p"));
        assert!(p(&["-p", "70000"]).is_err());
        assert!(p(&["-l", "-a", "127.0.0.1"])
            .unwrap_err()
            .0
            .contains("unrecognized command"));
        assert!(p(&["-t"])
            .unwrap()
            .validate()
            .unwrap_err()
            .0
            .contains("must specify [-c"));
        assert!(p(&["--user", "u"]).unwrap().validate().is_err());
        // After `--` everything is a positional argument, which natsd does not take.
        assert!(p(&["--", "-p", "1"])
            .unwrap_err()
            .0
            .contains("unrecognized command: \"-p\""));
        assert_eq!(p(&["--"]).unwrap(), Cli::default());
    }

    #[test]
    fn flags_override_the_config_file() {
        let tree = crate::conf::parse_str(
            "listen: 127.0.0.2:4333\nserver_name: file\nauthorization { token: filetok }\ndebug: true\n",
            "t.conf",
        )
        .unwrap();
        let mut o = Options::default();
        crate::conf::apply(&tree, &mut o).unwrap();
        let c = p(&[
            "-c", "t.conf", "-p", "-1", "--user", "u", "--pass", "pw", "-D=false",
        ])
        .unwrap();
        c.apply(&mut o);
        assert_eq!(o.host, "127.0.0.2");
        assert_eq!(o.port, -1);
        assert_eq!(o.server_name.as_deref(), Some("file"));
        assert_eq!(o.auth.token, None);
        assert_eq!(o.auth.user.as_deref(), Some("u"));
        assert_eq!(o.auth.password.as_deref(), Some("pw"));
        assert!(!o.debug);
        assert_eq!(o.config_file, Some("t.conf".into()));
    }

    proptest::proptest! {
        #[test]
        fn never_panics(args in proptest::collection::vec("-{0,3}[a-zA-Z=0-9_./-]{0,12}", 0..8)) {
            if let Ok(c) = parse(args) {
                let _ = c.validate();
                c.apply(&mut Options::default());
            }
        }
    }
}
