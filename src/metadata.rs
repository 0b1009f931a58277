//! The packaging facts of the broker, read from Cargo.toml the cargo-deb way.
//!
//! Cargo's own `[package]` keys give name, version, description, license and homepage/repository
//! (through `cargo metadata`, so workspace inheritance is resolved by Cargo, not by us). What Cargo
//! has no key for lives in `[package.metadata.freebsd]` of the packaged crate:
//!
//! ```toml
//! [package.metadata.freebsd]
//! origin = "net/natsd"            # ports-style category/name
//! comment = "one line"            # pkg's `comment`
//! maintainer = "me@example.org"
//! categories = ["net"]
//! license = "APACHE20"            # FreeBSD license name, not SPDX
//! prefix = "/usr/local"
//! user = "nats"                   # optional as a group: user, group, uid, gid, gecos
//! group = "nats"
//! uid = 305
//! gid = 305
//! gecos = "NATS Daemon"
//! conflicts = ["nats-server-*"]   # optional
//! rc_name = "nats"                # optional: the rc.d service name
//! message = "pkg/pkg-message"     # optional: plain text shown after install
//! assets = [                      # source (workspace-relative, or "$BINARY") -> dest, mode, sample
//!   { source = "$BINARY", dest = "/usr/local/bin/natsd", mode = "0755" },
//!   { source = "pkg/nats.conf.sample", dest = "/usr/local/etc/nats.conf.sample", mode = "0644", sample = true },
//! ]
//! ```
//!
//! Unknown keys are refused (a typo must not silently drop a file from the package); every error
//! names the key and the Cargo.toml it is missing from.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use serde::Deserialize;

/// The `source` of the asset that is the compiled binary (filled in by the build step).
pub const BINARY_SOURCE: &str = "$BINARY";

/// Everything natspkg needs to know about the package, from one crate's Cargo.toml.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PackageMeta {
    pub name: String,
    pub version: String,
    /// Cargo `description`: becomes the package `desc`.
    pub description: String,
    /// Cargo `license` (SPDX); informative only, the package uses `freebsd.license`.
    pub license: Option<String>,
    pub homepage: Option<String>,
    pub repository: Option<String>,
    /// The Cargo.toml these facts came from (used in error messages).
    pub manifest_path: PathBuf,
    /// Workspace root: asset `source` paths are relative to it.
    pub workspace_root: PathBuf,
    pub freebsd: FreeBsdMeta,
}

/// The `[package.metadata.freebsd]` table.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FreeBsdMeta {
    pub origin: String,
    pub comment: String,
    pub maintainer: String,
    pub categories: Vec<String>,
    /// FreeBSD license name(s) as the ports tree spells them (`APACHE20`, `BSD2CLAUSE`, ...).
    pub license: String,
    pub prefix: String,
    pub user: Option<String>,
    pub group: Option<String>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub gecos: Option<String>,
    #[serde(default)]
    pub conflicts: Vec<String>,
    pub rc_name: Option<String>,
    /// Workspace-relative path of the pkg-message text.
    pub message: Option<String>,
    pub assets: Vec<AssetMeta>,
}

/// One `assets` entry as written in Cargo.toml.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssetMeta {
    /// Workspace-relative path, or [`BINARY_SOURCE`].
    pub source: String,
    /// Absolute install path.
    pub dest: String,
    /// Octal permission bits as a string, e.g. `"0755"`.
    pub mode: String,
    /// A ports `@sample` config: `dest` ends in `.sample`, and install copies it to the name without
    /// the suffix unless that exists.
    #[serde(default)]
    pub sample: bool,
}

/// The service account, when the package declares one (all of user, group, uid, gid, gecos).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Account {
    pub user: String,
    pub group: String,
    pub uid: u32,
    pub gid: u32,
    pub gecos: String,
}

impl AssetMeta {
    /// The permission bits, parsed from the octal string.
    pub fn mode_bits(&self) -> Result<u32> {
        let m = u32::from_str_radix(self.mode.trim_start_matches("0o"), 8)
            .ok()
            .filter(|m| *m <= 0o7777)
            .ok_or_else(|| {
                anyhow!(
                    "asset `{}`: mode `{}` is not an octal permission like \"0755\"",
                    self.dest,
                    self.mode
                )
            })?;
        Ok(m)
    }
}

