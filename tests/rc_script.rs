//! The shell that ships in the package: pkg/rc.d/nats and the install scripts natspkg writes into
//! the manifest, plus the pkg-message and the sample config.
//!
//! - `sh -n` and `shellcheck -s sh` on each (shellcheck is skipped, loudly, where it is not
//!   installed; Debian: `apt-get install shellcheck`);
//! - the rc.d script's own logic (defaults, pidfiles, daemon(8) arguments, start_precmd, the
//!   extra commands) run for real with /bin/sh against a FAKE /etc/rc.subr that implements just
//!   the rc.subr behaviour the script relies on. That proves the script's wiring, not rc.subr's:
//!   nothing here ran on FreeBSD.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use natspkg::metadata::PackageMeta;
use natspkg::pkg::{manifest, PackageSpec};
use natspkg::target::Target;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn root(p: &str) -> PathBuf {
    Path::new(ROOT).join(p)
}

fn sh_n(what: &str, script: &str) {
    let o = Command::new("/bin/sh")
        .args(["-n", "-c", script])
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "sh -n {what}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

fn have_shellcheck() -> bool {
    let ok = Command::new("shellcheck")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!("shellcheck is not installed: skipping the shellcheck half of this test");
    }
    ok
}

/// `shellcheck -s sh` must print nothing; `excludes` are codes the caller justifies.
fn shellcheck(what: &str, path: &Path, excludes: &[&str]) {
    let mut c = Command::new("shellcheck");
    c.args(["-s", "sh", "-f", "gcc"]);
    if !excludes.is_empty() {
        c.arg(format!("--exclude={}", excludes.join(",")));
    }
    let o = c.arg(path).output().unwrap();
    assert!(
        o.status.success(),
        "shellcheck {what}:\n{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn rc_script_parses_and_passes_shellcheck() {
    let path = root("pkg/rc.d/nats");
    let text = fs::read_to_string(&path).unwrap();
    sh_n("pkg/rc.d/nats", &text);
    if have_shellcheck() {
        // No excludes: the script carries its own justified `# shellcheck disable=` lines.
        shellcheck("pkg/rc.d/nats", &path, &[]);
    }
    // Every `disable=` says why (a `#` comment after the codes).
    for l in text.lines().filter(|l| l.contains("shellcheck disable=")) {
        assert!(
            l.split_once("disable=").unwrap().1.contains('#'),
            "unjustified: {l}"
        );
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(
            mode & 0o111,
            0o111,
            "pkg/rc.d/nats must be executable in git"
        );
    }
}

#[test]
fn rc_script_follows_the_ports_conventions() {
    let t = fs::read_to_string(root("pkg/rc.d/nats")).unwrap();
    for needle in [
        "#!/bin/sh\n",
        "\n# PROVIDE: nats\n",
        "\n# REQUIRE: DAEMON NETWORKING\n",
        "\n# KEYWORD: shutdown\n",
        "\n. /etc/rc.subr\n",
        "\nname=nats\n",
        "\nrcvar=nats_enable\n",
        "\nload_rc_config $name\n",
        "\ncommand=/usr/sbin/daemon\n",
        "\nrun_rc_command \"$1\"\n",
    ] {
        assert!(t.contains(needle), "pkg/rc.d/nats lacks {needle:?}");
    }
    // rc.subr sources the script and reads these after load_rc_config: order matters.
    assert!(t.find("load_rc_config").unwrap() < t.find(": \"${nats_enable:=NO}\"").unwrap());
}

/// The install scripts natspkg writes, for the real Cargo metadata and pkg/ inputs.
fn real_spec() -> PackageSpec {
    let meta = PackageMeta::load(&root("Cargo.toml"), "natsd").unwrap();
    // The $BINARY asset: any file will do, the scripts do not depend on it and nothing here
    // validates the spec (pkg's own tests do).
    let bin = root("pkg/rc.d/nats");
    PackageSpec::from_meta(&meta, &bin, Target::Aarch64, 14, 0).unwrap()
}

#[test]
fn manifest_scripts_parse_and_pass_shellcheck() {
    let spec = real_spec();
    let scripts = manifest::scripts(&spec);
    let kinds: Vec<&str> = scripts.iter().map(|(k, _)| *k).collect();
    assert_eq!(
        kinds,
        [
            "pre-install",
            "post-install",
            "pre-deinstall",
            "post-deinstall"
        ]
    );
    let sc = have_shellcheck();
    let dir = tempfile::tempdir().unwrap();
    for (kind, body) in &scripts {
        sh_n(kind, body);
        if sc {
            let p = dir.path().join(kind);
            // pkg runs them with /bin/sh; the shebang only tells shellcheck the dialect.
            fs::write(&p, format!("#!/bin/sh\n{body}")).unwrap();
            // SC2086 on `${PW} groupshow`: PW is "pw" or "pw -R <root>" and must split into
            // words (the ports framework's own idiom), so it is unquoted on purpose.
            shellcheck(kind, &p, &["SC2086"]);
        }
    }
}

#[test]
fn pkg_message_says_how_to_enable_and_start() {
    let spec = real_spec();
    let m = &spec.messages[0].text;
    assert_eq!(m, &fs::read_to_string(root("pkg/pkg-message")).unwrap());
    for needle in [
        "sysrc nats_enable=YES",
        "service nats start",
        "/usr/local/etc/nats.conf",
        "user \"nats\"",
        "nats_options",
        "nats_restart",
    ] {
        assert!(m.contains(needle), "pkg-message lacks {needle:?}");
    }
    assert!(
        !m.contains('%'),
        "pkg URL-decodes some fields; keep `%` out"
    );
}

#[test]
fn sample_config_listens_for_other_jails_and_has_no_template_placeholders() {
    let spec = real_spec();
    let f = spec
        .files
        .iter()
        .find(|f| f.sample)
        .expect("a sample config asset");
    assert_eq!(f.path, "/usr/local/etc/nats.conf.sample");
    assert_eq!(f.sample_target(), Some("/usr/local/etc/nats.conf"));
    let conf = String::from_utf8(f.contents.clone()).unwrap();
    let active: Vec<&str> = conf
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    assert_eq!(active, ["listen: 0.0.0.0:4222", "syslog: true"]);
    for commented in ["#http_port: 8222", "#authorization {", "#max_payload:"] {
        assert!(conf.contains(commented), "sample lacks {commented:?}");
    }
    assert!(
        !conf.contains("${") && !conf.contains('@'),
        "template placeholders belong in templates/, not in the package's sample"
    );

    // The reference server accepts it, and with every commented example switched on.
    let Some(server) = reference_server() else {
        eprintln!("nats-server not found (set NATS_SERVER): skipping the config check");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let plain = dir.path().join("plain.conf");
    fs::write(&plain, &conf).unwrap();
    let all = dir.path().join("all.conf");
    let uncommented: String = conf
        .lines()
        .map(|l| match l.strip_prefix('#') {
            Some(r) if !r.starts_with(' ') && !r.is_empty() => r,
            _ => l,
        })
        .map(|l| format!("{l}\n"))
        .collect();
    fs::write(&all, uncommented).unwrap();
    for p in [&plain, &all] {
        let o = Command::new(&server)
            .arg("-t")
            .arg("-c")
            .arg(p)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "nats-server -t {}: {}",
            p.display(),
            String::from_utf8_lossy(&o.stderr)
        );
    }
}

fn reference_server() -> Option<PathBuf> {
    std::env::var_os("NATS_SERVER")
        .map(PathBuf::from)
        .or_else(|| {
            Path::new(ROOT)
                .ancestors()
                .map(|a| a.join("main/.tools/natsref/bin/nats-server"))
                .find(|p| p.is_file())
        })
        .filter(|p| p.is_file())
}

// ---- the rc.d script's logic, against a fake rc.subr ----

/// Just what pkg/rc.d/nats uses of rc.subr, with the real semantics for it: load_rc_config
/// reads rc.conf-style assignments, checkyesno, and run_rc_command running `${cmd}_precmd`
/// (aborting when it fails) then the start command, or `${cmd}_cmd` for extra commands.
/// "Starting" prints the command line instead of running daemon(8).
const FAKE_RC_SUBR: &str = r#"
load_rc_config() { [ -n "$FAKE_RC_CONF" ] && . "$FAKE_RC_CONF"; return 0; }
checkyesno() {
	eval _v=\$$1
	case $_v in
	[Yy][Ee][Ss]|[Tt][Rr][Uu][Ee]|[Oo][Nn]|1) return 0 ;;
	[Nn][Oo]|[Ff][Aa][Ll][Ss][Ee]|[Oo][Ff][Ff]|0) return 1 ;;
	*) echo "\$$1 is not set properly" >&2; return 1 ;;
	esac
}
run_rc_command() {
	case " start $extra_commands " in
	*" $1 "*) ;;
	*) echo "unknown directive '$1'" >&2; return 1 ;;
	esac
	echo "pidfile=$pidfile"
	echo "procname=$procname"
	if [ "$1" = start ]; then
		if [ -n "$start_precmd" ]; then
			$start_precmd || { echo "precmd failed"; return 1; }
		fi
		echo "run: $command $command_args"
		return 0
	fi
	eval _cmd=\$${1}_cmd
	$_cmd
}
"#;

