//! `natspkg build`: compile natsd for each FreeBSD target, check and brand the binary, package it,
//! verify the package, emit the Bastille template.
//!
//! Backends:
//! - `zig` (default, any Linux or FreeBSD host, no sysroot): `cargo zigbuild`, with the pinned
//!   nightly and `-Zbuild-std` for the Tier 3 aarch64 target. The plain triple is passed: for
//!   FreeBSD cargo-zigbuild hands zig `-target <arch>-freebsd` whatever version suffix it is
//!   given (the `.2.17`-style suffix is a glibc feature), and zig 0.17's FreeBSD default is the
//!   14.0 floor the package needs (ABI note 1400500, symbols up to FBSD_1.7), checked below by
//!   `elf::check_file`;
//! - `cross` (cross-rs, for users with a container engine; see Cross.toml);
//! - `native` (`cargo build` on a FreeBSD host of the same architecture).
//!
//! Every backend builds into `<workspace>/target/freebsd`, never the caller's target directory:
//! `cargo test` holds the lock on `target/` while the integration tests run `natspkg build`, and a
//! nested cargo waiting for the same lock would deadlock.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::metadata::PackageMeta;
use crate::progress::Progress;
use crate::target::Target;
use crate::toolchain::{self, ZigBackend};
use crate::{elf, pkg};

/// How natsd gets compiled.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Backend {
    /// cargo-zigbuild with zig from PyPI (no Docker, no sysroot).
    #[default]
    Zig,
    /// cross-rs in Docker/Podman (FreeBSD 13 sysroot images; see Cross.toml).
    Cross,
    /// Plain cargo on a FreeBSD host.
    Native,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::Zig => "zig",
            Backend::Cross => "cross",
            Backend::Native => "native",
        }
    }
}

/// What `natspkg build` was asked to do.
#[derive(Clone, Debug)]
pub struct BuildOptions {
    /// A Cargo.toml of the workspace (root or member).
    pub manifest_path: PathBuf,
    /// The packaged crate (its binary has the same name).
    pub package: String,
    pub targets: Vec<Target>,
    pub freebsd_major: u32,
    pub backend: Backend,
    /// Packages go to `<out_dir>/<triple>/<name>-<version>.pkg`.
    pub out_dir: PathBuf,
}

/// One finished target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Artefact {
    pub target: Target,
    pub package: PathBuf,
    /// Size of the .pkg in bytes.
    pub size: u64,
    /// SHA-256 of the .pkg (what a pkg repository's `sum` is).
    pub sha256: String,
    /// Size of the (stripped, branded) natsd binary inside.
    pub binary_size: u64,
    /// The Bastille template directory.
    pub template: PathBuf,
}

/// A backend with its tools found (and provisioned, for zig).
#[derive(Clone, Debug)]
pub enum Prepared {
    Zig(ZigBackend),
    Cross { cross: PathBuf },
    Native,
}

/// Finds (and for zig installs) what `backend` needs for `targets`. Runs before anything is
/// written to the output directory.
pub fn prepare(backend: Backend, targets: &[Target], progress: &Progress) -> Result<Prepared> {
    match backend {
        Backend::Zig => toolchain::ensure_zig_backend(targets, progress)
            .map(Prepared::Zig)
            .context("preparing the zig toolchain failed"),
        Backend::Cross => {
            let cross = toolchain::find_in_path("cross").context(
                "the cross backend needs cross-rs on PATH: `cargo install cross --git \
                 https://github.com/cross-rs/cross` (the released 0.2.5 has no aarch64 FreeBSD \
                 image); or use the default `--backend zig`, which needs no Docker",
            )?;
            toolchain::container_engine().context(
                "the cross backend runs its builds in containers: start Docker or Podman \
                 (cross uses CROSS_CONTAINER_ENGINE, else docker, else podman); or use the \
                 default `--backend zig`",
            )?;
            Ok(Prepared::Cross { cross })
        }
        Backend::Native => {
            if !cfg!(target_os = "freebsd") {
                bail!(
                    "the native backend builds on a FreeBSD host only (this is {}); use the \
                     default `--backend zig` to cross-compile from here",
                    std::env::consts::OS
                );
            }
            for t in targets {
                if t.elf_machine() != host_machine() {
                    bail!(
                        "the native backend builds for this host's architecture only ({}), not \
                         {t}; use `--backend zig` to cross-compile",
                        std::env::consts::ARCH
                    );
                }
            }
            Ok(Prepared::Native)
        }
    }
}