impl FreeBsdMeta {
    /// The service account, or `None` when no `user` is declared. Partial declarations are errors.
    pub fn account(&self) -> Result<Option<Account>> {
        let any = self.user.is_some()
            || self.group.is_some()
            || self.uid.is_some()
            || self.gid.is_some()
            || self.gecos.is_some();
        if !any {
            return Ok(None);
        }
        let need = |k: &str, present: bool| {
            if present {
                Ok(())
            } else {
                Err(anyhow!(
                    "missing key `{k}` (user, group, uid, gid and gecos go together)"
                ))
            }
        };
        need("user", self.user.is_some())?;
        need("group", self.group.is_some())?;
        need("uid", self.uid.is_some())?;
        need("gid", self.gid.is_some())?;
        need("gecos", self.gecos.is_some())?;
        Ok(Some(Account {
            user: self.user.clone().unwrap_or_default(),
            group: self.group.clone().unwrap_or_default(),
            uid: self.uid.unwrap_or_default(),
            gid: self.gid.unwrap_or_default(),
            gecos: self.gecos.clone().unwrap_or_default(),
        }))
    }

    fn validate(&self) -> Result<()> {
        for (key, v) in [
            ("origin", &self.origin),
            ("comment", &self.comment),
            ("maintainer", &self.maintainer),
            ("license", &self.license),
            ("prefix", &self.prefix),
        ] {
            if v.trim().is_empty() {
                bail!("key `{key}` is empty");
            }
        }
        if !self.origin.contains('/') {
            bail!(
                "key `origin` = `{}` must be `category/name` like `net/natsd`",
                self.origin
            );
        }
        if !self.prefix.starts_with('/') {
            bail!("key `prefix` = `{}` must be an absolute path", self.prefix);
        }
        if self.categories.is_empty() {
            bail!("key `categories` is empty: name at least one, e.g. [\"net\"]");
        }
        if self.assets.is_empty() {
            bail!("key `assets` is empty: nothing to package");
        }
        for a in &self.assets {
            a.mode_bits()?;
            if !a.dest.starts_with('/') {
                bail!("asset `{}`: `dest` must be an absolute path", a.dest);
            }
            if a.sample && !a.dest.ends_with(".sample") {
                bail!(
                    "asset `{}`: a `sample = true` asset must be installed as `<config>.sample`",
                    a.dest
                );
            }
        }
        self.account()?;
        Ok(())
    }
}

impl PackageMeta {
    /// Reads the package `package` of the workspace whose (root or member) Cargo.toml is
    /// `manifest_path`, by running `cargo metadata --no-deps`.
    pub fn load(manifest_path: &Path, package: &str) -> Result<PackageMeta> {
        let md = cargo_metadata::MetadataCommand::new()
            .manifest_path(manifest_path)
            .no_deps()
            .exec()
            .with_context(|| {
                format!(
                    "cannot read {} with `cargo metadata`",
                    manifest_path.display()
                )
            })?;
        PackageMeta::from_metadata(&md, package)
    }

    /// Extracts the package facts from already-obtained `cargo metadata` output.
    pub fn from_metadata(md: &cargo_metadata::Metadata, package: &str) -> Result<PackageMeta> {
        let Some(p) = md.packages.iter().find(|p| p.name.as_str() == package) else {
            let names: Vec<&str> = md.packages.iter().map(|p| p.name.as_str()).collect();
            bail!(
                "package `{package}` is not in the workspace at {} (it has: {})",
                md.workspace_root,
                names.join(", ")
            );
        };
        let file = p.manifest_path.as_std_path().to_path_buf();
        let description = p
            .description
            .clone()
            .filter(|d| !d.trim().is_empty())
            .ok_or_else(|| {
                anyhow!(
                    "missing key `description` in [package] of {}: it becomes the package's `desc`",
                    file.display()
                )
            })?;
        if p.homepage.is_none() && p.repository.is_none() {
            bail!(
                "missing key `homepage` (or `repository`) in [package] of {}: it becomes the package's `www`",
                file.display()
            );
        }
        let table = p.metadata.get("freebsd").ok_or_else(|| {
            anyhow!(
                "no [package.metadata.freebsd] table in {}: natspkg reads origin, comment, maintainer, \
                 categories, license, prefix and assets from it",
                file.display()
            )
        })?;
        let freebsd = FreeBsdMeta::deserialize(table)
            .map_err(anyhow::Error::from)
            .and_then(|f| f.validate().map(|_| f))
            .with_context(|| format!("in [package.metadata.freebsd] of {}", file.display()))?;
        Ok(PackageMeta {
            name: p.name.to_string(),
            version: p.version.to_string(),
            description,
            license: p.license.clone(),
            homepage: p.homepage.clone(),
            repository: p.repository.clone(),
            manifest_path: file,
            workspace_root: md.workspace_root.as_std_path().to_path_buf(),
            freebsd,
        })
    }

