//! `natspkg build` end to end, through the real binary: both FreeBSD targets built for real
//! (cargo-zigbuild, fat LTO), the packages verified, the ELF inside checked, the build repeated
//! and compared byte for byte; then the failure paths users hit (unknown target, a crate that
//! does not compile, missing tools, an unwritable output directory).
//!
//! Each target is built once per test run into one directory and once more into another (the
//! second build reuses cargo's output, so it costs seconds): one test function per target does
//! every check on that pair, so the minutes of compiling are not repeated per assertion.
//!
//! Needs what `.ci/run` provisions (`natspkg doctor --fix`): rustup with the FreeBSD x86_64 std,
//! the pinned nightly with rust-src, and the zig venv in natspkg's cache.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use natspkg::elf;
use natspkg::pkg::manifest::sha256_hex;

const NATSPKG: &str = env!("CARGO_BIN_EXE_natspkg");

fn workspace_manifest() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml")
}

fn natspkg(args: &[&str]) -> Command {
    let mut c = Command::new(NATSPKG);
    c.args(args);
    c
}

fn run(mut c: Command) -> Output {
    c.output().expect("cannot run the natspkg binary")
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// Every `.pkg` (or temp package) file under `dir`.
fn packages_under(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return found;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            found.extend(packages_under(&p));
        } else if p.to_string_lossy().contains(".pkg") {
            found.push(p);
        }
    }
    found
}

/// One `package <path> <human> (<n> bytes) sha256 <hex>` line of the summary.
#[derive(Debug)]
struct SummaryLine {
    path: PathBuf,
    bytes: u64,
    sha256: String,
}

fn summary_packages(stdout: &str) -> Vec<SummaryLine> {
    stdout
        .lines()
        .filter(|l| l.trim_start().starts_with("package "))
        .map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            let bytes_at = w
                .iter()
                .position(|x| *x == "bytes)")
                .expect("`(N bytes)` in the line");
            let sha_at = w
                .iter()
                .position(|x| *x == "sha256")
                .expect("`sha256` in the line");
            SummaryLine {
                path: PathBuf::from(w[1]),
                bytes: w[bytes_at - 1]
                    .trim_start_matches('(')
                    .parse()
                    .expect("byte count"),
                sha256: w[sha_at + 1].to_string(),
            }
        })
        .collect()
}

/// The contents of `name` inside a gzip'd tar, read independently of natspkg's reader.
fn file_in_package(pkg: &Path, name: &str) -> Vec<u8> {
    let gz = flate2::read::GzDecoder::new(std::fs::File::open(pkg).unwrap());
    let mut ar = tar::Archive::new(gz);
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        if e.path().unwrap().to_string_lossy() == name.trim_start_matches('/')
            || e.path().unwrap().to_string_lossy() == name
        {
            let mut v = Vec::new();
            e.read_to_end(&mut v).unwrap();
            return v;
        }
    }
    panic!("{name} is not in {}", pkg.display());
}

fn build_into(target: &str, out: &Path) -> Output {
    let mut c = natspkg(&["build", "--target", target, "--out"]);
    c.arg(out).arg("--manifest-path").arg(workspace_manifest());
    run(c)
}

/// `readelf` from binutils as a second opinion on the ELF facts, when the host has it.
fn readelf(args: &[&str], file: &Path) -> Option<String> {
    let o = Command::new("readelf").args(args).arg(file).output().ok()?;
    o.status
        .success()
        .then(|| String::from_utf8_lossy(&o.stdout).into_owned())
}

