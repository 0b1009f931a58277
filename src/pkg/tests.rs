//! Package writer and verifier tests. Every test reads back the bytes that were written.

use std::io::Read;
use std::path::Path;

use serde_json::Value;

use super::manifest::{checksum, sha256_hex, url_unescape};
use super::*;
use crate::test_support::{assert_sh_parses, branded, natsd_spec, AARCH64_BIN, X86_64_BIN};

const RC: &[u8] = b"#!/bin/sh\n# PROVIDE: nats\n. /etc/rc.subr\nname=nats\nrcvar=nats_enable\nload_rc_config $name\nrun_rc_command \"$1\"\n";
const SAMPLE: &[u8] = b"listen: 0.0.0.0:4222\n";

fn spec(target: Target) -> PackageSpec {
    let bin = match target {
        Target::X86_64 => X86_64_BIN,
        Target::Aarch64 => AARCH64_BIN,
    };
    natsd_spec(
        target,
        "natsd is \"small\": 100% compatible\nsecond line\twith tab",
        // Deliberately unsorted: the archive must sort them.
        vec![
            PackageFile {
                path: "/usr/local/etc/rc.d/nats".into(),
                contents: RC.to_vec(),
                mode: 0o755,
                sample: false,
            },
            PackageFile {
                path: "/usr/local/bin/natsd".into(),
                contents: branded(bin),
                mode: 0o755,
                sample: false,
            },
            PackageFile {
                path: "/usr/local/etc/nats.conf.sample".into(),
                contents: SAMPLE.to_vec(),
                mode: 0o644,
                sample: true,
            },
        ],
        vec![Message {
            text: "Enable with: sysrc nats_enable=YES\n".into(),
            kind: MessageKind::Install,
        }],
    )
}

/// (name, header, data) of every tar entry of a .pkg.
fn entries(pkg: &[u8]) -> Vec<(String, tar::Header, Vec<u8>)> {
    assert_eq!(&pkg[..2], &[0x1f, 0x8b], "gzip magic");
    let mut tar = Vec::new();
    flate2::read::GzDecoder::new(pkg)
        .read_to_end(&mut tar)
        .unwrap();
    let mut ar = tar::Archive::new(tar.as_slice());
    ar.entries()
        .unwrap()
        .map(|e| {
            let mut e = e.unwrap();
            let name = String::from_utf8(e.path_bytes().into_owned()).unwrap();
            let h = e.header().clone();
            let mut d = Vec::new();
            e.read_to_end(&mut d).unwrap();
            (name, h, d)
        })
        .collect()
}

/// Re-packs entries (headers kept byte for byte) into a gzip'd tar.
fn repack(entries: &[(String, tar::Header, Vec<u8>)]) -> Vec<u8> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let mut b = tar::Builder::new(gz);
    for (_, h, d) in entries {
        let mut h = h.clone();
        h.set_size(d.len() as u64);
        h.set_cksum();
        b.append(&h, d.as_slice()).unwrap();
    }
    b.into_inner().unwrap().finish().unwrap()
}

fn write(spec: &PackageSpec) -> (tempfile::TempDir, std::path::PathBuf, Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    let path = write_package(spec, dir.path()).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    (dir, path, bytes)
}

fn manifest_of(pkg: &[u8]) -> serde_json::Map<String, Value> {
    let e = entries(pkg);
    let m = e.iter().find(|(n, _, _)| n == "+MANIFEST").unwrap();
    serde_json::from_slice::<Value>(&m.2)
        .unwrap()
        .as_object()
        .unwrap()
        .clone()
}

#[test]
fn file_name_and_location() {
    let (dir, path, _) = write(&spec(Target::X86_64));
    assert_eq!(path, dir.path().join("natsd-0.1.0.pkg"));
    // Nothing else (no temp file) is left in the output directory.
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("natsd-0.1.0.pkg")]);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o644
        );
    }
}