    /// The package `www`: Cargo `homepage`, else `repository`.
    pub fn www(&self) -> &str {
        self.homepage
            .as_deref()
            .or(self.repository.as_deref())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn project(dir: &Path, freebsd: &str) -> PathBuf {
        let toml = format!(
            "[package]\nname = \"demo\"\nversion = \"1.2.3\"\nedition = \"2021\"\n\
             description = \"A demo\"\nlicense = \"MIT\"\nrepository = \"https://example.org/demo\"\n\
             [workspace]\n{freebsd}"
        );
        std::fs::create_dir_all(dir.join("src")).unwrap();
        std::fs::write(dir.join("src/main.rs"), "fn main() {}\n").unwrap();
        std::fs::write(dir.join("Cargo.toml"), toml).unwrap();
        dir.join("Cargo.toml")
    }

    const GOOD: &str = r#"
[package.metadata.freebsd]
origin = "net/demo"
comment = "Demo"
maintainer = "a@b.c"
categories = ["net"]
license = "MIT"
prefix = "/usr/local"
assets = [{ source = "$BINARY", dest = "/usr/local/bin/demo", mode = "0755" }]
"#;

    #[test]
    fn reads_the_real_broker_metadata() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let m = PackageMeta::load(&root.join("Cargo.toml"), "natsd").unwrap();
        assert_eq!(m.name, "natsd");
        assert_eq!(m.freebsd.origin, "net/natsd");
        assert_eq!(m.www(), "https://github.com/natspkg/natspkg");
        let acc = m.freebsd.account().unwrap().unwrap();
        assert_eq!((acc.user.as_str(), acc.uid, acc.gid), ("nats", 305, 305));
        assert_eq!(m.freebsd.assets[0].source, BINARY_SOURCE);
        assert_eq!(m.freebsd.assets[0].mode_bits().unwrap(), 0o755);
        assert!(m.freebsd.assets.iter().any(|a| a.sample));
        assert_eq!(m.workspace_root, root);
    }

    #[test]
    fn minimal_table_without_account() {
        let dir = tempfile::tempdir().unwrap();
        let m = PackageMeta::load(&project(dir.path(), GOOD), "demo").unwrap();
        assert_eq!(m.version, "1.2.3");
        assert_eq!(m.description, "A demo");
        assert_eq!(m.www(), "https://example.org/demo");
        assert_eq!(m.freebsd.account().unwrap(), None);
        assert!(m.freebsd.conflicts.is_empty());
    }

    #[test]
    fn missing_key_names_key_and_file() {
        let dir = tempfile::tempdir().unwrap();
        let bad = GOOD.replace("origin = \"net/demo\"\n", "");
        let e = format!(
            "{:#}",
            PackageMeta::load(&project(dir.path(), &bad), "demo").unwrap_err()
        );
        assert!(e.contains("`origin`") && e.contains("Cargo.toml"), "{e}");
    }

    #[test]
    fn typo_wrong_type_and_bad_mode_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let typo = GOOD.replace("comment =", "coment =");
        let e = format!(
            "{:#}",
            PackageMeta::load(&project(dir.path(), &typo), "demo").unwrap_err()
        );
        assert!(e.contains("coment"), "{e}");

        let d2 = tempfile::tempdir().unwrap();
        let bad_mode = GOOD.replace("\"0755\"", "\"rwx\"");
        let e = format!(
            "{:#}",
            PackageMeta::load(&project(d2.path(), &bad_mode), "demo").unwrap_err()
        );
        assert!(e.contains("mode `rwx`"), "{e}");

        let d3 = tempfile::tempdir().unwrap();
        let partial = format!("{GOOD}user = \"nats\"\n");
        let e = format!(
            "{:#}",
            PackageMeta::load(&project(d3.path(), &partial), "demo").unwrap_err()
        );
        assert!(e.contains("missing key `group`"), "{e}");
    }

    #[test]
    fn missing_table_or_package_is_explained() {
        let dir = tempfile::tempdir().unwrap();
        let path = project(dir.path(), "");
        let e = format!("{:#}", PackageMeta::load(&path, "demo").unwrap_err());
        assert!(e.contains("no [package.metadata.freebsd] table"), "{e}");
        let e = format!("{:#}", PackageMeta::load(&path, "nope").unwrap_err());
        assert!(
            e.contains("`nope` is not in the workspace") && e.contains("demo"),
            "{e}"
        );
    }
}