struct Rc {
    dir: tempfile::TempDir,
}

struct Out {
    ok: bool,
    stdout: String,
    /// Commands the fake natsd and install(1) were called with, one per line.
    calls: String,
}

impl Rc {
    /// The real pkg/rc.d/nats with /etc/rc.subr, natsd and /var/run pointed into a temp dir.
    fn new() -> Rc {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let text = fs::read_to_string(root("pkg/rc.d/nats")).unwrap();
        for (what, n) in [
            (". /etc/rc.subr\n", 1),
            ("=/usr/local/bin/natsd\n", 1),
            ("=/var/run/", 2),
        ] {
            assert_eq!(text.matches(what).count(), n, "{what:?} in pkg/rc.d/nats");
        }
        let text = text
            .replace(". /etc/rc.subr\n", &format!(". {}/rc.subr\n", d.display()))
            .replace(
                "=/usr/local/bin/natsd\n",
                &format!("={}/natsd\n", d.display()),
            )
            .replace("=/var/run/", &format!("={}/run/", d.display()));
        fs::write(d.join("rc.subr"), FAKE_RC_SUBR).unwrap();
        fs::write(d.join("nats"), text).unwrap();
        fs::create_dir(d.join("run")).unwrap();
        fs::create_dir(d.join("bin")).unwrap();
        let logger = |name: &str, rc: &str| {
            let p = if name == "natsd" {
                d.join("natsd")
            } else {
                d.join("bin").join(name)
            };
            fs::write(
                &p,
                format!(
                    "#!/bin/sh\necho \"{name} $*\" >> \"{}/calls\"\nexit {rc}\n",
                    d.display()
                ),
            )
            .unwrap();
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
            }
        };
        logger("natsd", "${FAKE_NATSD_RC:-0}");
        logger("install", "0");
        Rc { dir }
    }

    fn path(&self, p: &str) -> String {
        self.dir.path().join(p).display().to_string()
    }

    /// `sh nats <arg>` with `rc_conf` as /etc/rc.conf.
    fn run(&self, arg: &str, rc_conf: &str, natsd_rc: i32) -> Out {
        let d = self.dir.path();
        fs::write(d.join("rc.conf"), rc_conf).unwrap();
        let _ = fs::remove_file(d.join("calls"));
        let path = format!(
            "{}:{}",
            d.join("bin").display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let o = Command::new("/bin/sh")
            .arg(d.join("nats"))
            .arg(arg)
            .env("PATH", path)
            .env("FAKE_RC_CONF", d.join("rc.conf"))
            .env("FAKE_NATSD_RC", natsd_rc.to_string())
            .output()
            .unwrap();
        Out {
            ok: o.status.success(),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            calls: fs::read_to_string(d.join("calls")).unwrap_or_default(),
        }
    }
}