#[test]
fn metadata_first_then_files_sorted_with_absolute_names_and_fixed_headers() {
    let s = spec(Target::X86_64);
    let (_d, _p, bytes) = write(&s);
    let e = entries(&bytes);
    let names: Vec<&str> = e.iter().map(|(n, _, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "+COMPACT_MANIFEST",
            "+MANIFEST",
            "/usr/local/bin/natsd",
            "/usr/local/etc/nats.conf.sample",
            "/usr/local/etc/rc.d/nats",
        ]
    );
    for (name, h, data) in &e {
        assert_eq!(h.username().unwrap(), Some("root"), "{name}");
        assert_eq!(h.groupname().unwrap(), Some("wheel"), "{name}");
        assert_eq!((h.uid().unwrap(), h.gid().unwrap()), (0, 0), "{name}");
        assert_eq!(h.entry_type(), tar::EntryType::Regular, "{name}");
        assert!(h.as_ustar().is_some(), "{name}: ustar header");
        assert_eq!(h.size().unwrap(), data.len() as u64);
        if name.starts_with('+') {
            assert_eq!(h.mode().unwrap(), 0o644, "{name}");
            assert_eq!(h.mtime().unwrap(), 0, "{name}");
        } else {
            let f = s.files.iter().find(|f| &f.path == name).unwrap();
            assert_eq!(h.mode().unwrap(), f.mode, "{name}");
            assert_eq!(h.mtime().unwrap(), 1_700_000_000, "{name}");
            assert_eq!(data, &f.contents, "{name}");
        }
    }
    // gzip header: mtime 0 (bytes 4..8), OS byte 255 (byte 9).
    assert_eq!(&bytes[4..8], &[0, 0, 0, 0]);
    assert_eq!(bytes[9], 255);
}

#[test]
fn manifest_keys_order_values_and_checksums() {
    let s = spec(Target::Aarch64);
    let (_d, _p, bytes) = write(&s);
    let m = manifest_of(&bytes);
    let keys: Vec<&str> = m.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "name",
            "origin",
            "version",
            "comment",
            "maintainer",
            "www",
            "abi",
            "arch",
            "prefix",
            "flatsize",
            "licenselogic",
            "licenses",
            "desc",
            "categories",
            "users",
            "groups",
            "conflicts",
            "files",
            "scripts",
            "messages"
        ]
    );
    assert_eq!(m["abi"], "FreeBSD:14:aarch64");
    assert_eq!(m["arch"], "freebsd:14:aarch64:64");
    assert_eq!(m["origin"], "net/natsd");
    assert_eq!(m["licenselogic"], "single");
    assert_eq!(m["licenses"], serde_json::json!(["APACHE20"]));
    assert_eq!(m["conflicts"], serde_json::json!(["nats-server-*"]));
    assert_eq!(m["users"], serde_json::json!(["nats"]));
    assert_eq!(m["groups"], serde_json::json!(["nats"]));
    let total: u64 = s.files.iter().map(|f| f.contents.len() as u64).sum();
    assert_eq!(m["flatsize"], total);
    assert_eq!(
        m["messages"],
        serde_json::json!([{"message": "Enable with: sysrc nats_enable=YES\n", "type": "install"}])
    );
    // Checksums are recomputed from the archived bytes, not taken from the spec.
    let files = m["files"].as_object().unwrap();
    assert_eq!(files.len(), 3);
    for (name, _, data) in entries(&bytes)
        .iter()
        .filter(|(n, _, _)| !n.starts_with('+'))
    {
        let sum = files[name].as_str().unwrap();
        assert_eq!(sum, format!("1${}", sha256_hex(data)));
        assert_eq!(sum.len(), 2 + 64);
    }
    assert_eq!(
        checksum(b"abc"),
        "1$ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
}

#[test]
fn compact_manifest_is_manifest_without_bulky_keys() {
    let (_d, _p, bytes) = write(&spec(Target::X86_64));
    let e = entries(&bytes);
    let compact: Value = serde_json::from_slice(&e[0].2).unwrap();
    let mut full = manifest_of(&bytes);
    for k in ["files", "scripts"] {
        assert!(full.shift_remove(k).is_some(), "{k} in +MANIFEST");
    }
    assert_eq!(compact, Value::Object(full));
    // Both are compact one-line JSON.
    assert!(!e[0].2.contains(&b'\n') && !e[1].2.contains(&b'\n'));
}

