//! Reads a `.pkg` back, offline, and checks what `pkg info -F` and `pkg check -s` would, plus what
//! `pkg add` would trip over: metadata block first, required keys and their types, every archived
//! file listed and every listed file archived, checksums, tar owners against the manifest,
//! `flatsize`, and the ABI against the ELF files inside.
//!
//! It never stops at the first problem and never panics on a damaged file: the [`Report`] lists
//! everything it found, so a user sees all that is wrong at once.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use super::manifest::{sha256_hex, url_unescape, COMPACT_EXCLUDED};
use super::REQUIRED_KEYS;
use crate::elf;
use crate::target::Target;

/// What [`verify`] found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    pub path: PathBuf,
    pub name: Option<String>,
    pub version: Option<String>,
    pub abi: Option<String>,
    /// Names of the archived files (not metadata), in archive order.
    pub files: Vec<String>,
    /// The parsed +MANIFEST, when it could be read (e.g. for `natspkg template` on an existing
    /// package: users, messages, scripts).
    pub manifest: Option<Map<String, Value>>,
    /// Everything wrong, one sentence each; empty when the package is sound.
    pub problems: Vec<String>,
}

impl Report {
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }

    fn problem(&mut self, p: impl Into<String>) {
        self.problems.push(p.into());
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match (&self.name, &self.version, &self.abi) {
            (Some(n), Some(v), Some(a)) => format!("{n} {v} ({a})"),
            (Some(n), Some(v), None) => format!("{n} {v}"),
            _ => "package".to_string(),
        };
        if self.is_ok() {
            write!(
                f,
                "{}: {what}, {} files: OK",
                self.path.display(),
                self.files.len()
            )
        } else {
            writeln!(
                f,
                "{}: {what}: {} problem(s):",
                self.path.display(),
                self.problems.len()
            )?;
            for p in &self.problems {
                writeln!(f, "  - {p}")?;
            }
            Ok(())
        }
    }
}

/// One archived (non-metadata) entry.
struct Archived {
    name: String,
    kind: tar::EntryType,
    mode: u32,
    uname: String,
    gname: String,
    data: Vec<u8>,
}

/// Checks the package at `path`. Unreadable or undecodable input is reported as a problem.
pub fn verify(path: &Path) -> Report {
    verify_read(path).0
}

/// [`verify`], also handing back the bytes it checked (`None` when the file could not be read):
/// a caller that goes on to use the package reads it once, and uses exactly what was checked.
pub fn verify_read(path: &Path) -> (Report, Option<Vec<u8>>) {
    let mut r = Report {
        path: path.to_path_buf(),
        ..Report::default()
    };
    let data = match std::fs::read(path) {
        Ok(d) => d,
        Err(e) => {
            r.problem(format!("cannot read the file: {e}"));
            return (r, None);
        }
    };
    match decompress(&data) {
        Ok(tar) => check_archive(&tar, &mut r),
        Err(e) => r.problem(e),
    }
    (r, Some(data))
}

/// pkg detects the compression from the content; we read gzip (what natspkg writes) and plain tar.
fn decompress(data: &[u8]) -> Result<Vec<u8>, String> {
    if data.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(data)
            .read_to_end(&mut out)
            .map_err(|e| format!("corrupt gzip stream: {e}"))?;
        return Ok(out);
    }
    if data.len() > 262 && &data[257..262] == b"ustar" {
        return Ok(data.to_vec());
    }
    let kind = if data.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
        "xz"
    } else if data.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        "zstd"
    } else if data.starts_with(b"BZh") {
        "bzip2"
    } else {
        return Err("not a package: neither gzip nor a tar archive".into());
    };
    Err(format!(
        "compressed with {kind}: pkg accepts it, but natspkg verify reads only gzip and plain tar"
    ))
}

