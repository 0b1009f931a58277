//! The tar.gz container and the atomic write.
//!
//! Reproducible by construction: every header field is set explicitly (no host uid, user name or
//! clock), entries are sorted, and the gzip header carries mtime 0 and OS byte 255 ("unknown")
//! whatever machine writes it.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};
use flate2::{Compression, GzBuilder};
use tar::{Builder, EntryType, Header};

use super::PackageSpec;

/// Owner written in every tar header. pkg takes owner and mode from the tar header on install
/// (looked up by NAME in the target's passwd/group), so these must be names FreeBSD has.
pub const UNAME: &str = "root";
pub const GNAME: &str = "wheel";
/// Mode of the metadata entries, as `pkg create` writes them.
pub const METADATA_MODE: u32 = 0o644;
/// gzip OS byte: 255 = unknown, so Linux and FreeBSD builders give the same bytes.
const GZIP_OS_UNKNOWN: u8 = 255;

fn header(size: u64, mode: u32, mtime: u64) -> Header {
    let mut h = Header::new_ustar();
    h.set_entry_type(EntryType::Regular);
    h.set_size(size);
    h.set_mode(mode);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(mtime);
    // Cannot fail: both names are short ASCII.
    let _ = h.set_username(UNAME);
    let _ = h.set_groupname(GNAME);
    h
}

/// The whole `.pkg` in memory: gzip(tar(+COMPACT_MANIFEST, +MANIFEST, files sorted by path)).
pub fn build(spec: &PackageSpec, compact: &str, manifest: &str) -> Result<Vec<u8>> {
    let gz = GzBuilder::new()
        .mtime(0)
        .operating_system(GZIP_OS_UNKNOWN)
        .write(Vec::new(), Compression::best());
    let mut tar = Builder::new(gz);
    // pkg needs absolute names ("/usr/local/bin/natsd"); the tar crate strips the leading `/`
    // unless told not to.
    tar.preserve_absolute(true);

    for (name, body) in [("+COMPACT_MANIFEST", compact), ("+MANIFEST", manifest)] {
        let mut h = header(body.len() as u64, METADATA_MODE, 0);
        tar.append_data(&mut h, name, body.as_bytes())
            .with_context(|| format!("cannot write {name} into the archive"))?;
    }
    let mut files: Vec<_> = spec.files.iter().collect();
    files.sort_by(|a, b| a.path.cmp(&b.path));
    for f in files {
        let mut h = header(f.contents.len() as u64, f.mode, spec.mtime);
        tar.append_data(&mut h, &f.path, f.contents.as_slice())
            .with_context(|| format!("cannot write {} into the archive", f.path))?;
    }
    let gz = tar.into_inner().context("cannot finish the tar archive")?;
    gz.finish().context("cannot finish the gzip stream")
}

/// Writes `bytes` to `dest` (inside `out_dir`) so that `dest` is either absent or complete:
/// temp file in the same directory, fsync, rename, fsync the directory. On error the temp file
/// is removed (tempfile deletes it on drop) and `dest` is untouched.
pub fn write_atomically(out_dir: &Path, dest: &Path, bytes: &[u8]) -> Result<()> {
    std::fs::create_dir_all(out_dir).with_context(|| {
        format!(
            "cannot create the output directory {} (is it a file, or not writable?)",
            out_dir.display()
        )
    })?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".natspkg-")
        .suffix(".pkg.tmp")
        .tempfile_in(out_dir)
        .with_context(|| {
            format!(
                "cannot create a file in the output directory {} (is it writable?)",
                out_dir.display()
            )
        })?;
    tmp.write_all(bytes)
        .and_then(|_| tmp.as_file().sync_all())
        .with_context(|| format!("cannot write {}", tmp.path().display()))?;
    // tempfile creates 0600; a package is meant to be read by others (web server, jail).
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        tmp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o644))
            .with_context(|| format!("cannot chmod {}", tmp.path().display()))?;
    }
    tmp.persist(dest)
        .map_err(|e| e.error)
        .with_context(|| format!("cannot move the package into place at {}", dest.display()))?;
    // Make the rename itself durable. Best effort: the file is already complete and in place,
    // and some filesystems refuse fsync on directories.
    if let Ok(d) = std::fs::File::open(out_dir) {
        let _ = d.sync_all();
    }
    Ok(())
}