#[test]
fn percent_and_json_escaping() {
    let mut s = spec(Target::X86_64);
    s.files.push(PackageFile {
        path: "/usr/local/share/natsd/100%.txt".into(),
        contents: b"x".to_vec(),
        mode: 0o644,
        sample: false,
    });
    let (_d, path, bytes) = write(&s);
    let e = entries(&bytes);
    let raw = String::from_utf8(e[1].2.clone()).unwrap();
    // desc: `%` → `%25`, quotes/newline/tab JSON-escaped.
    assert!(
        raw.contains(r#""desc":"natsd is \"small\": 100%25 compatible\nsecond line\twith tab""#),
        "{raw}"
    );
    // file key escaped in the manifest, literal in the archive.
    assert!(
        raw.contains(r#""/usr/local/share/natsd/100%25.txt":"1$"#),
        "{raw}"
    );
    assert!(e
        .iter()
        .any(|(n, _, _)| n == "/usr/local/share/natsd/100%.txt"));
    // pkg's decoding gives back the original desc.
    let m = manifest_of(&bytes);
    assert_eq!(url_unescape(m["desc"].as_str().unwrap()), s.desc);
    assert_eq!(url_unescape("a%2"), "a%2");
    assert_eq!(url_unescape("%zz%41"), "%zzA");
    // And verify decodes keys the same way, so the package checks out.
    let r = verify(&path);
    assert!(r.is_ok(), "{r}");
}

#[test]
fn reproducible_bytes() {
    let s = spec(Target::Aarch64);
    let (_d1, _p1, a) = write(&s);
    let (_d2, _p2, b) = write(&s);
    assert_eq!(a, b);
    // The order of the spec's files does not matter either.
    let mut rev = s.clone();
    rev.files.reverse();
    let (_d3, _p3, c) = write(&rev);
    assert_eq!(a, c);
    // But the mtime does (it is in the headers).
    let mut later = s.clone();
    later.mtime += 1;
    let (_d4, _p4, d) = write(&later);
    assert_ne!(a, d);
}

#[test]
fn source_date_epoch() {
    // Only this test touches the variable.
    std::env::set_var("SOURCE_DATE_EPOCH", "1234567890");
    assert_eq!(mtime_from_env().unwrap(), 1_234_567_890);
    std::env::set_var("SOURCE_DATE_EPOCH", "yesterday");
    let e = mtime_from_env().unwrap_err().to_string();
    assert!(e.contains("SOURCE_DATE_EPOCH=`yesterday`"), "{e}");
    std::env::remove_var("SOURCE_DATE_EPOCH");
    assert_eq!(mtime_from_env().unwrap(), DEFAULT_MTIME);
}

#[test]
fn output_dir_that_is_a_file_is_an_error_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, b"x").unwrap();
    let e = format!(
        "{:#}",
        write_package(&spec(Target::X86_64), &file).unwrap_err()
    );
    assert!(e.contains("output directory"), "{e}");
    assert_eq!(std::fs::read(&file).unwrap(), b"x");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}

#[cfg(unix)]
#[test]
fn unwritable_output_dir_is_an_error_and_nothing_is_written() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("ro");
    std::fs::create_dir(&out).unwrap();
    std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o555)).unwrap();
    // root ignores directory permissions: then there is nothing to test here.
    if std::fs::write(out.join("probe"), b"").is_ok() {
        eprintln!("SKIP: running as root, permissions are not enforced");
        return;
    }
    let e = format!(
        "{:#}",
        write_package(&spec(Target::X86_64), &out).unwrap_err()
    );
    assert!(e.contains("is it writable"), "{e}");
    assert_eq!(std::fs::read_dir(&out).unwrap().count(), 0);
}

#[cfg(target_os = "linux")]
#[test]
fn directory_where_even_root_cannot_create_files_is_an_error() {
    // /proc/self exists and is a directory, but nobody can create files in it: this exercises
    // the "cannot create" path even when the tests run as root.
    let e = format!(
        "{:#}",
        write_package(&spec(Target::X86_64), Path::new("/proc/self")).unwrap_err()
    );
    assert!(
        e.contains("cannot create a file in the output directory /proc/self"),
        "{e}"
    );
    assert!(!Path::new("/proc/self/natsd-0.1.0.pkg").exists());
}

