//! Writes FreeBSD pkg(8) packages (`.pkg`) and reads them back, following
//! `shared/docs/pkg-format.md` (facts checked against pkg 2.8).
//!
//! # Public API
//!
//! ```text
//! // src/pkg (this module)
//! pub struct PackageSpec { name, version, origin, comment, desc, maintainer, www, prefix: String,
//!                          target: Target, freebsd_major: u32, licenses, categories,
//!                          conflicts: Vec<String>, account: Option<Account>,
//!                          files: Vec<PackageFile>, messages: Vec<Message>, mtime: u64 }
//! impl PackageSpec {
//!     fn from_meta(meta: &PackageMeta, binary: &Path, target: Target, freebsd_major: u32,
//!                  mtime: u64) -> Result<PackageSpec>;  // reads assets + pkg-message (plain text)
//!     fn file_name(&self) -> String;                   // "natsd-0.1.0.pkg"
//!     fn abi(&self) -> String;                         // "FreeBSD:14:aarch64"
//!     fn arch(&self) -> String;                        // "freebsd:14:aarch64:64"
//!     fn flatsize(&self) -> u64;
//!     fn validate(&self) -> Result<()>;                // also elf::check + "branded" on ELF files
//! }
//! pub struct PackageFile { path: String, contents: Vec<u8>, mode: u32, sample: bool }
//!     fn sample_target(&self) -> Option<&str>;         // "/x/nats.conf.sample" -> "/x/nats.conf"
//! pub struct Message { text: String, kind: MessageKind }  // MessageKind::{Install, Upgrade, Remove}
//! pub use metadata::Account;                           // { user, group, uid, gid, gecos }
//! pub fn write_package(spec: &PackageSpec, out_dir: &Path) -> Result<PathBuf>;
//! pub fn mtime_from_env() -> Result<u64>;              // SOURCE_DATE_EPOCH, else DEFAULT_MTIME (0)
//! pub fn verify(path: &Path) -> Report;                // never panics, never Err
//! pub fn verify_read(path: &Path) -> (Report, Option<Vec<u8>>);  // and the bytes it checked
//! pub struct Report { path, name, version, abi: Option<String>, files: Vec<String>,
//!                     manifest: Option<Map<String, Value>>, problems: Vec<String> }
//!     fn is_ok(&self) -> bool;  impl Display            // "path: natsd 0.1.0 (abi), 3 files: OK"
//! pub mod manifest { manifest_json, compact_manifest_json, scripts, checksum, sha256_hex, .. }
//! pub const REQUIRED_KEYS, DEFAULT_MTIME;
//!
//! // src/elf.rs
//! pub fn inspect(data: &[u8]) -> Result<ElfInfo>;      // ElfInfo { machine, osabi, interpreter,
//!                                                      //   osreldate, needed }, .problems(t, major)
//! pub fn check(data: &[u8], t: Target, major: u32) -> Result<ElfInfo>;  // Err lists every problem
//! pub fn check_file(path: &Path, t: Target, major: u32) -> Result<ElfInfo>;
//! pub fn brand(path: &Path) -> Result<()>;             // EI_OSABI := 9, like brandelf -t FreeBSD
//! pub fn brand_bytes(data: &mut [u8]) -> Result<()>;
//!
//! // src/metadata.rs
//! pub fn PackageMeta::load(cargo_toml: &Path, package: &str) -> Result<PackageMeta>;
//! PackageMeta { name, version, description, license, homepage, repository, manifest_path,
//!               workspace_root, freebsd: FreeBsdMeta { origin, comment, .., rc_name, message,
//!               assets: Vec<AssetMeta { source, dest, mode, sample }> } }, .www()
//! ```
//!
//! Typical use by `natspkg build`:
//! ```no_run
//! # fn main() -> anyhow::Result<()> {
//! use natspkg::{elf, metadata::PackageMeta, pkg, target::Target};
//! # let (root, bin, out) = (std::path::Path::new("."), std::path::Path::new("natsd"), std::path::Path::new("dist"));
//! let meta = PackageMeta::load(&root.join("Cargo.toml"), "natsd")?;
//! elf::check_file(bin, Target::Aarch64, 14)?;  // refuse a binary that cannot run
//! elf::brand(bin)?;                            // EI_OSABI = FreeBSD, like brandelf
//! let spec = pkg::PackageSpec::from_meta(&meta, bin, Target::Aarch64, 14, pkg::mtime_from_env()?)?;
//! let path = pkg::write_package(&spec, out)?;  // <out>/natsd-<version>.pkg, atomically
//! let report = pkg::verify(&path);
//! anyhow::ensure!(report.is_ok(), "{report}");
//! # Ok(()) }
//! ```
//!
//! # What the package looks like
//! - gzip (header mtime 0, OS byte 255, level 9) around a ustar archive;
//! - `+COMPACT_MANIFEST`, then `+MANIFEST` (compact one-line JSON, pkg's key order), both 0644
//!   root/wheel mtime 0; then the files sorted by path, with ABSOLUTE names, the spec's mode,
//!   uname root / gname wheel (uid/gid 0) and mtime [`PackageSpec::mtime`];
//! - `files` map: path → `1$<sha256 hex>` (the form every pkg from 1.17 to 2.8 reads);
//! - service account created by `pre-install` the ports way (honours `PKG_ROOTDIR`); `@sample`
//!   configs done by `post-install` / `pre-deinstall` scripts.
//!
//! The same spec gives the same bytes (no clock, no host names, sorted entries), and the output
//! appears only once complete (temp file in the out dir, fsync, rename).