/// Builds `target` twice and checks everything about the result.
fn build_verify_and_rebuild(target: &str, machine: u16, arch: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let first = tmp.path().join("first");
    let o = build_into(target, &first);
    let (stdout, stderr) = text(&o);
    assert!(o.status.success(), "build failed:\n{stdout}\n{stderr}");

    // The summary names each artefact with its real size and checksum.
    let lines = summary_packages(&stdout);
    assert_eq!(lines.len(), 1, "one package line expected:\n{stdout}");
    let pkg = first.join(target).join("natsd-0.1.0.pkg");
    let line = &lines[0];
    assert_eq!(line.path, pkg, "{stdout}");
    let bytes = std::fs::read(&pkg).unwrap();
    assert_eq!(line.bytes, bytes.len() as u64, "{stdout}");
    assert_eq!(line.sha256, sha256_hex(&bytes), "{stdout}");
    let template = first.join(target).join("template");
    assert!(
        stdout.contains(&format!("template  {}", template.display())),
        "{stdout}"
    );
    assert!(
        template.join("Bastillefile").is_file(),
        "no Bastillefile in {}",
        template.display()
    );
    // Nothing but the package and the template in the target's directory (no temp files left).
    let mut names: Vec<String> = std::fs::read_dir(first.join(target))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["natsd-0.1.0.pkg", "template"]);

    // `natspkg verify` accepts it and names the ABI.
    let mut c = natspkg(&["verify"]);
    c.arg(&pkg);
    let v = run(c);
    let (vout, verr) = text(&v);
    assert!(v.status.success(), "verify failed:\n{vout}\n{verr}");
    assert!(
        vout.contains(&format!("(FreeBSD:14:{arch})")) && vout.contains("OK"),
        "{vout}"
    );

    // ... and refuses the same package with one byte changed.
    let mut bad = bytes.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 0x55;
    let bad_path = tmp.path().join("tampered.pkg");
    std::fs::write(&bad_path, &bad).unwrap();
    let mut c = natspkg(&["verify"]);
    c.arg(&bad_path);
    let v = run(c);
    assert!(
        !v.status.success(),
        "a damaged package passed verify: {:?}",
        text(&v)
    );

    // The binary inside is a FreeBSD 14 executable for the right machine, branded, base libs only.
    let bin = file_in_package(&pkg, "/usr/local/bin/natsd");
    assert_eq!(&bin[..4], b"\x7fELF");
    assert_eq!(
        bin[7], 9,
        "EI_OSABI must be 9 (FreeBSD), as brandelf sets it"
    );
    assert_eq!(u16::from_le_bytes([bin[18], bin[19]]), machine, "e_machine");
    let info = elf::inspect(&bin).unwrap();
    assert_eq!(info.interpreter.as_deref(), Some("/libexec/ld-elf.so.1"));
    let osreldate = info.osreldate.expect("FreeBSD ABI note");
    assert_eq!(
        osreldate / 100_000,
        14,
        "ABI note {osreldate} is not FreeBSD 14"
    );
    assert!(
        info.needed.iter().any(|l| l == "libc.so.7"),
        "{:?}",
        info.needed
    );
    for lib in &info.needed {
        assert!(
            ["libc.so.7", "libthr.so.3", "libm.so.5"].contains(&lib.as_str()),
            "natsd needs {lib}, not in the FreeBSD base system set zig links against"
        );
    }
    // No builder paths in the shipped binary (natspkg remaps them): same bytes on any machine.
    let home = std::env::var("HOME").unwrap_or_default();
    let dir = |var: &str, default: &str| {
        std::env::var(var)
            .ok()
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| format!("{home}/{default}"))
    };
    for leak in [
        dir("CARGO_HOME", ".cargo"),
        dir("RUSTUP_HOME", ".rustup"),
        env!("CARGO_MANIFEST_DIR").to_string(),
    ] {
        assert!(
            !bin.windows(leak.len()).any(|w| w == leak.as_bytes()),
            "the binary contains the builder's path {leak}"
        );
    }
    let extracted = tmp.path().join("natsd");
    std::fs::write(&extracted, &bin).unwrap();
    if let Some(h) = readelf(&["-h"], &extracted) {
        assert!(h.contains("FreeBSD"), "readelf -h: {h}");
    }
    if let Some(l) = readelf(&["-l"], &extracted) {
        assert!(
            l.contains("[Requesting program interpreter: /libexec/ld-elf.so.1]"),
            "{l}"
        );
    }
    if let Some(d) = readelf(&["-d"], &extracted) {
        let needed: Vec<&str> = d.lines().filter(|l| l.contains("(NEEDED)")).collect();
        assert_eq!(needed.len(), info.needed.len(), "{d}");
    }

    // Same inputs, same bytes: a second build into another directory.
    let second = tmp.path().join("second");
    let o = build_into(target, &second);
    assert!(o.status.success(), "second build failed: {:?}", text(&o));
    let again = std::fs::read(second.join(target).join("natsd-0.1.0.pkg")).unwrap();
    assert!(again == bytes, "the package is not reproducible");
}

