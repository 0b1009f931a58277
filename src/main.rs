//! The `natspkg` command line. Argument parsing, the closing summary and error printing live
//! here; the work is in the library (`compile::build`, `toolchain`, `pkg::verify`, `template`).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};

use natspkg::compile::{self, Backend, BuildOptions};
use natspkg::progress::{Progress, Verbosity};
use natspkg::target::{Target, DEFAULT_FREEBSD, SUPPORTED_FREEBSD};
use natspkg::{pkg, template, toolchain};

#[derive(Parser, Debug)]
#[command(
    name = "natspkg",
    version,
    about = "Cross-compile the natsd NATS broker for FreeBSD, package it for pkg(8) and emit a Bastille template"
)]
struct Cli {
    /// Print only errors (and the closing summary).
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    quiet: bool,
    /// Show the compiler's and installers' full output.
    #[arg(short, long, global = true)]
    verbose: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Compile natsd for FreeBSD, package it (.pkg) and emit a Bastille template per target.
    Build {
        /// Target triple; repeat for several. Default: all supported targets.
        #[arg(long = "target", value_name = "TRIPLE", value_parser = Target::parse)]
        targets: Vec<Target>,
        /// FreeBSD major the packages are for (pkg refuses a package of another major).
        #[arg(long, value_name = "MAJOR", default_value_t = DEFAULT_FREEBSD, value_parser = parse_major)]
        freebsd: u32,
        /// How to compile.
        #[arg(long, value_enum, default_value_t = Backend::Zig)]
        backend: Backend,
        /// Output directory: <out>/<triple>/natsd-<version>.pkg and <out>/<triple>/template/.
        #[arg(long, value_name = "DIR", default_value = "dist")]
        out: PathBuf,
        /// Cargo.toml of the workspace to build. Default: the nearest one from the current directory up.
        #[arg(long, value_name = "PATH")]
        manifest_path: Option<PathBuf>,
        /// The crate to package (its binary has the same name).
        #[arg(short, long, value_name = "CRATE", default_value = "natsd")]
        package: String,
    },
    /// Show which build tools are present and which are missing.
    Doctor {
        /// Install what is missing (Rust std/nightly via rustup, zig and cargo-zigbuild from PyPI).
        #[arg(long)]
        fix: bool,
    },
    /// Check .pkg files the way pkg(8) would read them; exits non-zero on any problem.
    Verify {
        #[arg(value_name = "FILE.pkg", required = true)]
        packages: Vec<PathBuf>,
    },
    /// Emit a Bastille template that installs an existing package.
    Template {
        /// The .pkg to install in the jail.
        #[arg(long, value_name = "FILE.pkg")]
        package: PathBuf,
        /// Directory to create (Bastillefile, files/, README.md).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
}

fn parse_major(s: &str) -> Result<u32, String> {
    let list = SUPPORTED_FREEBSD
        .iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    match s.parse::<u32>() {
        Ok(m) if SUPPORTED_FREEBSD.contains(&m) => Ok(m),
        _ => Err(format!(
            "unsupported FreeBSD major `{s}`: natspkg packages for {list} (13 is end-of-life and zig cannot target it)"
        )),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let verbosity = if cli.quiet {
        Verbosity::Quiet
    } else if cli.verbose {
        Verbosity::Verbose
    } else {
        Verbosity::Normal
    };
    let progress = Progress::new(verbosity);
    match run(cli.command, &progress) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            for cause in e.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            ExitCode::FAILURE
        }
    }
}

fn run(command: Command, progress: &Progress) -> Result<ExitCode> {
    match command {
        Command::Build {
            targets,
            freebsd,
            backend,
            out,
            manifest_path,
            package,
        } => {
            let manifest_path = match manifest_path {
                Some(p) => p,
                None => find_manifest()?,
            };
            let mut chosen: Vec<Target> = Vec::new();
            for t in if targets.is_empty() {
                Target::ALL.to_vec()
            } else {
                targets
            } {
                if !chosen.contains(&t) {
                    chosen.push(t);
                }
            }
            let opts = BuildOptions {
                manifest_path,
                package,
                targets: chosen,
                freebsd_major: freebsd,
                backend,
                out_dir: out,
            };
            let artefacts = compile::build(&opts, progress)?;
            print_summary(&opts, &artefacts);
            Ok(ExitCode::SUCCESS)
        }
        Command::Doctor { fix } => doctor(fix, progress),
        Command::Verify { packages } => {
            let mut ok = true;
            for p in &packages {
                let report = pkg::verify(p);
                ok &= report.is_ok();
                println!("{}", report.to_string().trim_end());
            }
            Ok(if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Template { package, out } => {
            let dir = template::emit(&package, &out).with_context(|| {
                format!(
                    "emitting a Bastille template for {} failed",
                    package.display()
                )
            })?;
            println!("Bastille template: {}", dir.display());
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The nearest Cargo.toml from the current directory up, like cargo finds one.
fn find_manifest() -> Result<PathBuf> {
    let cwd = std::env::current_dir().context("cannot read the current directory")?;
    for dir in cwd.ancestors() {
        let m = dir.join("Cargo.toml");
        if m.is_file() {
            return Ok(m);
        }
    }
    bail!(
        "no Cargo.toml in {} or above: run natspkg inside the natspkg checkout, or pass --manifest-path",
        cwd.display()
    )
}

fn print_summary(opts: &BuildOptions, artefacts: &[compile::Artefact]) {
    println!(
        "built {} package(s) for FreeBSD {} ({} backend):",
        artefacts.len(),
        opts.freebsd_major,
        opts.backend.name()
    );
    for a in artefacts {
        println!(
            "  package   {}  {} ({} bytes)  sha256 {}",
            a.package.display(),
            compile::human_size(a.size),
            a.size,
            a.sha256
        );
        println!(
            "  template  {}  (natsd binary {} for {})",
            a.template.display(),
            compile::human_size(a.binary_size),
            a.target
        );
    }
}

fn doctor(fix: bool, progress: &Progress) -> Result<ExitCode> {
    if fix {
        toolchain::ensure_zig_backend(&Target::ALL, progress)
            .context("installing the missing build tools failed")?;
    }
    let cache = toolchain::cache_dir()
        .map(|c| c.display().to_string())
        .unwrap_or_else(|e| format!("{e:#}"));
    println!("natspkg doctor (cache: {cache})");
    let checks = toolchain::doctor();
    let width = checks.iter().map(|c| c.what.len()).max().unwrap_or(0);
    for c in &checks {
        let (tag, text) = match &c.status {
            toolchain::Status::Ok(s) => ("ok", s.clone()),
            toolchain::Status::Missing(fix) => ("MISSING", format!("fix: {fix}")),
            toolchain::Status::Info(s) => ("info", s.clone()),
        };
        println!("  {tag:<8} {:<width$}  {text}", c.what);
    }
    let missing = checks.iter().filter(|c| c.is_missing()).count();
    if missing == 0 {
        println!("everything `natspkg build` needs is present");
        Ok(ExitCode::SUCCESS)
    } else {
        println!(
            "{missing} missing: run `natspkg doctor --fix` (it installs all but rustup and python3)"
        );
        Ok(ExitCode::FAILURE)
    }
}
