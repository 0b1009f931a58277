//! What the kernel knows about a server process (RSS, CPU time) and about the machine, from /proc.
//! Plus the few process-wide knobs the generator needs (fd limit, CPU affinity, own CPU time).

use anyhow::{Context, Result};
use serde::Serialize;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

/// A `kB` field of /proc/<pid>/status (`VmRSS`, `VmHWM`), in KiB.
pub fn status_kb(pid: u32, field: &str) -> Result<u64> {
    let path = format!("/proc/{pid}/status");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    parse_status_kb(&text, field).with_context(|| format!("{path} has no {field} line"))
}

fn parse_status_kb(text: &str, field: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

/// utime + stime of a process (all its threads), in clock ticks.
pub fn cpu_ticks(pid: u32) -> Result<u64> {
    let path = format!("/proc/{pid}/stat");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    parse_stat_ticks(&text).with_context(|| format!("cannot parse {path}"))
}

fn parse_stat_ticks(text: &str) -> Option<u64> {
    // The command name may contain spaces and parentheses; fields restart after the last ')'.
    let rest = &text[text.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After ')': state is field 3, so utime (14) and stime (15) are at 11 and 12.
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

pub fn clock_ticks_per_sec() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as u64
    } else {
        100
    }
}

/// CPU seconds this (generator) process has used so far, all threads.
pub fn self_cpu_secs() -> f64 {
    // SAFETY: getrusage writes into the zeroed struct we pass.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// Raise the soft open-file limit to the hard one: the 1000-connection scenario needs >1024 fds,
/// and servers started from here inherit the raised limit (fair to both).
pub fn raise_fd_limit() -> Result<u64> {
    // SAFETY: plain syscalls on a local struct.
    unsafe {
        let mut l: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut l) != 0 {
            anyhow::bail!("getrlimit(RLIMIT_NOFILE) failed");
        }
        l.rlim_cur = l.rlim_max;
        if libc::setrlimit(libc::RLIMIT_NOFILE, &l) != 0 {
            anyhow::bail!("setrlimit(RLIMIT_NOFILE) failed");
        }
        Ok(l.rlim_cur as u64)
    }
}

/// Restrict the calling thread (and threads/processes it creates later) to `cpus`.
pub fn pin_current(cpus: &[usize]) -> std::io::Result<()> {
    // SAFETY: the cpu_set_t is local and fully initialised by CPU_ZERO.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_ZERO(&mut set);
        for &c in cpus {
            libc::CPU_SET(c, &mut set);
        }
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

pub fn online_cpus() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// Samples a process's VmRSS every 10 ms in a thread; `stop` returns the highest value seen.
pub struct RssSampler {
    stop: Arc<AtomicBool>,
    handle: std::thread::JoinHandle<u64>,
}

impl RssSampler {
    pub fn start(pid: u32) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let handle = std::thread::Builder::new()
            .name("rss".into())
            .spawn(move || {
                let mut max = 0;
                while !s.load(SeqCst) {
                    if let Ok(kb) = status_kb(pid, "VmRSS") {
                        max = max.max(kb);
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
                max
            })
            .expect("spawn rss sampler");
        RssSampler { stop, handle }
    }

    pub fn stop(self) -> u64 {
        self.stop.store(true, SeqCst);
        self.handle.join().unwrap_or(0)
    }
}

/// The 1, 5 and 15 minute load averages, e.g. `0.52 0.48 0.30`.
pub fn load_avg() -> String {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    text.split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// The machine a run happened on (goes into every report).
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub cpu_model: String,
    pub cpus: usize,
    pub kernel: String,
    pub mem_total_mib: u64,
    pub load_avg_at_start: String,
    /// Filled in when the suite ends: other processes' load makes figures noisy.
    pub load_avg_at_end: String,
}

impl Machine {
    pub fn probe() -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find_map(|l| {
                l.strip_prefix("model name")?
                    .split_once(':')
                    .map(|(_, v)| v.trim().to_string())
            })
            .unwrap_or_else(|| "unknown".into());
        let read = |p: &str| {
            std::fs::read_to_string(p)
                .unwrap_or_default()
                .trim()
                .to_string()
        };
        let meminfo = read("/proc/meminfo");
        Machine {
            cpu_model,
            cpus: online_cpus(),
            kernel: format!(
                "{} {}",
                read("/proc/sys/kernel/ostype"),
                read("/proc/sys/kernel/osrelease")
            ),
            mem_total_mib: parse_status_kb(&meminfo, "MemTotal").unwrap_or(0) / 1024,
            load_avg_at_start: load_avg(),
            load_avg_at_end: String::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_status_and_stat() {
        let status = "Name:\tx\nVmHWM:\t   14336 kB\nVmRSS:\t   12000 kB\n";
        assert_eq!(parse_status_kb(status, "VmRSS"), Some(12000));
        assert_eq!(parse_status_kb(status, "VmHWM"), Some(14336));
        assert_eq!(parse_status_kb(status, "VmSwap"), None);
        let stat = "42 (nats server (x)) S 1 42 42 0 -1 4194560 100 0 0 0 17 5 0 0 20 0 8 0";
        assert_eq!(parse_stat_ticks(stat), Some(22));
    }

    #[test]
    fn reads_own_process() {
        let me = std::process::id();
        assert!(status_kb(me, "VmRSS").unwrap() > 0);
        cpu_ticks(me).unwrap();
    }
}