mod archive;
pub mod manifest;
mod verify;

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};

pub use crate::metadata::Account;
use crate::metadata::{PackageMeta, BINARY_SOURCE};
use crate::target::{Target, SUPPORTED_FREEBSD};
pub use verify::{verify, verify_read, Report};

/// mtime of the packaged files when `SOURCE_DATE_EPOCH` is not set: the Unix epoch, as pkg uses
/// for its own metadata entries. Any fixed value makes builds reproducible; this one is honest
/// about not knowing a real date.
pub const DEFAULT_MTIME: u64 = 0;

/// Keys pkg refuses to install without (`abi` is required in practice and always written).
pub const REQUIRED_KEYS: &[&str] = &[
    "name",
    "version",
    "origin",
    "comment",
    "desc",
    "maintainer",
    "www",
    "prefix",
    "abi",
];

/// Everything that goes into one `.pkg`. Build it with [`PackageSpec::from_meta`] or by hand.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PackageSpec {
    pub name: String,
    /// pkg version: `[0-9A-Za-z._,]` (no `-`: pkg splits `name-version` at the last `-`).
    pub version: String,
    /// `category/name`, e.g. `net/natsd`.
    pub origin: String,
    /// One line.
    pub comment: String,
    pub desc: String,
    pub maintainer: String,
    pub www: String,
    /// Absolute, e.g. `/usr/local`.
    pub prefix: String,
    pub target: Target,
    pub freebsd_major: u32,
    /// FreeBSD license names (`APACHE20`); with more than one, `licenselogic` is `and`.
    pub licenses: Vec<String>,
    pub categories: Vec<String>,
    /// Package name globs this one cannot be installed with, e.g. `nats-server-*`.
    pub conflicts: Vec<String>,
    /// Service account created by pre-install (never deleted on deinstall).
    pub account: Option<Account>,
    pub files: Vec<PackageFile>,
    pub messages: Vec<Message>,
    /// mtime of every packaged file (seconds since the epoch); see [`mtime_from_env`].
    pub mtime: u64,
}

/// One regular file of the package.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PackageFile {
    /// Absolute install path, e.g. `/usr/local/bin/natsd`.
    pub path: String,
    pub contents: Vec<u8>,
    /// Permission bits, e.g. `0o755`.
    pub mode: u32,
    /// A ports `@sample` config: `path` ends in `.sample`; post-install copies it to the path
    /// without the suffix if that does not exist, pre-deinstall removes the copy if unchanged.
    pub sample: bool,
}

/// A pkg-message entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub text: String,
    pub kind: MessageKind,
}

/// When pkg shows a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MessageKind {
    Install,
    Upgrade,
    Remove,
}

impl MessageKind {
    /// The manifest's `type` value.
    pub fn as_str(self) -> &'static str {
        match self {
            MessageKind::Install => "install",
            MessageKind::Upgrade => "upgrade",
            MessageKind::Remove => "remove",
        }
    }
}

impl PackageFile {
    /// For a sample config, the config path it is copied to (`nats.conf.sample` → `nats.conf`).
    pub fn sample_target(&self) -> Option<&str> {
        if self.sample {
            self.path.strip_suffix(".sample")
        } else {
            None
        }
    }
}