fn check_archive(tar_bytes: &[u8], r: &mut Report) {
    let mut archive = tar::Archive::new(tar_bytes);
    let entries = match archive.entries() {
        Ok(e) => e,
        Err(e) => return r.problem(format!("not a tar archive: {e}")),
    };
    let mut in_metadata = true;
    let mut manifest_text: Option<Vec<u8>> = None;
    let mut compact_text: Option<Vec<u8>> = None;
    let mut archived: Vec<Archived> = Vec::new();
    for (i, entry) in entries.enumerate() {
        let mut entry = match entry {
            Ok(e) => e,
            Err(e) => {
                r.problem(format!("corrupt tar archive at entry {i}: {e}"));
                break;
            }
        };
        let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let h = entry.header();
        let kind = h.entry_type();
        let mode = h.mode().unwrap_or(0);
        let uname = h.username().ok().flatten().unwrap_or_default().to_string();
        let gname = h.groupname().ok().flatten().unwrap_or_default().to_string();
        let mut data = Vec::new();
        if let Err(e) = entry.read_to_end(&mut data) {
            r.problem(format!("corrupt tar archive: cannot read `{name}`: {e}"));
            break;
        }
        if name.starts_with('+') {
            if !in_metadata {
                r.problem(format!(
                    "`{name}` comes after the first file: the metadata block ends at the first \
                     non-`+` entry, so pkg would treat it as a file"
                ));
                continue;
            }
            match name.as_str() {
                "+MANIFEST" => manifest_text = Some(data),
                "+COMPACT_MANIFEST" => {
                    if manifest_text.is_some() {
                        r.problem("+COMPACT_MANIFEST comes after +MANIFEST (pkg writes it first)");
                    }
                    compact_text = Some(data);
                }
                _ => {}
            }
            continue;
        }
        if in_metadata {
            in_metadata = false;
            if manifest_text.is_none() {
                r.problem(format!(
                    "`{name}` comes before +MANIFEST: pkg requires the manifest before any file"
                ));
            }
        }
        r.files.push(name.clone());
        archived.push(Archived {
            name,
            kind,
            mode,
            uname,
            gname,
            data,
        });
    }

    let Some(manifest_text) = manifest_text else {
        return r.problem("no +MANIFEST entry: pkg cannot read this package");
    };
    let manifest = match parse_object(&manifest_text, "+MANIFEST") {
        Ok(m) => m,
        Err(e) => return r.problem(e),
    };
    check_keys(&manifest, r);
    if let Some(compact) = compact_text {
        match parse_object(&compact, "+COMPACT_MANIFEST") {
            Ok(c) => {
                let mut expected = manifest.clone();
                for k in COMPACT_EXCLUDED {
                    expected.shift_remove(*k);
                }
                if c != expected {
                    r.problem("+COMPACT_MANIFEST is not +MANIFEST without files/config/directories/scripts");
                }
            }
            Err(e) => r.problem(e),
        }
    }
    check_files(&manifest, &archived, r);
    check_abi(&manifest, &archived, r);
    r.manifest = Some(manifest);
}

fn parse_object(text: &[u8], what: &str) -> Result<Map<String, Value>, String> {
    match serde_json::from_slice::<Value>(text) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(format!("{what} is not an object")),
        Err(e) => Err(format!(
            "{what} is not JSON ({e}); natspkg verify reads only the JSON form of UCL"
        )),
    }
}

/// Required keys, and the types pkg insists on ("Bad format in manifest for key: X").
fn check_keys(m: &Map<String, Value>, r: &mut Report) {
    for k in REQUIRED_KEYS {
        match m.get(*k) {
            None => r.problem(format!("required key `{k}` is missing")),
            Some(Value::String(s)) if s.trim().is_empty() => {
                r.problem(format!("required key `{k}` is empty"))
            }
            Some(Value::String(_)) => {}
            Some(_) => r.problem(format!("key `{k}` must be a string")),
        }
    }
    let s = |k: &str| m.get(k).and_then(Value::as_str).map(String::from);
    r.name = s("name");
    r.version = s("version");
    r.abi = s("abi");
    if let Some(v) = m.get("flatsize") {
        if !v.is_u64() {
            r.problem("key `flatsize` must be a non-negative integer");
        }
    }
    for k in ["licenses", "categories", "conflicts", "users", "groups"] {
        if let Some(v) = m.get(k) {
            let ok = v.as_array().is_some_and(|a| a.iter().all(Value::is_string));
            if !ok {
                r.problem(format!("key `{k}` must be an array of strings"));
            }
        }
    }
    if let Some(v) = m.get("licenselogic") {
        if !matches!(v.as_str(), Some("single" | "or" | "and" | "dual" | "multi")) {
            r.problem("key `licenselogic` must be single, or, or and");
        }
    }
    for k in [
        "files",
        "scripts",
        "directories",
        "deps",
        "options",
        "annotations",
    ] {
        if let Some(v) = m.get(k) {
            if !v.is_object() {
                r.problem(format!("key `{k}` must be an object"));
            }
        }
    }
    if let Some(Value::Object(sc)) = m.get("scripts") {
        for (t, body) in sc {
            const KNOWN: &[&str] = &[
                "pre-install",
                "post-install",
                "pre-deinstall",
                "post-deinstall",
                "install",
                "deinstall",
                "pre-upgrade",
                "post-upgrade",
                "upgrade",
            ];
            if !KNOWN.contains(&t.as_str()) {
                r.problem(format!("unknown script type `{t}`"));
            }
            if !body.is_string() {
                r.problem(format!("script `{t}` must be a string"));
            }
        }
    }
    if let Some(v) = m.get("messages") {
        let ok = v.as_array().is_some_and(|a| {
            a.iter().all(|msg| {
                msg.get("message").is_some_and(Value::is_string)
                    && msg.get("type").is_none_or(|t| {
                        matches!(t.as_str(), Some("install" | "upgrade" | "remove"))
                    })
            })
        });
        if !ok {
            r.problem("key `messages` must be [{\"message\": \"...\", \"type\": \"install\"|\"upgrade\"|\"remove\"}]");
        }
    }
}