#[test]
fn rc_start_checks_the_config_creates_the_pidfile_for_the_user_and_runs_daemon() {
    let rc = Rc::new();
    let o = rc.run("start", "nats_enable=YES\n", 0);
    assert!(o.ok, "{}", o.stdout);
    let (natsd, pid) = (rc.path("natsd"), rc.path("run/nats.pid"));
    assert_eq!(
        o.calls,
        format!(
            "natsd -t -c /usr/local/etc/nats.conf\n\
             install -o nats -g nats -m 0644 /dev/null {pid}\n"
        )
    );
    assert!(
        o.stdout.contains(&format!("pidfile={pid}\n")),
        "{}",
        o.stdout
    );
    assert!(
        o.stdout.contains(&format!("procname={natsd}\n")),
        "{}",
        o.stdout
    );
    assert!(
        o.stdout.contains(&format!(
            "run: /usr/sbin/daemon -p {pid} -S -T nats {natsd} -c /usr/local/etc/nats.conf\n"
        )),
        "{}",
        o.stdout
    );
}

#[test]
fn rc_start_is_refused_when_the_config_test_fails() {
    let rc = Rc::new();
    let o = rc.run("start", "nats_enable=YES\n", 1);
    assert!(!o.ok);
    assert!(o.stdout.contains("precmd failed"), "{}", o.stdout);
    assert!(!o.stdout.contains("run: "), "{}", o.stdout);
    assert!(!o.calls.contains("install"), "{}", o.calls);
}