fn host_machine() -> u16 {
    match std::env::consts::ARCH {
        "x86_64" => 62,
        "aarch64" => 183,
        _ => 0,
    }
}

/// natspkg's own target directory inside the workspace.
pub fn target_dir(workspace_root: &Path) -> PathBuf {
    workspace_root.join("target").join("freebsd")
}

/// Compiles `package` for `target` with the prepared backend and returns the binary's path.
/// On failure the error names the step and ends with the compiler's last lines.
pub fn compile(
    meta: &PackageMeta,
    target: Target,
    backend: &Prepared,
    progress: &Progress,
) -> Result<PathBuf> {
    let root = &meta.workspace_root;
    let tdir = target_dir(root);
    let sh = xshell::Shell::new().context("cannot start a shell for cargo")?;
    sh.change_dir(root);
    fn common<'a>(
        cmd: xshell::Cmd<'a>,
        meta: &PackageMeta,
        target: Target,
        tdir: &Path,
    ) -> xshell::Cmd<'a> {
        cmd.args(["--release", "-p", &meta.name, "--target", target.triple()])
            .arg("--manifest-path")
            .arg(&meta.manifest_path)
            .arg("--target-dir")
            .arg(tdir)
            // The proxies must pick the toolchain: a CARGO/RUSTC inherited from an outer cargo
            // (e.g. `cargo test`) points at one toolchain's binaries and would ignore ours.
            .env_remove("CARGO")
            .env_remove("RUSTC")
            .env_remove("RUSTDOC")
            .env_remove("CARGO_TARGET_DIR")
            .env_remove("CARGO_BUILD_TARGET")
    }
    let (tool, cmd) = match backend {
        Prepared::Zig(z) => {
            let mut cmd = common(
                sh.cmd(&z.tools.cargo_zigbuild).arg("zigbuild"),
                meta,
                target,
                &tdir,
            );
            for (k, v) in z.tools.env(z.rustup.parent()) {
                cmd = cmd.env(k, v);
            }
            if target.needs_build_std() {
                cmd = cmd
                    .arg("-Zbuild-std=std,panic_abort")
                    .env("RUSTUP_TOOLCHAIN", toolchain::NIGHTLY);
            }
            ("cargo zigbuild", cmd)
        }
        Prepared::Cross { cross } => {
            let mut cmd = sh.cmd(cross);
            if target.needs_build_std() {
                // build-std comes from Cross.toml; it needs a nightly.
                cmd = cmd.arg(format!("+{}", toolchain::NIGHTLY));
            }
            ("cross build", common(cmd.arg("build"), meta, target, &tdir))
        }
        Prepared::Native => (
            "cargo build",
            common(sh.cmd("cargo").arg("build"), meta, target, &tdir),
        ),
    };
    // Inside cross's container the host paths do not exist; elsewhere strip them from the binary.
    let cmd = match backend {
        Prepared::Cross { .. } => cmd,
        _ => cmd.arg("--config").arg(remap_config(target, root)),
    };
    let what = format!("compiling {} for {target}", meta.name);
    let step = progress.step(format!("{what} ({})", tool));
    let out = toolchain::run(cmd, progress.is_verbose())
        .with_context(|| format!("{what} failed: cannot start `{tool}`"))?;
    if !out.status.success() {
        let detail = if progress.is_verbose() {
            "see the compiler output above".to_string()
        } else {
            format!(
                "its last lines:\n{}\n(run with --verbose for the full output)",
                toolchain::tail(out.text.trim_end(), 40)
            )
        };
        bail!(
            "{what} failed: `{tool}` exited with {}; {detail}",
            out.status
        );
    }
    let bin = tdir.join(target.triple()).join("release").join(&meta.name);
    if !bin.is_file() {
        bail!(
            "{what}: `{tool}` succeeded but produced no {} (does the crate have a binary named `{}`?)",
            bin.display(),
            meta.name
        );
    }
    step.done(human_size(file_size(&bin)));
    Ok(bin)
}

