//! Real-world nats-server config files (tests/configs) loaded onto Options.

use std::path::{Path, PathBuf};
use std::time::Duration;

use natsd::conf::{self, ErrorKind};
use natsd::options::Options;

fn cfg(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/configs")
        .join(name)
}

fn load(name: &str) -> Result<(Options, conf::Loaded), conf::ConfError> {
    let mut o = Options::default();
    let l = conf::load(&cfg(name), &mut o)?;
    Ok((o, l))
}

#[test]
fn freebsd_sample_config() {
    let (o, l) = load("freebsd-sample.conf").unwrap();
    assert_eq!(o.host, "localhost");
    assert_eq!(o.port, 4222);
    assert!(o.syslog);
    assert_eq!(o.max_payload, 1 << 20);
    assert_eq!(o.max_connections, 65536);
    assert_eq!(o.ping_interval, Duration::from_secs(120));
    assert_eq!(o.lame_duck_grace_period, Duration::from_secs(10));
    assert_eq!(o.http_host.as_deref(), Some("localhost"));
    assert_eq!(o.http_port, Some(8222));
    assert!(!o.auth.required());
    // Monitoring is the one thing natsd does not do yet: exactly one warning, at the http line.
    assert_eq!(l.warnings.len(), 1);
    assert_eq!(l.warnings[0].pos.line, 9);
    assert!(l.warnings[0]
        .msg
        .contains("HTTP monitoring support is not available"));
    assert_eq!(l.digest.len(), 64);
    assert_eq!(o.config_file, Some(cfg("freebsd-sample.conf")));
}

#[test]
fn every_honoured_key() {
    let (o, l) = load("full.conf").unwrap();
    assert!(l.warnings.is_empty(), "{:?}", l.warnings);
    assert_eq!(o.server_name.as_deref(), Some("edge-rock64-1"));
    assert_eq!((o.host.as_str(), o.port), ("127.0.0.1", 4333));
    assert_eq!(o.max_payload, 65536);
    assert_eq!(o.max_control_line, 2048);
    assert_eq!(o.max_connections, 1000);
    assert_eq!(o.max_subscriptions, 10000);
    assert_eq!(o.max_pending, 32 << 20);
    assert_eq!(o.write_deadline, Duration::from_secs(5));
    assert_eq!(o.ping_interval, Duration::from_secs(30));
    assert_eq!(o.ping_max, 3);
    assert!(o.logtime && o.logtime_utc && !o.debug && !o.trace);
    assert_eq!(o.log_file, Some("/var/log/natsd.log".into()));
    assert_eq!(o.pid_file, Some("/var/run/nats.pid".into()));
    assert_eq!(o.lame_duck_duration, Duration::from_secs(90));
    assert_eq!(o.lame_duck_grace_period, Duration::from_secs(5));
    assert_eq!(o.auth.user.as_deref(), Some("edge"));
    assert_eq!(o.auth.password.as_deref(), Some("p@ss word"));
    assert_eq!(o.auth.timeout, Duration::from_millis(1500));
    // The Debug dump of the options never shows the password.
    assert!(!format!("{:?}", o).contains("p@ss word"));
}

#[test]
fn includes_and_variables() {
    std::env::set_var("NATSD_TEST_PING", "45s");
    let (o, l) = load("include/main.conf").unwrap();
    assert!(l.warnings.is_empty());
    assert_eq!(o.server_name.as_deref(), Some("from-vars"));
    assert_eq!((o.host.as_str(), o.port), ("127.0.0.1", 4555));
    assert_eq!(o.max_payload, 512 * 1024);
    assert_eq!(o.ping_interval, Duration::from_secs(45));
    assert_eq!(o.auth.user.as_deref(), Some("ops"));
    assert_eq!(o.auth.password.as_deref(), Some("include-secret"));
}

#[test]
fn harness_token_config() {
    let (o, _) = load("token.conf").unwrap();
    assert_eq!((o.host.as_str(), o.port), ("127.0.0.1", -1));
    assert_eq!(o.auth.token.as_deref(), Some("deadbeef"));
    assert_eq!(o.auth.timeout, Duration::from_secs(1));
}