#[test]
fn x86_64_package_builds_verifies_and_is_reproducible() {
    build_verify_and_rebuild("x86_64-unknown-freebsd", 62, "amd64");
}

#[test]
fn aarch64_package_builds_verifies_and_is_reproducible() {
    build_verify_and_rebuild("aarch64-unknown-freebsd", 183, "aarch64");
}

/// No `--target`: both packages, in one summary; `--quiet` leaves stderr empty. Runs after (or
/// waits on cargo's lock for) the per-target tests, so the compiles are already done.
#[test]
fn without_target_both_are_built_and_quiet_prints_only_the_summary() {
    let tmp = tempfile::tempdir().unwrap();
    let mut c = natspkg(&["build", "--quiet", "--out"]);
    c.arg(tmp.path())
        .arg("--manifest-path")
        .arg(workspace_manifest());
    let o = run(c);
    let (stdout, stderr) = text(&o);
    assert!(o.status.success(), "{stdout}\n{stderr}");
    assert_eq!(stderr, "", "--quiet printed progress");
    let lines = summary_packages(&stdout);
    let paths: Vec<&Path> = lines.iter().map(|l| l.path.as_path()).collect();
    assert_eq!(
        paths,
        [
            tmp.path().join("x86_64-unknown-freebsd/natsd-0.1.0.pkg"),
            tmp.path().join("aarch64-unknown-freebsd/natsd-0.1.0.pkg"),
        ]
    );
    for l in &lines {
        assert_eq!(l.sha256, sha256_hex(&std::fs::read(&l.path).unwrap()));
    }
}

#[test]
fn freebsd_15_packages_carry_the_15_abi() {
    let tmp = tempfile::tempdir().unwrap();
    let mut c = natspkg(&[
        "build",
        "-q",
        "--freebsd",
        "15",
        "--target",
        "x86_64-unknown-freebsd",
        "--out",
    ]);
    c.arg(tmp.path())
        .arg("--manifest-path")
        .arg(workspace_manifest());
    let o = run(c);
    assert!(o.status.success(), "{:?}", text(&o));
    let pkg = tmp.path().join("x86_64-unknown-freebsd/natsd-0.1.0.pkg");
    let report = natspkg::pkg::verify(&pkg);
    assert!(report.is_ok(), "{report}");
    assert_eq!(report.abi.as_deref(), Some("FreeBSD:15:amd64"));
    let manifest = file_in_package(&pkg, "+MANIFEST");
    let m: serde_json::Value = serde_json::from_slice(&manifest).unwrap();
    assert_eq!(m["arch"], "freebsd:15:x86:64");
}

#[test]
fn unknown_target_is_refused_with_the_supported_list() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let mut c = natspkg(&["build", "--target", "armv7-unknown-freebsd", "--out"]);
    c.arg(&out);
    let o = run(c);
    let (_, stderr) = text(&o);
    assert!(!o.status.success());
    assert!(stderr.contains("armv7-unknown-freebsd"), "{stderr}");
    assert!(
        stderr.contains("x86_64-unknown-freebsd") && stderr.contains("aarch64-unknown-freebsd"),
        "{stderr}"
    );
    assert!(!out.exists());
}

#[test]
fn unsupported_freebsd_major_is_refused() {
    let o = run(natspkg(&["build", "--freebsd", "13"]));
    let (_, stderr) = text(&o);
    assert!(!o.status.success());
    assert!(stderr.contains("14") && stderr.contains("15"), "{stderr}");
}