/// A `--config` value that adds `--remap-path-prefix` for the builder's cargo home, rustup home
/// (std's sources under build-std) and workspace to the target's rustflags, so panic locations in
/// the shipped binary say `/cargo/registry/...` instead of `/home/<builder>/.cargo/...`, and the
/// same sources give the same binary on any machine. `--config` arrays are appended to what cargo
/// config files set; a `RUSTFLAGS` in the environment replaces them all (cargo's rule).
pub fn remap_config(target: Target, workspace_root: &Path) -> String {
    let home = std::env::var_os("HOME").map(PathBuf::from);
    let dir = |var: &str, default: &str| {
        std::env::var_os(var)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .or_else(|| home.as_ref().map(|h| h.join(default)))
    };
    let mut flags = Vec::new();
    for (from, to) in [
        (dir("CARGO_HOME", ".cargo"), "/cargo"),
        (dir("RUSTUP_HOME", ".rustup"), "/rustup"),
        (Some(workspace_root.to_path_buf()), "/natspkg"),
    ] {
        if let Some(from) = from {
            let flag = format!("--remap-path-prefix={}={to}", from.display());
            // A JSON string is a valid TOML basic string (same escapes).
            flags.push(serde_json::Value::String(flag).to_string());
        }
    }
    format!(
        "target.{}.rustflags=[{}]",
        target.triple(),
        flags.join(", ")
    )
}

/// Fails early (before minutes of compiling) when `out` cannot hold the packages: creates it
/// and writes then removes a probe file.
pub fn check_out_dir(out: &Path) -> Result<()> {
    std::fs::create_dir_all(out).with_context(|| {
        format!(
            "cannot create the output directory {} (is it a file, or under a read-only place?); \
             choose another with --out",
            out.display()
        )
    })?;
    tempfile::Builder::new()
        .prefix(".natspkg-probe-")
        .tempfile_in(out)
        .with_context(|| {
            format!(
                "the output directory {} is not writable; choose another with --out",
                out.display()
            )
        })?;
    Ok(())
}

/// The whole `natspkg build`.
pub fn build(opts: &BuildOptions, progress: &Progress) -> Result<Vec<Artefact>> {
    if opts.targets.is_empty() {
        bail!("no target to build");
    }
    let backend = prepare(opts.backend, &opts.targets, progress)?;
    check_out_dir(&opts.out_dir)?;
    let meta = PackageMeta::load(&opts.manifest_path, &opts.package)
        .context("reading the packaging metadata failed")?;
    let mtime = pkg::mtime_from_env()?;
    let mut artefacts = Vec::new();
    for &target in &opts.targets {
        let bin = compile(&meta, target, &backend, progress)?;
        artefacts.push(
            package(
                &meta,
                &bin,
                target,
                opts.freebsd_major,
                mtime,
                &opts.out_dir,
                progress,
            )
            .with_context(|| format!("packaging {} for {target} failed", meta.name))?,
        );
    }
    Ok(artefacts)
}

