//! Log lines in nats-server's exact form: `[pid] 2026/12/03 20:17:23.264334 [INF] message`.
//!
//! Scripts and client test harnesses read these lines (port discovery, readiness), so the shape is
//! part of natsd's interface. One global logger; the macros below are the only way code logs.
//! Targets: stderr (default), a file (`-l`, appended to, reopened on SIGUSR1 for rotation), or
//! syslog (`-s`, facility daemon, tagged with the program name as nats-server does).
//! With `logtime: false` the time is left out: `[pid] [INF] message`.
//! Never pass a secret to these macros.

use std::ffi::CString;
use std::fmt::{self, Write as _};
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::OnceLock;

use parking_lot::Mutex;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum Level {
    Fatal = 0,
    Error = 1,
    Warn = 2,
    Info = 3,
    Debug = 4,
    Trace = 5,
}

impl Level {
    /// The three-letter tag nats-server prints.
    pub fn tag(self) -> &'static str {
        match self {
            Level::Fatal => "[FTL]",
            Level::Error => "[ERR]",
            Level::Warn => "[WRN]",
            Level::Info => "[INF]",
            Level::Debug => "[DBG]",
            Level::Trace => "[TRC]",
        }
    }

    /// nats-server's syslog priorities (trace goes out as notice, like info).
    fn syslog_priority(self) -> libc::c_int {
        match self {
            Level::Fatal => libc::LOG_CRIT,
            Level::Error => libc::LOG_ERR,
            Level::Warn => libc::LOG_WARNING,
            Level::Info | Level::Trace => libc::LOG_NOTICE,
            Level::Debug => libc::LOG_DEBUG,
        }
    }
}

static MAX_LEVEL: AtomicU8 = AtomicU8::new(Level::Info as u8);

/// Cheap check for the hot path: build a debug/trace line only when it will be printed.
#[inline]
pub fn enabled(level: Level) -> bool {
    level as u8 <= MAX_LEVEL.load(Ordering::Relaxed)
}

/// Sets the most verbose level printed (`-D` = Debug, `-V` = Trace).
pub fn set_max_level(level: Level) {
    MAX_LEVEL.store(level as u8, Ordering::Relaxed);
}

/// How and where to log; built from Options by [`Config::from_options`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    pub file: Option<PathBuf>,
    pub syslog: bool,
    pub logtime: bool,
    pub utc: bool,
    pub debug: bool,
    pub trace: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            file: None,
            syslog: false,
            logtime: true,
            utc: false,
            debug: false,
            trace: false,
        }
    }
}

impl Config {
    pub fn from_options(o: &crate::options::Options) -> Self {
        Config {
            file: o.log_file.clone(),
            syslog: o.syslog,
            logtime: o.logtime,
            utc: o.logtime_utc,
            debug: o.debug,
            trace: o.trace,
        }
    }

    fn max_level(&self) -> Level {
        if self.trace {
            Level::Trace
        } else if self.debug {
            Level::Debug
        } else {
            Level::Info
        }
    }
}

enum Sink {
    Stderr,
    File { path: PathBuf, file: File },
    Syslog,
}

struct Logger {
    sink: Sink,
    logtime: bool,
    utc: bool,
}

fn logger() -> &'static Mutex<Logger> {
    static LOGGER: OnceLock<Mutex<Logger>> = OnceLock::new();
    LOGGER.get_or_init(|| {
        Mutex::new(Logger {
            sink: Sink::Stderr,
            logtime: true,
            utc: false,
        })
    })
}

fn open_append(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o640)
        .open(path)
}

/// syslog(3) keeps the ident pointer, so it must live for the whole process.
fn open_syslog() {
    static IDENT: OnceLock<CString> = OnceLock::new();
    let ident = IDENT.get_or_init(|| {
        // nats-server tags with the executable's base name; so does natsd.
        let name = std::env::args_os()
            .next()
            .and_then(|a| {
                Path::new(&a)
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
            })
            .unwrap_or_else(|| "natsd".to_string());
        CString::new(name).unwrap_or_else(|_| c"natsd".to_owned())
    });
    // SAFETY: `ident` is a NUL-terminated string that lives until process exit.
    unsafe {
        libc::openlog(
            ident.as_ptr(),
            libc::LOG_PID | libc::LOG_NDELAY,
            libc::LOG_DAEMON,
        )
    };
}

/// Sets up logging (at start-up, and again on reload). Errors name the log file.
pub fn init(cfg: &Config) -> io::Result<()> {
    let sink = if let Some(path) = &cfg.file {
        let file = open_append(path).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot open log file {}: {}", path.display(), e),
            )
        })?;
        Sink::File {
            path: path.clone(),
            file,
        }
    } else if cfg.syslog {
        open_syslog();
        Sink::Syslog
    } else {
        Sink::Stderr
    };
    let mut l = logger().lock();
    l.sink = sink;
    l.logtime = cfg.logtime;
    l.utc = cfg.utc;
    drop(l);
    set_max_level(cfg.max_level());
    Ok(())
}

/// SIGUSR1: reopen the log file (after logrotate/newsyslog moved it). A no-op for stderr/syslog.
/// On failure the old file stays in use and the error is returned.
pub fn reopen() -> io::Result<bool> {
    let mut l = logger().lock();
    if let Sink::File { path, file } = &mut l.sink {
        *file = open_append(path).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot reopen log file {}: {}", path.display(), e),
            )
        })?;
        return Ok(true);
    }
    Ok(false)
}