/// A workspace with a crate named natsd, the packaging metadata, and a syntax error: the real
/// compile runs (cargo-zigbuild, zig linker wrappers) and fails in the compiler, in about a second
/// since there are no dependencies.
fn broken_workspace(dir: &Path) -> PathBuf {
    let ws = dir.join("ws");
    std::fs::create_dir_all(ws.join("src")).unwrap();
    std::fs::write(
        ws.join("Cargo.toml"),
        r#"[package]
name = "natsd"
version = "0.0.1"
edition = "2021"
description = "does not compile, on purpose"
repository = "https://example.org/natsd"

[workspace]

[package.metadata.freebsd]
origin = "net/natsd"
comment = "broken"
maintainer = "a@example.org"
categories = ["net"]
license = "APACHE20"
prefix = "/usr/local"
assets = [{ source = "$BINARY", dest = "/usr/local/bin/natsd", mode = "0755" }]
"#,
    )
    .unwrap();
    std::fs::write(
        ws.join("src/main.rs"),
        "fn main() {\n    let broken = ;\n}\n",
    )
    .unwrap();
    ws.join("Cargo.toml")
}

#[test]
fn a_crate_that_does_not_compile_fails_the_named_step_and_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let manifest = broken_workspace(tmp.path());
    let out = tmp.path().join("out");
    let mut c = natspkg(&["build", "--target", "x86_64-unknown-freebsd", "--out"]);
    c.arg(&out).arg("--manifest-path").arg(&manifest);
    let o = run(c);
    let (stdout, stderr) = text(&o);
    assert!(!o.status.success(), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("compiling natsd for x86_64-unknown-freebsd failed"),
        "{stderr}"
    );
    // The compiler's own diagnosis is shown, not just "exit status 101".
    assert!(stderr.contains("expected expression"), "{stderr}");
    assert!(stderr.contains("src/main.rs"), "{stderr}");
    assert!(stderr.contains("--verbose"), "{stderr}");
    assert!(
        !stdout.contains("package "),
        "no summary on failure: {stdout}"
    );
    assert!(
        packages_under(&out).is_empty(),
        "{:?}",
        packages_under(&out)
    );
    // natspkg used its own target dir, inside the built workspace.
    assert!(tmp.path().join("ws/target/freebsd").is_dir());
}

#[test]
fn verbose_streams_the_compiler_output() {
    let tmp = tempfile::tempdir().unwrap();
    let manifest = broken_workspace(tmp.path());
    let mut c = natspkg(&[
        "build",
        "--verbose",
        "--target",
        "x86_64-unknown-freebsd",
        "--out",
    ]);
    c.arg(tmp.path().join("out"))
        .arg("--manifest-path")
        .arg(&manifest);
    let o = run(c);
    let (_, stderr) = text(&o);
    assert!(!o.status.success());
    // The command line is echoed, the compiler's output came through, and the error points at it.
    assert!(stderr.contains("zigbuild --release -p natsd"), "{stderr}");
    assert!(stderr.contains("expected expression"), "{stderr}");
    assert!(stderr.contains("see the compiler output above"), "{stderr}");
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

#[test]
fn without_python3_the_error_names_the_packages_to_install_and_nothing_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    // PATH holds rustup and nothing else; natspkg's cache is empty, so zig must be installed,
    // which needs python3.
    let bin = tmp.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let rustup = which("rustup").expect("rustup on PATH (the tests need it)");
    std::os::unix::fs::symlink(&rustup, bin.join("rustup")).unwrap();
    let out = tmp.path().join("out");
    let cache = tmp.path().join("cache");
    let mut c = natspkg(&["build", "--target", "x86_64-unknown-freebsd", "--out"]);
    c.arg(&out)
        .arg("--manifest-path")
        .arg(workspace_manifest())
        .env("PATH", &bin)
        .env("NATSPKG_CACHE_DIR", &cache);
    let o = run(c);
    let (_, stderr) = text(&o);
    assert!(!o.status.success());
    assert!(stderr.contains("python3 is not on PATH"), "{stderr}");
    assert!(
        stderr.contains("python3-venv"),
        "names the Debian package: {stderr}"
    );
    assert!(
        stderr.contains("pkg install python3"),
        "names the FreeBSD package: {stderr}"
    );
    assert!(!out.exists(), "the output directory was created");
    assert!(!cache.join("venv").exists(), "a venv was left behind");
}

