//! The `+MANIFEST` / `+COMPACT_MANIFEST` JSON and the install scripts.
//!
//! Plain JSON is valid UCL, and compact one-line JSON is what `pkg create` writes. Keys come in the
//! order pkg itself emits them (serde_json's `preserve_order` keeps insertion order), so a diff
//! against a pkg-made manifest lines up. pkg URL-decodes `desc`, script bodies and `files` keys
//! on read, so a literal `%` in them is written `%25`.

use anyhow::{Context, Result};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use super::PackageSpec;

/// Keys that `+COMPACT_MANIFEST` leaves out of the full manifest.
pub const COMPACT_EXCLUDED: &[&str] = &["files", "config", "directories", "scripts", "lua_scripts"];

/// Script types in the order pkg runs (and we emit) them.
pub const SCRIPT_TYPES: &[&str] = &[
    "pre-install",
    "post-install",
    "pre-deinstall",
    "post-deinstall",
];

/// Escapes what pkg's `urldecode` would otherwise eat: only `%` needs it.
pub fn url_escape(s: &str) -> String {
    s.replace('%', "%25")
}

/// pkg's `urldecode`: `%XX` (two hex digits) becomes that byte; anything else is kept.
pub fn url_unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = std::str::from_utf8(&b[i + 1..i + 3]).ok();
            if let Some(v) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Lowercase hex SHA-256.