/// `2026/12/03 20:17:23.264334`, local time (or UTC), microseconds, like Go's log package.
fn timestamp(out: &mut String, utc: bool) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = now.as_secs() as libc::time_t;
    // SAFETY: tm is plain old data, filled in by the re-entrant *_r functions.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    let ok = unsafe {
        if utc {
            !libc::gmtime_r(&secs, &mut tm).is_null()
        } else {
            !libc::localtime_r(&secs, &mut tm).is_null()
        }
    };
    if !ok {
        return;
    }
    let _ = write!(
        out,
        "{:04}/{:02}/{:02} {:02}:{:02}:{:02}.{:06} ",
        tm.tm_year + 1900,
        tm.tm_mon + 1,
        tm.tm_mday,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec,
        now.subsec_micros()
    );
}

/// Formats one line as nats-server does (without the syslog case, which has its own header).
pub fn format_line(level: Level, args: fmt::Arguments<'_>, logtime: bool, utc: bool) -> String {
    let mut line = String::with_capacity(96);
    let _ = write!(line, "[{}] ", std::process::id());
    if logtime {
        timestamp(&mut line, utc);
    }
    line.push_str(level.tag());
    line.push(' ');
    let _ = line.write_fmt(args);
    line.push('\n');
    line
}

/// Writes one line. Prefer the macros.
pub fn write(level: Level, args: fmt::Arguments<'_>) {
    if !enabled(level) {
        return;
    }
    let mut guard = logger().lock();
    let l = &mut *guard;
    match &mut l.sink {
        Sink::Syslog => {
            // syslog adds its own time, host and tag[pid]; only the message is ours.
            let msg = CString::new(args.to_string().replace('\0', " ")).unwrap_or_default();
            // SAFETY: both strings are NUL-terminated; "%s" keeps the message from being
            // interpreted as a format.
            unsafe { libc::syslog(level.syslog_priority(), c"%s".as_ptr(), msg.as_ptr()) };
        }
        sink => {
            let (logtime, utc) = (l.logtime, l.utc);
            let line = format_line(level, args, logtime, utc);
            // A log that cannot be written must not take the broker down: the error is dropped.
            let _ = match sink {
                Sink::File { file, .. } => file.write_all(line.as_bytes()),
                _ => io::stderr().lock().write_all(line.as_bytes()),
            };
        }
    }
}

#[macro_export]
macro_rules! log_fatal { ($($t:tt)*) => { $crate::log::write($crate::log::Level::Fatal, format_args!($($t)*)) } }
#[macro_export]
macro_rules! log_error { ($($t:tt)*) => { $crate::log::write($crate::log::Level::Error, format_args!($($t)*)) } }
#[macro_export]
macro_rules! log_warn { ($($t:tt)*) => { $crate::log::write($crate::log::Level::Warn, format_args!($($t)*)) } }
#[macro_export]
macro_rules! log_info { ($($t:tt)*) => { $crate::log::write($crate::log::Level::Info, format_args!($($t)*)) } }
#[macro_export]
macro_rules! log_debug { ($($t:tt)*) => { if $crate::log::enabled($crate::log::Level::Debug) { $crate::log::write($crate::log::Level::Debug, format_args!($($t)*)) } } }
#[macro_export]
macro_rules! log_trace { ($($t:tt)*) => { if $crate::log::enabled($crate::log::Level::Trace) { $crate::log::write($crate::log::Level::Trace, format_args!($($t)*)) } } }

#[cfg(test)]
mod tests {
    use super::*;

    fn is_ts(s: &str) -> bool {
        // 2026/12/03 20:17:23.264334
        let b = s.as_bytes();
        b.len() == 26
            && b.iter().enumerate().all(|(i, c)| match i {
                4 | 7 => *c == b'/',
                10 => *c == b' ',
                13 | 16 => *c == b':',
                19 => *c == b'.',
                _ => c.is_ascii_digit(),
            })
    }

    #[test]
    fn line_shape_with_time() {
        let line = format_line(
            Level::Info,
            format_args!("Server is {}", "ready"),
            true,
            true,
        );
        let pid = format!("[{}] ", std::process::id());
        assert!(line.starts_with(&pid), "{}", line);
        let rest = &line[pid.len()..];
        assert!(is_ts(&rest[..26]), "{:?}", rest);
        assert_eq!(&rest[26..], " [INF] Server is ready\n");
    }

    #[test]
    fn line_shape_without_time() {
        let line = format_line(Level::Fatal, format_args!("boom"), false, false);
        assert_eq!(line, format!("[{}] [FTL] boom\n", std::process::id()));
    }

    #[test]
    fn utc_timestamp_matches_the_clock() {
        let line = format_line(Level::Warn, format_args!("x"), true, true);
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let days = secs / 86400;
        // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm) to cross-check.
        let z = days as i64 + 719468;
        let era = z.div_euclid(146097);
        let doe = z - era * 146097;
        let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let d = doy - (153 * mp + 2) / 5 + 1;
        let m = if mp < 10 { mp + 3 } else { mp - 9 };
        let y = yoe + era * 400 + if m <= 2 { 1 } else { 0 };
        let want = format!("{:04}/{:02}/{:02}", y, m, d);
        assert!(line.contains(&want), "{} vs {}", line, want);
    }

    #[test]
    fn levels_filter() {
        set_max_level(Level::Info);
        assert!(enabled(Level::Info) && enabled(Level::Fatal));
        assert!(!enabled(Level::Debug) && !enabled(Level::Trace));
        set_max_level(Level::Trace);
        assert!(enabled(Level::Debug) && enabled(Level::Trace));
        set_max_level(Level::Info);
        let cfg = Config {
            debug: true,
            ..Config::default()
        };
        assert_eq!(cfg.max_level(), Level::Debug);
        let cfg = Config {
            trace: true,
            ..Config::default()
        };
        assert_eq!(cfg.max_level(), Level::Trace);
    }
}
