//! The log file sink: nats-server's line shape, appended, and reopened for rotation (SIGUSR1).
//! Its own test binary, because the logger is process-global.

use natsd::log::{self, Config};
use natsd::{log_debug, log_info, log_warn};

#[test]
fn file_sink_appends_and_reopens_after_rotation() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("natsd.log");
    std::fs::write(&path, "old line\n").unwrap();
    log::init(&Config {
        file: Some(path.clone()),
        ..Config::default()
    })
    .unwrap();
    log_info!("first {}", 1);
    log_debug!("not printed at info level");
    let rotated = dir.path().join("natsd.log.0");
    std::fs::rename(&path, &rotated).unwrap();
    log_warn!("still to the rotated file");
    assert!(log::reopen().unwrap());
    log_info!("after reopen");

    let old = std::fs::read_to_string(&rotated).unwrap();
    let lines: Vec<&str> = old.lines().collect();
    assert_eq!(lines.len(), 3, "{:?}", lines);
    assert_eq!(lines[0], "old line");
    let pid = format!("[{}] ", std::process::id());
    assert!(
        lines[1].starts_with(&pid) && lines[1].ends_with(" [INF] first 1"),
        "{}",
        lines[1]
    );
    assert!(lines[2].ends_with(" [WRN] still to the rotated file"));
    let new = std::fs::read_to_string(&path).unwrap();
    assert!(
        new.starts_with(&pid) && new.ends_with(" [INF] after reopen\n"),
        "{}",
        new
    );

    // logtime off: no date, as nats-server's -T=false.
    log::init(&Config {
        file: Some(path.clone()),
        logtime: false,
        debug: true,
        ..Config::default()
    })
    .unwrap();
    log_debug!("debug now on");
    let new = std::fs::read_to_string(&path).unwrap();
    assert!(
        new.ends_with(&format!("{}[DBG] debug now on\n", pid)),
        "{}",
        new
    );

    let e = log::init(&Config {
        file: Some(dir.path().join("no/such/dir/x.log")),
        ..Config::default()
    })
    .unwrap_err();
    assert!(e.to_string().contains("cannot open log file"), "{}", e);
}