/// Checks and brands a copy of the compiled binary (cargo's own output stays untouched), writes
/// and verifies the package, and emits the template.
pub fn package(
    meta: &PackageMeta,
    compiled: &Path,
    target: Target,
    freebsd_major: u32,
    mtime: u64,
    out_dir: &Path,
    progress: &Progress,
) -> Result<Artefact> {
    let step = progress.step(format!(
        "packaging {} {} for {} ({target})",
        meta.name,
        meta.version,
        target.abi(freebsd_major)
    ));
    let stage = tempfile::tempdir().context("cannot create a staging directory")?;
    let bin = stage.path().join(&meta.name);
    std::fs::copy(compiled, &bin)
        .with_context(|| format!("cannot copy {} to {}", compiled.display(), bin.display()))?;
    elf::check_file(&bin, target, freebsd_major)
        .context("the compiled binary would not run on FreeBSD")?;
    elf::brand(&bin)?;
    let spec = pkg::PackageSpec::from_meta(meta, &bin, target, freebsd_major, mtime)?;
    let dir = out_dir.join(target.triple());
    let path = pkg::write_package(&spec, &dir)?;
    let (report, bytes) = pkg::verify_read(&path);
    let bytes = match bytes {
        Some(b) if report.is_ok() => b,
        _ => {
            // Never leave a package behind that we would not install ourselves.
            let _ = std::fs::remove_file(&path);
            bail!("the written package failed verification (removed):\n{report}");
        }
    };
    step.done(human_size(bytes.len() as u64));

    let step = progress.step(format!("emitting the Bastille template for {target}"));
    let template = crate::template::emit_verified(&path, &bytes, &report, &dir.join("template"))
        .with_context(|| {
            format!(
                "emitting the Bastille template for {} failed",
                path.display()
            )
        })?;
    step.done("");
    Ok(Artefact {
        target,
        size: bytes.len() as u64,
        sha256: pkg::manifest::sha256_hex(&bytes),
        binary_size: file_size(&bin),
        package: path,
        template,
    })
}

fn file_size(p: &Path) -> u64 {
    std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)
}

/// `1.2 MiB`, `834 KiB`, `512 B`.
pub fn human_size(n: u64) -> String {
    const KIB: f64 = 1024.0;
    let f = n as f64;
    if f >= KIB * KIB {
        format!("{:.1} MiB", f / (KIB * KIB))
    } else if f >= KIB {
        format!("{:.0} KiB", f / KIB)
    } else {
        format!("{n} B")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_like_ls_h() {
        assert_eq!(human_size(512), "512 B");
        assert_eq!(human_size(2048), "2 KiB");
        assert_eq!(human_size(1_300_000), "1.2 MiB");
    }

    #[test]
    fn out_dir_that_is_a_file_is_refused_with_the_path() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("file");
        std::fs::write(&f, b"x").unwrap();
        let e = format!("{:#}", check_out_dir(&f.join("sub")).unwrap_err());
        assert!(
            e.contains("cannot create the output directory") && e.contains("--out"),
            "{e}"
        );
        // And a good one is created, with no probe left behind.
        let ok = d.path().join("a/b");
        check_out_dir(&ok).unwrap();
        assert_eq!(std::fs::read_dir(&ok).unwrap().count(), 0);
    }

    #[test]
    fn remap_config_is_a_toml_array_for_the_target() {
        let c = remap_config(Target::Aarch64, Path::new("/src/my \"ws\""));
        let (key, value) = c.split_once('=').unwrap();
        assert_eq!(key, "target.aarch64-unknown-freebsd.rustflags");
        let v: toml::Table = toml::from_str(&format!("x = {value}")).unwrap();
        let flags: Vec<&str> = v["x"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f.as_str().unwrap())
            .collect();
        assert!(
            flags.contains(&"--remap-path-prefix=/src/my \"ws\"=/natspkg"),
            "{flags:?}"
        );
        assert!(flags.iter().any(|f| f.ends_with("=/cargo")), "{flags:?}");
    }

    #[test]
    fn native_backend_is_refused_off_freebsd() {
        if cfg!(target_os = "freebsd") {
            return;
        }
        let e = prepare(Backend::Native, &[Target::X86_64], &Progress::silent()).unwrap_err();
        let e = format!("{e:#}");
        assert!(
            e.contains("FreeBSD host only") && e.contains("--backend zig"),
            "{e}"
        );
    }
}