/// The expected checksum of a `files` entry, in any of the forms pkg reads.
fn listed_sum(v: &Value) -> Option<String> {
    let s = match v {
        Value::String(s) => s.as_str(),
        Value::Object(o) => o.get("sum")?.as_str()?,
        _ => return None,
    };
    s.strip_prefix("1$")
        .or(if s.len() == 64 { Some(s) } else { None })
        .map(str::to_ascii_lowercase)
}

fn check_files(m: &Map<String, Value>, archived: &[Archived], r: &mut Report) {
    let empty = Map::new();
    let files = m.get("files").and_then(Value::as_object).unwrap_or(&empty);
    let listed: BTreeMap<String, &Value> =
        files.iter().map(|(k, v)| (url_unescape(k), v)).collect();
    let dirs: BTreeSet<String> = m
        .get("directories")
        .and_then(Value::as_object)
        .map(|d| d.keys().map(|k| url_unescape(k)).collect())
        .unwrap_or_default();
    let names = |k: &str| -> BTreeSet<String> {
        m.get(k)
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(String::from)
                    .collect()
            })
            .unwrap_or_default()
    };
    let (users, groups) = (names("users"), names("groups"));

    let mut seen = BTreeSet::new();
    let mut flatsize: u64 = 0;
    for a in archived {
        if !seen.insert(a.name.clone()) {
            r.problem(format!("`{}` is archived twice", a.name));
        }
        if !a.name.starts_with('/') {
            r.problem(format!(
                "`{}` has a relative name: `pkg add` fails on it (\"not specified in the manifest\"); names must be absolute",
                a.name
            ));
        }
        // pkg maps unknown owner names to 0 without a word; a name the package neither is
        // (root/wheel) nor creates means the header and the intent disagree.
        if a.uname != "root" && !users.contains(&a.uname) {
            r.problem(format!(
                "`{}` is owned by user `{}`, which is neither root nor in the manifest's `users`",
                a.name, a.uname
            ));
        }
        if a.gname != "wheel" && !groups.contains(&a.gname) {
            r.problem(format!(
                "`{}` has group `{}`, which is neither wheel nor in the manifest's `groups`",
                a.name, a.gname
            ));
        }
        // The string form of `files` carries no mode, so the manifest cannot vouch for one; but
        // pkg applies the header's mode as is, and no file of ours is setuid/setgid or
        // world-writable: such a mode means a mistake or tampering.
        if a.mode & 0o6000 != 0 || (a.mode & 0o002 != 0 && a.kind != tar::EntryType::Symlink) {
            r.problem(format!(
                "`{}` has mode {:04o}: setuid/setgid or world-writable files are refused",
                a.name,
                a.mode & 0o7777
            ));
        }
        match a.kind {
            tar::EntryType::Directory => {
                if !dirs.contains(&a.name) && !dirs.contains(a.name.trim_end_matches('/')) {
                    r.problem(format!(
                        "directory `{}` is archived but not in `directories`",
                        a.name
                    ));
                }
                continue;
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => flatsize += a.data.len() as u64,
            tar::EntryType::Symlink | tar::EntryType::Link => {}
            other => {
                r.problem(format!(
                    "`{}` is a {other:?} entry: device, fifo and socket entries abort the install",
                    a.name
                ));
                continue;
            }
        }
        let Some(v) = listed.get(&a.name) else {
            r.problem(format!(
                "`{}` is archived but not listed in `files`: pkg aborts the install",
                a.name
            ));
            continue;
        };
        if let Value::Object(o) = v {
            // Object form (pkg >= 2.4): the header must say the same.
            if let Some(perm) = o.get("perm").and_then(Value::as_str) {
                if u32::from_str_radix(perm, 8).ok() != Some(a.mode & 0o7777) {
                    r.problem(format!(
                        "`{}`: tar mode {:04o} but manifest perm {perm}",
                        a.name,
                        a.mode & 0o7777
                    ));
                }
            }
            for (key, hv) in [("uname", &a.uname), ("gname", &a.gname)] {
                if let Some(mv) = o.get(key).and_then(Value::as_str) {
                    if mv != hv {
                        r.problem(format!(
                            "`{}`: tar {key} `{hv}` but manifest {key} `{mv}`",
                            a.name
                        ));
                    }
                }
            }
        }
        if matches!(a.kind, tar::EntryType::Regular | tar::EntryType::Continuous) {
            match listed_sum(v) {
                None => r.problem(format!(
                    "`{}` has no usable checksum in `files` (expected \"1$<sha256>\")",
                    a.name
                )),
                Some(want) => {
                    let got = sha256_hex(&a.data);
                    if got != want {
                        r.problem(format!(
                            "`{}`: checksum mismatch (manifest {want}, archive {got}): the file was altered",
                            a.name
                        ));
                    }
                }
            }
        }
    }
    for path in listed.keys() {
        if !seen.contains(path) {
            r.problem(format!(
                "`{path}` is listed in `files` but not in the archive"
            ));
        }
    }
    if let Some(fs) = m.get("flatsize").and_then(Value::as_u64) {
        if fs != flatsize {
            r.problem(format!(
                "flatsize is {fs} but the regular files add up to {flatsize} bytes"
            ));
        }
    }
}