#[test]
fn long_paths_round_trip() {
    // > 100 bytes needs the ustar prefix field; > 255 needs a GNU long-name entry (pkg reads both).
    let mid = format!("/usr/local/share/natsd/{}/f", "d".repeat(100));
    let long = format!("/usr/local/share/natsd/{}/f", "e".repeat(300));
    let mut s = spec(Target::X86_64);
    for p in [&mid, &long] {
        s.files.push(PackageFile {
            path: p.clone(),
            contents: p.as_bytes().to_vec(),
            mode: 0o644,
            sample: false,
        });
    }
    let (_d, path, bytes) = write(&s);
    let names: Vec<String> = entries(&bytes).into_iter().map(|(n, _, _)| n).collect();
    assert!(names.contains(&mid) && names.contains(&long), "{names:?}");
    let r = verify(&path);
    assert!(r.is_ok(), "{r}");
    assert_eq!(r.files.len(), 5);
}

#[test]
fn failed_rename_leaves_no_temp_file() {
    // The destination name is taken by a non-empty directory: rename fails after the temp file
    // was fully written. The temp file must be cleaned up and the directory left alone.
    let dir = tempfile::tempdir().unwrap();
    let blocker = dir.path().join("natsd-0.1.0.pkg");
    std::fs::create_dir(&blocker).unwrap();
    std::fs::write(blocker.join("keep"), b"k").unwrap();
    let e = format!(
        "{:#}",
        write_package(&spec(Target::X86_64), dir.path()).unwrap_err()
    );
    assert!(e.contains("cannot move the package into place"), "{e}");
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("natsd-0.1.0.pkg")]);
    assert_eq!(std::fs::read(blocker.join("keep")).unwrap(), b"k");
}

#[test]
fn invalid_spec_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    type Case = (Box<dyn Fn(&mut PackageSpec)>, &'static str);
    let cases: Vec<Case> = vec![
        (
            Box::new(|s| s.version = "1.0.0-rc.1".into()),
            "not a pkg version",
        ),
        (
            Box::new(|s| s.freebsd_major = 13),
            "FreeBSD 13 is not supported",
        ),
        (Box::new(|s| s.www.clear()), "`www` is empty"),
        (
            Box::new(|s| s.files[0].path = "usr/local/x".into()),
            "must be absolute",
        ),
        (
            Box::new(|s| s.files[0].path = "/usr/local//x".into()),
            "normalised",
        ),
        (
            Box::new(|s| s.files[2].path = "/usr/local/etc/nats.conf".into()),
            "must end in `.sample`",
        ),
        (
            Box::new(|s| s.files[1].path = s.files[0].path.clone()),
            "listed twice",
        ),
        (Box::new(|s| s.comment = "two\nlines".into()), "one line"),
        (Box::new(|s| s.mtime = 1 << 40), "ustar limit"),
        (
            Box::new(|s| s.files[0].mode = 0o4755),
            "setuid/setgid or world-writable",
        ),
        (
            Box::new(|s| s.account.as_mut().unwrap().user = "Nats!".into()),
            "user name",
        ),
        // A Linux binary or an x86_64 binary in an aarch64 package is never packaged.
        (
            Box::new(|s| s.target = Target::Aarch64),
            "ELF machine is 62",
        ),
        (
            Box::new(|s| s.files[1].contents = X86_64_BIN.to_vec()),
            "not branded",
        ),
    ];
    for (mutate, want) in cases {
        let mut s = spec(Target::X86_64);
        mutate(&mut s);
        let e = format!("{:#}", write_package(&s, dir.path()).unwrap_err());
        assert!(e.contains(want), "want `{want}` in: {e}");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "{want}");
    }
}

#[test]
fn host_linux_binary_is_refused() {
    let Ok(bin) = std::fs::read("/bin/true") else {
        eprintln!("SKIP: no /bin/true");
        return;
    };
    let mut s = spec(Target::X86_64);
    s.files[1].contents = bin;
    let e = format!("{:#}", s.validate().unwrap_err());
    assert!(e.contains("no FreeBSD ABI note"), "{e}");
}

// ---- scripts: run them for real with /bin/sh and a stand-in `pw` ----

fn script(s: &PackageSpec, kind: &str) -> String {
    let (_d, _p, bytes) = write(s);
    let m = manifest_of(&bytes);
    url_unescape(m["scripts"][kind].as_str().unwrap())
}