#[test]
fn rc_options_user_and_group_come_from_rc_conf() {
    let rc = Rc::new();
    let o = rc.run(
        "start",
        "nats_enable=YES\nnats_user=broker\nnats_group=daemon\nnats_options=\"-c /tmp/x.conf -D\"\n",
        0,
    );
    assert!(o.ok, "{}", o.stdout);
    assert!(
        o.calls.contains("natsd -t -c /tmp/x.conf -D\n"),
        "{}",
        o.calls
    );
    assert!(
        o.calls.contains("install -o broker -g daemon -m 0644"),
        "{}",
        o.calls
    );
    assert!(
        o.stdout
            .contains(&format!("{} -c /tmp/x.conf -D\n", rc.path("natsd"))),
        "{}",
        o.stdout
    );
}

#[test]
fn rc_restart_knob_supervises_with_daemon_r_and_tracks_the_supervisor() {
    let rc = Rc::new();
    let o = rc.run("start", "nats_enable=YES\nnats_restart=YES\n", 0);
    assert!(o.ok, "{}", o.stdout);
    let (sup, pid, natsd) = (
        rc.path("run/nats_daemon.pid"),
        rc.path("run/nats.pid"),
        rc.path("natsd"),
    );
    // rc.subr must signal daemon(8) on stop, or daemon -r would restart natsd.
    assert!(
        o.stdout.contains(&format!("pidfile={sup}\n")),
        "{}",
        o.stdout
    );
    assert!(
        o.stdout.contains("procname=/usr/sbin/daemon\n"),
        "{}",
        o.stdout
    );
    assert!(
        o.stdout.contains(&format!(
            "run: /usr/sbin/daemon -r -P {sup} -p {pid} -S -T nats {natsd} -c /usr/local/etc/nats.conf\n"
        )),
        "{}",
        o.stdout
    );
    assert!(
        o.calls.contains(&format!("/dev/null {pid}\n")),
        "{}",
        o.calls
    );
    assert!(
        o.calls.contains(&format!("/dev/null {sup}\n")),
        "{}",
        o.calls
    );
}

#[test]
fn rc_extra_commands_signal_natsd_through_its_pidfile() {
    let rc = Rc::new();
    let pid = rc.path("run/nats.pid");
    for (cmd, signal) in [
        ("reload", "reload"),
        ("reopen", "reopen"),
        ("logrotate", "reopen"),
        ("ldm", "ldm"),
    ] {
        // Even with the restart knob, signals go to natsd itself, not to daemon(8).
        for conf in ["nats_enable=YES\n", "nats_enable=YES\nnats_restart=YES\n"] {
            let o = rc.run(cmd, conf, 0);
            assert!(o.ok, "{cmd}: {}", o.stdout);
            assert_eq!(o.calls, format!("natsd --signal {signal}={pid}\n"), "{cmd}");
        }
    }
    let o = rc.run("configtest", "nats_enable=YES\n", 0);
    assert!(o.ok);
    assert_eq!(o.calls, "natsd -t -c /usr/local/etc/nats.conf\n");
    assert!(!rc.run("configtest", "nats_enable=YES\n", 1).ok);
    assert!(!rc.run("frobnicate", "nats_enable=YES\n", 0).ok);
}