/// `FreeBSD:14:aarch64` → (Some(Target::Aarch64), 14); `*` as arch → (None, 14).
fn parse_abi(abi: &str) -> Result<(Option<Target>, u32), String> {
    let parts: Vec<&str> = abi.split(':').collect();
    let bad = || format!("abi `{abi}` is not `FreeBSD:<major>:<arch>`");
    if parts.len() != 3 || !parts[0].eq_ignore_ascii_case("FreeBSD") {
        return Err(bad());
    }
    let major: u32 = parts[1].parse().map_err(|_| bad())?;
    if parts[2] == "*" {
        return Ok((None, major));
    }
    let t = Target::ALL
        .into_iter()
        .find(|t| t.freebsd_arch() == parts[2])
        .ok_or_else(|| {
            format!(
                "abi `{abi}`: architecture `{}` is not one natspkg knows (amd64, aarch64)",
                parts[2]
            )
        })?;
    Ok((Some(t), major))
}

fn check_abi(m: &Map<String, Value>, archived: &[Archived], r: &mut Report) {
    let Some(abi) = m.get("abi").and_then(Value::as_str) else {
        return;
    };
    let (target, major) = match parse_abi(abi) {
        Ok(x) => x,
        Err(e) => return r.problem(e),
    };
    if let (Some(t), Some(arch)) = (target, m.get("arch").and_then(Value::as_str)) {
        let want = t.legacy_arch(major);
        if arch != want {
            r.problem(format!(
                "arch `{arch}` does not match abi `{abi}` (expected `{want}`)"
            ));
        }
    }
    for a in archived {
        if !matches!(a.kind, tar::EntryType::Regular) || !a.data.starts_with(b"\x7fELF") {
            continue;
        }
        let info = match elf::inspect(&a.data) {
            Ok(i) => i,
            Err(e) => {
                r.problem(format!("`{}`: {e}", a.name));
                continue;
            }
        };
        let problems = match target {
            Some(t) => info.problems(t, major),
            // Any-arch package: the machine cannot be wrong, everything else can.
            None => Target::ALL
                .into_iter()
                .find(|t| t.elf_machine() == info.machine)
                .map(|t| info.problems(t, major))
                .unwrap_or_else(|| vec![format!("unknown ELF machine {}", info.machine)]),
        };
        for p in problems {
            r.problem(format!("`{}` does not match abi `{abi}`: {p}", a.name));
        }
        if info.osabi != elf::ELFOSABI_FREEBSD {
            r.problem(format!(
                "`{}` is not branded FreeBSD (EI_OSABI {}, expected {})",
                a.name,
                info.osabi,
                elf::ELFOSABI_FREEBSD
            ));
        }
    }
}