impl PackageSpec {
    /// Fills a spec from the Cargo metadata: reads every asset (relative to the workspace root;
    /// the `$BINARY` asset from `binary`, which must already be checked and branded) and the
    /// pkg-message file (plain text, shown after install).
    pub fn from_meta(
        meta: &PackageMeta,
        binary: &Path,
        target: Target,
        freebsd_major: u32,
        mtime: u64,
    ) -> Result<PackageSpec> {
        let fb = &meta.freebsd;
        let mut files = Vec::new();
        for a in &fb.assets {
            let src = if a.source == BINARY_SOURCE {
                binary.to_path_buf()
            } else {
                meta.workspace_root.join(&a.source)
            };
            let contents = std::fs::read(&src).with_context(|| {
                format!(
                    "cannot read asset `{}` (for {}) listed in {}",
                    src.display(),
                    a.dest,
                    meta.manifest_path.display()
                )
            })?;
            files.push(PackageFile {
                path: a.dest.clone(),
                contents,
                mode: a.mode_bits()?,
                sample: a.sample,
            });
        }
        let mut messages = Vec::new();
        if let Some(m) = &fb.message {
            let p = meta.workspace_root.join(m);
            let text = std::fs::read_to_string(&p).with_context(|| {
                format!(
                    "cannot read the pkg-message `{}` named by `message` in {}",
                    p.display(),
                    meta.manifest_path.display()
                )
            })?;
            messages.push(Message {
                text,
                kind: MessageKind::Install,
            });
        }
        let spec = PackageSpec {
            name: meta.name.clone(),
            version: meta.version.clone(),
            origin: fb.origin.clone(),
            comment: fb.comment.clone(),
            desc: meta.description.clone(),
            maintainer: fb.maintainer.clone(),
            www: meta.www().to_string(),
            prefix: fb.prefix.clone(),
            target,
            freebsd_major,
            licenses: fb.license.split_whitespace().map(String::from).collect(),
            categories: fb.categories.clone(),
            conflicts: fb.conflicts.clone(),
            account: fb
                .account()
                .with_context(|| format!("in {}", meta.manifest_path.display()))?,
            files,
            messages,
            mtime,
        };
        Ok(spec)
    }

    /// `<name>-<version>.pkg`.
    pub fn file_name(&self) -> String {
        format!("{}-{}.pkg", self.name, self.version)
    }

    /// The `abi` key: `FreeBSD:14:amd64`.
    pub fn abi(&self) -> String {
        self.target.abi(self.freebsd_major)
    }

    /// The legacy `arch` key: `freebsd:14:x86:64`.
    pub fn arch(&self) -> String {
        self.target.legacy_arch(self.freebsd_major)
    }

    /// Sum of the regular files' sizes (the manifest's `flatsize`).
    pub fn flatsize(&self) -> u64 {
        self.files.iter().map(|f| f.contents.len() as u64).sum()
    }