#[test]
fn features_without_security_meaning_are_warnings() {
    let (o, l) = load("features.conf").unwrap();
    assert_eq!(o.server_name.as_deref(), Some("js-1"));
    let what: Vec<&str> = l.warnings.iter().map(|w| w.msg.as_str()).collect();
    assert_eq!(what.len(), 5, "{:?}", what);
    for (w, feature) in what.iter().zip([
        "JetStream",
        "clustering",
        "WebSocket",
        "leaf nodes",
        "HTTP monitoring",
    ]) {
        assert!(
            w.contains(feature) && w.contains("not available in natsd"),
            "{}",
            w
        );
    }
    assert_eq!(o.http_port, Some(8222));
}

#[test]
fn security_natsd_cannot_honour_is_fatal() {
    for (file, line, name) in [
        ("tls.conf", 4, "'tls': TLS"),
        ("nkey-user.conf", 5, "users.nkey"),
        ("no-auth-user.conf", 6, "'no_auth_user'"),
    ] {
        let e = load(file).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Unsupported, "{}", file);
        let p = e.pos.as_ref().unwrap();
        assert_eq!(p.line, line, "{}: {}", file, e);
        let s = e.to_string();
        assert!(
            s.starts_with(&format!("{}:{}:", cfg(file).display(), line)),
            "{}",
            s
        );
        assert!(s.contains(name) && s.contains("refuses to start"), "{}", s);
    }
}

#[test]
fn users_and_accounts_configs_map_onto_options() {
    let (o, _) = load("users.conf").unwrap();
    let users: Vec<(&str, &str, bool)> = o
        .auth
        .users
        .iter()
        .map(|u| {
            (
                u.user.as_str(),
                u.password.as_str(),
                u.permissions.is_some(),
            )
        })
        .collect();
    assert_eq!(users, [("alice", "foo", true), ("bob", "bar", false)]);
    let p = o.auth.users[0].permissions.as_ref().unwrap();
    assert_eq!(p.publish.as_ref().unwrap().allow, ["a.>"]);
    assert_eq!(p.subscribe.as_ref().unwrap().allow, [">"]);
    assert!(o.auth.required());

    let (o, _) = load("accounts.conf").unwrap();
    let users: Vec<(&str, Option<&str>)> = o
        .auth
        .users
        .iter()
        .map(|u| (u.user.as_str(), u.account.as_deref()))
        .collect();
    assert_eq!(users, [("a", Some("A")), ("b", Some("B"))]);
    assert_eq!(o.auth.no_auth_user, None);
}

#[test]
fn unknown_key_names_file_line_and_key() {
    let e = load("unknown-key.conf").unwrap_err();
    assert_eq!(e.kind, ErrorKind::UnknownKey);
    assert_eq!(
        e.to_string(),
        format!(
            "{}:6:1: unknown field \"max_paylod\"; check the spelling against the nats-server configuration docs",
            cfg("unknown-key.conf").display()
        )
    );
}

#[test]
fn syntax_error_and_missing_files() {
    let e = load("syntax-error.conf").unwrap_err();
    assert_eq!(e.kind, ErrorKind::Syntax);
    assert!(
        e.to_string()
            .contains("block opened at line 2 column 15 is not closed"),
        "{}",
        e
    );

    let e = load("does-not-exist.conf").unwrap_err();
    assert_eq!(e.kind, ErrorKind::Io);
    assert!(e.to_string().contains("no such file or directory"));

    let dir = tempfile::tempdir().unwrap();
    let main = dir.path().join("m.conf");
    std::fs::write(&main, "port: 1\ninclude ./gone.conf\n").unwrap();
    let e = conf::load(&main, &mut Options::default()).unwrap_err();
    assert_eq!(e.pos.as_ref().unwrap().line, 2);
    assert!(
        e.to_string().contains("include file './gone.conf'"),
        "{}",
        e
    );

    // A file that includes itself ends with an error, not a stack overflow.
    std::fs::write(&main, "include ./m.conf\n").unwrap();
    let e = conf::load(&main, &mut Options::default()).unwrap_err();
    assert!(
        e.to_string().contains("does a file include itself"),
        "{}",
        e
    );

    std::fs::write(&main, b"port: 1\nserver_name: \xff\xfe\n").unwrap();
    let e = conf::load(&main, &mut Options::default()).unwrap_err();
    assert!(
        e.to_string().contains(":2: config file is not valid UTF-8"),
        "{}",
        e
    );
}