pub fn sha256_hex(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// pkg's checksum string for file contents: `1$<sha256 hex>`.
pub fn checksum(data: &[u8]) -> String {
    format!("1${}", sha256_hex(data))
}

/// Quotes a string for /bin/sh with single quotes (works for any content).
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// A path under the package root: `"${PKG_ROOTDIR}"'/usr/local/etc/x.conf'`. pkg runs scripts with
/// PKG_ROOTDIR set to the `-r` root and does NOT chroot, so every path must be prefixed.
fn rooted(path: &str) -> String {
    format!("\"${{PKG_ROOTDIR}}\"{}", sh_quote(path))
}

/// The install scripts, as (type, shell text), in [`SCRIPT_TYPES`] order; types without work are
/// left out.
pub fn scripts(spec: &PackageSpec) -> Vec<(&'static str, String)> {
    let samples: Vec<(&str, &str)> = spec
        .files
        .iter()
        .filter_map(|f| f.sample_target().map(|t| (f.path.as_str(), t)))
        .collect();
    let mut out = Vec::new();

    if let Some(a) = &spec.account {
        // The ports framework's user/group creation (Mk/Scripts/create_users_groups.sh), with
        // `|| exit 1` so a failed pw aborts the install instead of installing files owned by
        // a user that does not exist.
        let (user, group) = (sh_quote(&a.user), sh_quote(&a.group));
        out.push((
            "pre-install",
            format!(
                "if [ -n \"${{PKG_ROOTDIR}}\" ] && [ \"${{PKG_ROOTDIR}}\" != \"/\" ]; then\n\
                 \tPW=\"pw -R ${{PKG_ROOTDIR}}\"\n\
                 else\n\
                 \tPW=pw\n\
                 fi\n\
                 if ! ${{PW}} groupshow {group} >/dev/null 2>&1; then\n\
                 \techo \"Creating group {g} with gid {gid}.\"\n\
                 \t${{PW}} groupadd {group} -g {gid} || exit 1\n\
                 else\n\
                 \techo \"Using existing group {g}.\"\n\
                 fi\n\
                 if ! ${{PW}} usershow {user} >/dev/null 2>&1; then\n\
                 \techo \"Creating user {u} with uid {uid}.\"\n\
                 \t${{PW}} useradd {user} -u {uid} -g {gid} -c {gecos} -d /nonexistent -s /usr/sbin/nologin || exit 1\n\
                 else\n\
                 \techo \"Using existing user {u}.\"\n\
                 fi\n",
                g = a.group,
                u = a.user,
                gid = a.gid,
                uid = a.uid,
                gecos = sh_quote(&a.gecos),
            ),
        ));
    }

    if !samples.is_empty() {
        // ports @sample, install half: copy the sample unless the admin already has a config.
        let mut s = String::new();
        for (sample, conf) in &samples {
            s.push_str(&format!(
                "if [ ! -e {c} ]; then\n\tcp -p {s} {c}\nfi\n",
                c = rooted(conf),
                s = rooted(sample)
            ));
        }
        out.push(("post-install", s));

        // ports @sample, deinstall half: remove the config only if the admin never changed it,
        // and before the sample itself is gone (hence PRE-deinstall).
        let mut s = String::new();
        for (sample, conf) in &samples {
            s.push_str(&format!(
                "if [ -e {c} ] && cmp -s {c} {s}; then\n\trm -f {c}\nfi\n",
                c = rooted(conf),
                s = rooted(sample)
            ));
        }
        out.push(("pre-deinstall", s));
    }

    if let Some(a) = &spec.account {
        // pkg never deletes accounts (files the user owns may remain); say so, like ports do.
        out.push((
            "post-deinstall",
            format!(
                "echo \"The user {u} and group {g} were kept; if they are no longer needed, \
                 remove them with: pw userdel {u}; pw groupdel {g}\"\n",
                u = a.user,
                g = a.group
            ),
        ));
    }
    out
}

/// The full manifest as an ordered JSON object.
pub fn manifest_value(spec: &PackageSpec) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("name".into(), json!(spec.name));
    m.insert("origin".into(), json!(spec.origin));
    m.insert("version".into(), json!(spec.version));
    m.insert("comment".into(), json!(spec.comment));
    m.insert("maintainer".into(), json!(spec.maintainer));
    m.insert("www".into(), json!(spec.www));
    m.insert("abi".into(), json!(spec.abi()));
    m.insert("arch".into(), json!(spec.arch()));
    m.insert("prefix".into(), json!(spec.prefix));
    m.insert("flatsize".into(), json!(spec.flatsize()));
    let logic = if spec.licenses.len() > 1 {
        "and"
    } else {
        "single"
    };
    m.insert("licenselogic".into(), json!(logic));
    m.insert("licenses".into(), json!(spec.licenses));
    m.insert("desc".into(), json!(url_escape(&spec.desc)));
    m.insert("categories".into(), json!(spec.categories));
    if let Some(a) = &spec.account {
        m.insert("users".into(), json!([a.user]));
        m.insert("groups".into(), json!([a.group]));
    }
    if !spec.conflicts.is_empty() {
        m.insert("conflicts".into(), json!(spec.conflicts));
    }
    let mut files: Vec<_> = spec.files.iter().collect();
    files.sort_by(|a, b| a.path.cmp(&b.path));
    let files: Map<String, Value> = files
        .into_iter()
        .map(|f| (url_escape(&f.path), json!(checksum(&f.contents))))
        .collect();
    m.insert("files".into(), Value::Object(files));
    let scripts = scripts(spec);
    if !scripts.is_empty() {
        let s: Map<String, Value> = scripts
            .into_iter()
            .map(|(t, body)| (t.to_string(), json!(url_escape(&body))))
            .collect();
        m.insert("scripts".into(), Value::Object(s));
    }
    if !spec.messages.is_empty() {
        let msgs: Vec<Value> = spec
            .messages
            .iter()
            .map(|msg| json!({"message": msg.text, "type": msg.kind.as_str()}))
            .collect();
        m.insert("messages".into(), Value::Array(msgs));
    }
    m
}

/// `+MANIFEST`: compact one-line JSON.
pub fn manifest_json(spec: &PackageSpec) -> Result<String> {
    serde_json::to_string(&Value::Object(manifest_value(spec))).context("cannot encode +MANIFEST")
}

/// `+COMPACT_MANIFEST`: the manifest without [`COMPACT_EXCLUDED`] keys.
pub fn compact_manifest_json(spec: &PackageSpec) -> Result<String> {
    let mut m = manifest_value(spec);
    for k in COMPACT_EXCLUDED {
        m.shift_remove(*k);
    }
    serde_json::to_string(&Value::Object(m)).context("cannot encode +COMPACT_MANIFEST")
}