    /// Refuses a spec pkg would reject or that would install something broken. Each error says
    /// which field is wrong and what is expected.
    pub fn validate(&self) -> Result<()> {
        if self.name.is_empty()
            || self.name.starts_with('-')
            || !self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._+-".contains(c))
        {
            bail!(
                "package name `{}` must be non-empty [A-Za-z0-9._+-] not starting with `-`",
                self.name
            );
        }
        if self.version.is_empty()
            || !self
                .version
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._,".contains(c))
        {
            bail!(
                "version `{}` is not a pkg version: use [0-9A-Za-z._,] only (pkg splits \
                 name-version at the last `-`, so a Cargo pre-release like 1.0.0-rc.1 must be \
                 written e.g. 1.0.0.rc1)",
                self.version
            );
        }
        if !SUPPORTED_FREEBSD.contains(&self.freebsd_major) {
            bail!(
                "FreeBSD {} is not supported: natspkg packages for FreeBSD {}",
                self.freebsd_major,
                SUPPORTED_FREEBSD
                    .iter()
                    .map(u32::to_string)
                    .collect::<Vec<_>>()
                    .join(" and ")
            );
        }
        for (key, v) in [
            ("origin", &self.origin),
            ("comment", &self.comment),
            ("desc", &self.desc),
            ("maintainer", &self.maintainer),
            ("www", &self.www),
            ("prefix", &self.prefix),
        ] {
            if v.trim().is_empty() {
                bail!("`{key}` is empty: pkg refuses a package without it");
            }
        }
        if self.comment.contains('\n') {
            bail!("`comment` must be one line: {:?}", self.comment);
        }
        if !self.origin.contains('/') {
            bail!("`origin` `{}` must be `category/name`", self.origin);
        }
        if !self.prefix.starts_with('/') {
            bail!("`prefix` `{}` must be absolute", self.prefix);
        }
        if self.licenses.is_empty() {
            bail!("no license: name at least one FreeBSD license (e.g. APACHE20)");
        }
        if self.categories.is_empty() {
            bail!("no category: name at least one (e.g. net)");
        }
        if let Some(a) = &self.account {
            for (what, n) in [("user", &a.user), ("group", &a.group)] {
                let ok = n.len() <= 32
                    && n.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
                    && n.chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "_-".contains(c));
                if !ok {
                    bail!("{what} name `{n}` must match [a-z_][a-z0-9_-]* (at most 32 characters)");
                }
            }
            if a.gecos.chars().any(|c| c == ':' || c.is_control()) {
                bail!(
                    "gecos {:?} must not contain `:` or control characters",
                    a.gecos
                );
            }
        }
        if self.files.is_empty() {
            bail!("the package has no files");
        }
        // ustar's 11 octal digits; beyond that only GNU base-256 encoding, which old readers mangle.
        if self.mtime > 0o77777777777 {
            bail!(
                "mtime {} is after the year 2242 (the ustar limit); check SOURCE_DATE_EPOCH",
                self.mtime
            );
        }
        let mut seen = std::collections::BTreeSet::new();
        for f in &self.files {
            validate_path(&f.path)?;
            if !seen.insert(f.path.as_str()) {
                bail!("`{}` is listed twice", f.path);
            }
            if f.mode > 0o7777 {
                bail!(
                    "`{}`: mode {:o} is not a permission (max 7777)",
                    f.path,
                    f.mode
                );
            }
            if f.mode & 0o6002 != 0 {
                bail!(
                    "`{}`: mode {:04o} is setuid/setgid or world-writable; natsd needs neither",
                    f.path,
                    f.mode
                );
            }
            if f.sample && !f.path.ends_with(".sample") {
                bail!(
                    "`{}` is a sample config, so its name must end in `.sample`",
                    f.path
                );
            }
            if f.contents.starts_with(b"\x7fELF") {
                let info = crate::elf::check(&f.contents, self.target, self.freebsd_major)
                    .with_context(|| format!("`{}` cannot go into the package", f.path))?;
                if info.osabi != crate::elf::ELFOSABI_FREEBSD {
                    bail!(
                        "`{}` is not branded FreeBSD (EI_OSABI {}): brand it with natspkg::elf::brand first",
                        f.path,
                        info.osabi
                    );
                }
            }
        }
        for f in &self.files {
            if let Some(t) = f.sample_target() {
                if seen.contains(t) {
                    bail!("`{t}` is both packaged and generated from `{}`", f.path);
                }
            }
        }
        Ok(())
    }
}

/// An install path must be absolute and normal: pkg matches archive names against manifest keys
/// literally, so `//x`, `/./x` or a trailing `/` would make the install fail.
fn validate_path(p: &str) -> Result<()> {
    let bad = !p.starts_with('/')
        || p.ends_with('/')
        || p.split('/')
            .skip(1)
            .any(|c| c.is_empty() || c == "." || c == "..")
        || p.chars().any(char::is_control);
    if bad {
        bail!("install path `{p}` must be absolute and normalised (no `//`, `.`, `..`, trailing `/` or control characters)");
    }
    Ok(())
}

/// The mtime for packaged files: `SOURCE_DATE_EPOCH` when set (reproducible-builds.org), else
/// [`DEFAULT_MTIME`]. A set but unparsable value is an error, not silently ignored.
pub fn mtime_from_env() -> Result<u64> {
    match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(v) if !v.trim().is_empty() => v.trim().parse::<u64>().map_err(|_| {
            anyhow!(
                "SOURCE_DATE_EPOCH=`{v}` is not a number of seconds since 1970; unset it or fix it"
            )
        }),
        _ => Ok(DEFAULT_MTIME),
    }
}

/// Writes `<out_dir>/<name>-<version>.pkg` (creating `out_dir` if needed) and returns its path.
/// The spec is validated first; the file appears only when complete (temp file in `out_dir`,
/// fsync, rename), and a failure leaves nothing behind.
pub fn write_package(spec: &PackageSpec, out_dir: &Path) -> Result<PathBuf> {
    spec.validate()
        .with_context(|| format!("cannot package {} {}", spec.name, spec.version))?;
    let compact = manifest::compact_manifest_json(spec)?;
    let full = manifest::manifest_json(spec)?;
    let bytes = archive::build(spec, &compact, &full)?;
    let dest = out_dir.join(spec.file_name());
    archive::write_atomically(out_dir, &dest, &bytes)?;
    Ok(dest)
}

#[cfg(test)]
mod tests;