#[test]
fn without_rustup_the_error_says_where_to_get_it_and_nothing_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    let empty = tmp.path().join("empty-bin");
    std::fs::create_dir_all(&empty).unwrap();
    let out = tmp.path().join("out");
    let mut c = natspkg(&["build", "--out"]);
    c.arg(&out)
        .arg("--manifest-path")
        .arg(workspace_manifest())
        .env("PATH", &empty);
    let o = run(c);
    let (_, stderr) = text(&o);
    assert!(!o.status.success());
    assert!(
        stderr.contains("rustup is not on PATH") && stderr.contains("https://rustup.rs"),
        "{stderr}"
    );
    assert!(!out.exists());
}

#[test]
fn an_output_path_that_is_a_file_is_refused_before_compiling() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("not-a-dir");
    std::fs::write(&file, b"x").unwrap();
    let mut c = natspkg(&["build", "--target", "x86_64-unknown-freebsd", "--out"]);
    c.arg(file.join("dist"))
        .arg("--manifest-path")
        .arg(workspace_manifest());
    let o = run(c);
    let (_, stderr) = text(&o);
    assert!(!o.status.success());
    assert!(
        stderr.contains("cannot create the output directory"),
        "{stderr}"
    );
    assert!(stderr.contains("--out"), "says how to fix it: {stderr}");
    // Refused before the compile step started.
    assert!(!stderr.contains("compiling natsd"), "{stderr}");
    assert!(packages_under(tmp.path()).is_empty());
}

#[test]
fn an_unwritable_output_directory_is_refused_and_left_clean() {
    // /proc/self exists but takes no new files, even for root (chmod does not stop root).
    let proc_self = Path::new("/proc/self");
    if !proc_self.is_dir() {
        eprintln!("skipped: no /proc on this host");
        return;
    }
    let mut c = natspkg(&[
        "build",
        "--target",
        "x86_64-unknown-freebsd",
        "--out",
        "/proc/self",
    ]);
    c.arg("--manifest-path").arg(workspace_manifest());
    let o = run(c);
    let (_, stderr) = text(&o);
    assert!(!o.status.success());
    assert!(
        stderr.contains("/proc/self is not writable") && stderr.contains("--out"),
        "{stderr}"
    );
    assert!(!stderr.contains("compiling natsd"), "{stderr}");
}

#[test]
fn verify_reports_a_file_that_is_not_a_package() {
    let tmp = tempfile::tempdir().unwrap();
    let f = tmp.path().join("natsd-0.1.0.pkg");
    std::fs::write(&f, b"definitely not a package").unwrap();
    let mut c = natspkg(&["verify"]);
    c.arg(&f).arg(tmp.path().join("missing.pkg"));
    let o = run(c);
    let (stdout, _) = text(&o);
    assert!(!o.status.success());
    assert!(
        stdout.contains("natsd-0.1.0.pkg") && stdout.contains("problem"),
        "{stdout}"
    );
    assert!(
        stdout.contains("missing.pkg") && stdout.contains("cannot read"),
        "{stdout}"
    );
}

#[test]
fn doctor_lists_every_tool_and_an_empty_cache_is_reported_missing() {
    // With natspkg's real cache (provisioned by `doctor --fix` in CI) everything is present.
    let o = run(natspkg(&["doctor"]));
    let (stdout, stderr) = text(&o);
    for item in [
        "rustup",
        "Rust std for x86_64-unknown-freebsd",
        "nightly-2026-05-20 + rust-src",
        "python3 + venv",
        "zig 0.17.1",
        "cargo-zigbuild 0.24.1",
    ] {
        assert!(
            stdout.contains(item),
            "doctor does not list {item}:\n{stdout}"
        );
    }
    assert!(
        o.status.success(),
        "doctor finds something missing:\n{stdout}\n{stderr}"
    );

    // With an empty cache, zig and cargo-zigbuild are missing, the fix is named, exit non-zero.
    let tmp = tempfile::tempdir().unwrap();
    let mut c = natspkg(&["doctor"]);
    c.env("NATSPKG_CACHE_DIR", tmp.path());
    let o = run(c);
    let (stdout, _) = text(&o);
    assert!(!o.status.success(), "{stdout}");
    let zig_line = stdout
        .lines()
        .find(|l| l.contains("zig 0.17.1"))
        .expect("a zig line");
    assert!(
        zig_line.contains("MISSING") && zig_line.contains("natspkg doctor --fix"),
        "{zig_line}"
    );
    // A doctor run installs nothing.
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0);
}