fn run_sh(body: &str, env: &[(&str, &str)]) -> std::process::Output {
    let mut c = std::process::Command::new("/bin/sh");
    c.arg("-c").arg(body);
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

#[test]
fn every_script_parses_with_sh_n() {
    let (_d, _p, bytes) = write(&spec(Target::X86_64));
    let m = manifest_of(&bytes);
    let scripts = m["scripts"].as_object().unwrap();
    let kinds: Vec<&str> = scripts.keys().map(String::as_str).collect();
    assert_eq!(
        kinds,
        [
            "pre-install",
            "post-install",
            "pre-deinstall",
            "post-deinstall"
        ]
    );
    for (k, body) in scripts {
        assert_sh_parses(k, &url_unescape(body.as_str().unwrap()));
    }
}

#[test]
fn pre_install_creates_group_and_user_the_ports_way() {
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    let log = dir.path().join("pw.log");
    // Stand-in pw: logs its arguments; `*show` fails (account absent) unless EXISTS is set.
    let pw = format!(
        "#!/bin/sh\necho \"$@\" >> '{}'\ncase \"$*\" in *show*) [ -n \"$EXISTS\" ]; exit $?;; esac\nexit 0\n",
        log.display()
    );
    std::fs::write(bin.join("pw"), pw).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(bin.join("pw"), std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let path = format!("{}:/usr/bin:/bin", bin.display());
    let body = script(&spec(Target::X86_64), "pre-install");
    let root = dir.path().join("jail");

    let out = run_sh(
        &body,
        &[("PATH", &path), ("PKG_ROOTDIR", root.to_str().unwrap())],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let calls = std::fs::read_to_string(&log).unwrap();
    let r = root.display();
    assert_eq!(
        calls,
        format!(
            "-R {r} groupshow nats\n-R {r} groupadd nats -g 305\n-R {r} usershow nats\n\
             -R {r} useradd nats -u 305 -g 305 -c NATS Daemon -d /nonexistent -s /usr/sbin/nologin\n"
        )
    );

    // PKG_ROOTDIR "/" (or unset) means plain `pw`; existing accounts are left alone.
    std::fs::remove_file(&log).unwrap();
    let out = run_sh(
        &body,
        &[("PATH", &path), ("PKG_ROOTDIR", "/"), ("EXISTS", "1")],
    );
    assert!(out.status.success());
    assert_eq!(
        std::fs::read_to_string(&log).unwrap(),
        "groupshow nats\nusershow nats\n"
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("Using existing user nats"));

    // A failing pw aborts the install (non-zero exit).
    std::fs::write(bin.join("pw"), "#!/bin/sh\nexit 1\n").unwrap();
    let out = run_sh(&body, &[("PATH", &path), ("PKG_ROOTDIR", "/")]);
    assert!(!out.status.success());
}

#[test]
fn sample_config_semantics() {
    let s = spec(Target::X86_64);
    let post_install = script(&s, "post-install");
    let pre_deinstall = script(&s, "pre-deinstall");
    let root = tempfile::tempdir().unwrap();
    let env = [("PKG_ROOTDIR", root.path().to_str().unwrap())];
    let etc = root.path().join("usr/local/etc");
    std::fs::create_dir_all(&etc).unwrap();
    let (sample, conf) = (etc.join("nats.conf.sample"), etc.join("nats.conf"));
    std::fs::write(&sample, SAMPLE).unwrap();

    // Install: copied when absent.
    assert!(run_sh(&post_install, &env).status.success());
    assert_eq!(std::fs::read(&conf).unwrap(), SAMPLE);
    // Deinstall: removed when unchanged.
    assert!(run_sh(&pre_deinstall, &env).status.success());
    assert!(!conf.exists());
    // Install over an admin's config: kept; deinstall: a changed config is kept.
    std::fs::write(&conf, b"port: 5000\n").unwrap();
    assert!(run_sh(&post_install, &env).status.success());
    assert_eq!(std::fs::read(&conf).unwrap(), b"port: 5000\n");
    assert!(run_sh(&pre_deinstall, &env).status.success());
    assert_eq!(std::fs::read(&conf).unwrap(), b"port: 5000\n");
    assert!(sample.exists());
}

#[test]
fn no_account_and_no_sample_means_no_scripts() {
    let mut s = spec(Target::X86_64);
    s.account = None;
    s.files.retain(|f| !f.sample);
    s.messages.clear();
    s.conflicts.clear();
    let (_d, p, bytes) = write(&s);
    let m = manifest_of(&bytes);
    for k in ["scripts", "users", "groups", "messages", "conflicts"] {
        assert!(!m.contains_key(k), "{k}");
    }
    assert!(verify(&p).is_ok());
}

// ---- verify ----

#[test]
fn verify_accepts_what_we_write() {
    for t in Target::ALL {
        let (_d, p, _) = write(&spec(t));
        let r = verify(&p);
        assert!(r.is_ok(), "{r}");
        assert_eq!(r.name.as_deref(), Some("natsd"));
        assert_eq!(r.abi, Some(t.abi(14)));
        let m = manifest_of(&std::fs::read(&p).unwrap());
        assert_eq!(m["arch"].as_str(), Some(t.legacy_arch(14).as_str()));
        assert_eq!(r.files.len(), 3);
        assert_eq!(r.manifest.as_ref().unwrap()["origin"], "net/natsd");
        assert!(r.to_string().ends_with("3 files: OK"), "{r}");
    }
}

fn tampered(f: impl Fn(&mut Vec<(String, tar::Header, Vec<u8>)>)) -> Report {
    let (d, p, bytes) = write(&spec(Target::X86_64));
    let mut e = entries(&bytes);
    f(&mut e);
    let out = d.path().join("tampered.pkg");
    std::fs::write(&out, repack(&e)).unwrap();
    let r = verify(&out);
    // The untouched original is still fine (the tamper helper itself is sound).
    assert!(verify(&p).is_ok());
    r
}

fn edit_manifests(
    e: &mut [(String, tar::Header, Vec<u8>)],
    f: impl Fn(&mut serde_json::Map<String, Value>),
) {
    for (name, _, data) in e.iter_mut().filter(|(n, _, _)| n.starts_with('+')) {
        let mut m: serde_json::Map<String, Value> = serde_json::from_slice(data).unwrap();
        f(&mut m);
        *data = serde_json::to_vec(&m).unwrap();
        let _ = name;
    }
}

#[test]
fn verify_catches_a_tampered_file() {
    let r = tampered(|e| {
        let rc = e
            .iter_mut()
            .find(|(n, _, _)| n == "/usr/local/etc/rc.d/nats")
            .unwrap();
        let last = rc.2.len() - 2;
        rc.2[last] ^= 1; // same size, different bytes
    });
    assert_eq!(r.problems.len(), 1, "{r}");
    assert!(
        r.problems[0].contains("/usr/local/etc/rc.d/nats`: checksum mismatch"),
        "{r}"
    );
}

#[test]
fn verify_catches_missing_and_unlisted_files() {
    let r = tampered(|e| e.retain(|(n, _, _)| n != "/usr/local/etc/rc.d/nats"));
    let text = r.to_string();
    assert!(
        text.contains("`/usr/local/etc/rc.d/nats` is listed in `files` but not in the archive"),
        "{text}"
    );
    assert!(text.contains("flatsize is"), "{text}");

    let r = tampered(|e| {
        let mut extra = e[2].clone();
        extra.0 = "/usr/local/bin/extra".into();
        extra
            .1
            .set_path_absolute(Path::new("/usr/local/bin/extra"))
            .unwrap();
        e.push(extra);
    });
    assert!(
        r.to_string()
            .contains("`/usr/local/bin/extra` is archived but not listed"),
        "{r}"
    );
}

#[test]
fn verify_catches_wrong_abi() {
    let r = tampered(|e| {
        edit_manifests(e, |m| {
            m.insert("abi".into(), "FreeBSD:14:aarch64".into());
            m.insert("arch".into(), "freebsd:14:aarch64:64".into());
        })
    });
    let text = r.to_string();
    assert!(
        text.contains("`/usr/local/bin/natsd` does not match abi `FreeBSD:14:aarch64`"),
        "{text}"
    );
    assert!(text.contains("ELF machine is 62"), "{text}");

    let r = tampered(|e| {
        edit_manifests(e, |m| {
            m.insert("arch".into(), "freebsd:15:x86:64".into());
        })
    });
    assert!(
        r.to_string()
            .contains("arch `freebsd:15:x86:64` does not match abi"),
        "{r}"
    );
}

#[test]
fn verify_catches_metadata_order_missing_keys_and_relative_names() {
    let r = tampered(|e| {
        let m = e.remove(1);
        e.push(m);
    });
    assert!(r.to_string().contains("comes before +MANIFEST"), "{r}");

    let r = tampered(|e| {
        edit_manifests(e, |m| {
            m.shift_remove("maintainer");
            m.insert("flatsize".into(), "big".into());
        })
    });
    let text = r.to_string();
    assert!(
        text.contains("required key `maintainer` is missing"),
        "{text}"
    );
    assert!(
        text.contains("`flatsize` must be a non-negative integer"),
        "{text}"
    );

    let r = tampered(|e| {
        let rc = e
            .iter_mut()
            .find(|(n, _, _)| n == "/usr/local/etc/rc.d/nats")
            .unwrap();
        rc.1.set_path("usr/local/etc/rc.d/nats").unwrap();
    });
    assert!(r.to_string().contains("relative name"), "{r}");

    let r = tampered(|e| {
        let rc = e
            .iter_mut()
            .find(|(n, _, _)| n == "/usr/local/etc/rc.d/nats")
            .unwrap();
        rc.1.set_username("www").unwrap();
    });
    assert!(r.to_string().contains("owned by user `www`"), "{r}");

    let r = tampered(|e| {
        let bin = e
            .iter_mut()
            .find(|(n, _, _)| n == "/usr/local/bin/natsd")
            .unwrap();
        bin.1.set_mode(0o4755);
    });
    assert_eq!(r.problems.len(), 1, "{r}");
    assert!(r.problems[0].contains("mode 4755"), "{r}");
}

#[test]
fn verify_reports_unreadable_and_garbage_files() {
    let dir = tempfile::tempdir().unwrap();
    let r = verify(&dir.path().join("absent.pkg"));
    assert!(!r.is_ok() && r.problems[0].contains("cannot read"), "{r}");
    let junk = dir.path().join("junk.pkg");
    std::fs::write(&junk, b"hello").unwrap();
    assert!(verify(&junk).problems[0].contains("neither gzip nor a tar"));
    // Truncated package: a problem, not a panic.
    let (_d, _p, bytes) = write(&spec(Target::X86_64));
    std::fs::write(&junk, &bytes[..bytes.len() / 2]).unwrap();
    assert!(!verify(&junk).is_ok());
}

#[test]
fn from_meta_reads_assets_and_message() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir_all(root.join("pkg/rc.d")).unwrap();
    std::fs::write(root.join("pkg/rc.d/nats"), RC).unwrap();
    std::fs::write(root.join("pkg/nats.conf.sample"), SAMPLE).unwrap();
    std::fs::write(root.join("pkg/pkg-message"), "Enable it.\n").unwrap();
    std::fs::write(root.join("natsd"), branded(AARCH64_BIN)).unwrap();
    let real = crate::metadata::PackageMeta::load(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml"),
        "natsd",
    )
    .unwrap();
    let meta = crate::metadata::PackageMeta {
        workspace_root: root.to_path_buf(),
        ..real
    };
    let s = PackageSpec::from_meta(&meta, &root.join("natsd"), Target::Aarch64, 15, 7).unwrap();
    assert_eq!(s.abi(), "FreeBSD:15:aarch64");
    assert_eq!(s.licenses, ["APACHE20"]);
    assert_eq!(s.account.as_ref().unwrap().uid, 305);
    assert_eq!(s.messages[0].text, "Enable it.\n");
    let bin = s
        .files
        .iter()
        .find(|f| f.path == "/usr/local/bin/natsd")
        .unwrap();
    assert_eq!(bin.mode, 0o755);
    assert!(s
        .files
        .iter()
        .any(|f| f.sample && f.sample_target() == Some("/usr/local/etc/nats.conf")));
    let p = write_package(&s, &root.join("out")).unwrap();
    assert!(verify(&p).is_ok(), "{}", verify(&p));

    // A missing asset names the file and the Cargo.toml.
    std::fs::remove_file(root.join("pkg/rc.d/nats")).unwrap();
    let e = format!(
        "{:#}",
        PackageSpec::from_meta(&meta, &root.join("natsd"), Target::Aarch64, 15, 7).unwrap_err()
    );
    assert!(
        e.contains("pkg/rc.d/nats") && e.contains("Cargo.toml"),
        "{e}"
    );
}

#[test]
fn libarchive_reads_names_modes_and_owners() {
    // pkg reads packages with libarchive; bsdtar is libarchive's CLI. Skip where it is absent
    // (Debian: libarchive-tools).
    let (_d, path, bytes) = write(&spec(Target::X86_64));
    let out = match std::process::Command::new("bsdtar")
        .arg("-tvf")
        .arg(&path)
        .output()
    {
        Ok(o) if o.status.success() => o,
        _ => {
            eprintln!("SKIP: bsdtar (libarchive) not installed");
            return;
        }
    };
    let listing = String::from_utf8(out.stdout).unwrap();
    let rows: Vec<Vec<&str>> = listing
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    let got: Vec<(&str, &str, &str, &str)> = rows
        .iter()
        .map(|r| (r[0], r[2], r[3], *r.last().unwrap()))
        .collect();
    assert_eq!(
        got,
        [
            ("-rw-r--r--", "root", "wheel", "+COMPACT_MANIFEST"),
            ("-rw-r--r--", "root", "wheel", "+MANIFEST"),
            ("-rwxr-xr-x", "root", "wheel", "/usr/local/bin/natsd"),
            (
                "-rw-r--r--",
                "root",
                "wheel",
                "/usr/local/etc/nats.conf.sample"
            ),
            ("-rwxr-xr-x", "root", "wheel", "/usr/local/etc/rc.d/nats"),
        ]
    );
    let m = std::process::Command::new("bsdtar")
        .args(["-xOf"])
        .arg(&path)
        .arg("+MANIFEST")
        .output()
        .unwrap();
    assert_eq!(m.stdout, entries(&bytes)[1].2);
}

#[test]
fn verify_never_panics_on_corrupted_archives() {
    // Flip bytes all over the uncompressed tar (headers, manifest JSON, file data), re-gzip,
    // verify: every outcome must be a Report, and a changed byte that matters must be noticed.
    let (d, _p, bytes) = write(&spec(Target::X86_64));
    let mut tar = Vec::new();
    flate2::read::GzDecoder::new(bytes.as_slice())
        .read_to_end(&mut tar)
        .unwrap();
    let out = d.path().join("c.pkg");
    let mut noticed = 0;
    let mut tried = 0;
    for i in (0..tar.len()).step_by(29) {
        let mut t = tar.clone();
        t[i] ^= 0x5a;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, &t).unwrap();
        std::fs::write(&out, gz.finish().unwrap()).unwrap();
        tried += 1;
        if !verify(&out).is_ok() {
            noticed += 1;
        }
    }
    // Most flips land in data or meaningful header fields; padding flips are harmless.
    eprintln!("{noticed}/{tried} corruptions noticed");
    assert!(noticed * 2 > tried, "{noticed}/{tried} corruptions noticed");
}

#[test]
fn elf_inspect_never_panics_on_corrupted_headers() {
    for bin in [X86_64_BIN, AARCH64_BIN] {
        for i in 0..bin.len().min(1024) {
            for x in [0xff, 0x80, 0x01] {
                let mut b = bin.to_vec();
                b[i] ^= x;
                let _ = crate::elf::inspect(&b);
            }
        }
        for n in 0..bin.len() {
            let _ = crate::elf::inspect(&bin[..n]);
        }
    }
}

#[test]
fn verify_read_hands_back_the_bytes_it_checked() {
    let (d, path, bytes) = write(&spec(Target::X86_64));
    let (report, data) = verify_read(&path);
    assert!(report.is_ok(), "{report}");
    assert_eq!(report, verify(&path));
    assert_eq!(data.as_deref(), Some(bytes.as_slice()));

    let missing = d.path().join("absent.pkg");
    let (report, data) = verify_read(&missing);
    assert!(data.is_none());
    assert!(
        report.problems.len() == 1 && report.problems[0].starts_with("cannot read the file: "),
        "{report}"
    );
}
