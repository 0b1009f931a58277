//! Checks a compiled binary before it goes into a package, and brands it like `brandelf -t FreeBSD`.
//!
//! A FreeBSD binary that the kernel will run on the board must be: ELF64 little-endian, built for the
//! target's machine, dynamically linked against FreeBSD's run-time linker `/libexec/ld-elf.so.1`,
//! carrying the FreeBSD ABI note (the kernel brands by it), and needing only libraries that every
//! FreeBSD base system ships (a package that needs anything else would need `deps`, which natsd's
//! package does not declare). Anything else is an error that says what is wrong: we never package a
//! binary that cannot run.
//!
//! Parsing goes through the `object` crate (read-only, zero-copy); branding is one byte, written in place.

use std::fs::OpenOptions;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

use anyhow::{bail, Context, Result};
use object::elf;
use object::read::elf::{FileHeader, ProgramHeader};
use object::Endianness;

use crate::target::Target;

/// FreeBSD's run-time linker, the only interpreter a FreeBSD executable may request.
pub const FREEBSD_INTERP: &str = "/libexec/ld-elf.so.1";

/// `EI_OSABI` value for FreeBSD (what `brandelf -t FreeBSD` writes).
pub const ELFOSABI_FREEBSD: u8 = 9;
/// `EI_OSABI` value for System V (what zig's crt1 leaves; the kernel still accepts it thanks to the note).
pub const ELFOSABI_SYSV: u8 = 0;
/// Offset of `EI_OSABI` in the ELF identification bytes.
const EI_OSABI: usize = 7;

/// `NT_FREEBSD_ABI_TAG`: the note (owner "FreeBSD") whose 4-byte descriptor is `__FreeBSD_version`.
const NT_FREEBSD_ABI_TAG: u32 = 1;

/// Shared libraries of the FreeBSD base system (14 and 15; /lib and /usr/lib), by SONAME.
/// Kept explicit on purpose: a NEEDED entry outside this list means the binary depends on a port,
/// which the package does not declare, so it would fail to start on a fresh board.
pub const FREEBSD_BASE_LIBS: &[&str] = &[
    "libc.so.7",
    "libthr.so.3",
    "libm.so.5",
    "librt.so.1",
    "libdl.so.1",
    "libgcc_s.so.1",
    "libcxxrt.so.1",
    "libc++.so.1",
    "libutil.so.9",
    "libkvm.so.7",
    "libelf.so.2",
    "libexecinfo.so.1",
    "libprocstat.so.1",
    "libmemstat.so.3",
    "libdevstat.so.7",
    "libz.so.6",
    "libcrypt.so.5",
    "libmd.so.6",
    "libjail.so.1",
    "libnv.so.1",
    "libcasper.so.1",
];

/// What natspkg reads out of an ELF file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ElfInfo {
    /// `e_machine` (62 = x86-64, 183 = AArch64).
    pub machine: u16,
    /// `EI_OSABI` (0 = System V, 9 = FreeBSD).
    pub osabi: u8,
    /// The `PT_INTERP` path, if the file has one.
    pub interpreter: Option<String>,
    /// `__FreeBSD_version` from the FreeBSD ABI note (e.g. 1400500), if the note is present.
    pub osreldate: Option<u32>,
    /// `DT_NEEDED` entries, in file order.
    pub needed: Vec<String>,
}

impl ElfInfo {
    /// The FreeBSD major the binary was linked for (1400500 → 14), from the ABI note.
    pub fn freebsd_major(&self) -> Option<u32> {
        self.osreldate.map(|v| v / 100_000)
    }

    /// Every reason this binary would not run on FreeBSD `freebsd_major` for `target`; empty when fine.
    /// Does not look at `EI_OSABI`: zig leaves it at 0, which the kernel accepts; branding is a
    /// separate step (see [`brand`]).
    pub fn problems(&self, target: Target, freebsd_major: u32) -> Vec<String> {
        let mut p = Vec::new();
        if self.machine != target.elf_machine() {
            p.push(format!(
                "ELF machine is {} ({}), but the target {target} needs {} ({})",
                self.machine,
                machine_name(self.machine),
                target.elf_machine(),
                machine_name(target.elf_machine()),
            ));
        }
        match &self.interpreter {
            Some(i) if i == FREEBSD_INTERP => {}
            Some(i) => p.push(format!(
                "interpreter is `{i}`, but FreeBSD's run-time linker is `{FREEBSD_INTERP}` \
                 (was the binary linked for another OS?)"
            )),
            None => p.push(format!(
                "no PT_INTERP: FreeBSD executables must be dynamically linked against `{FREEBSD_INTERP}`"
            )),
        }
        match self.osreldate {
            None => p.push(
                "no FreeBSD ABI note (NT_FREEBSD_ABI_TAG, owner \"FreeBSD\"): the kernel would not \
                 recognise the binary as FreeBSD's; link it with a FreeBSD crt (zig -target <arch>-freebsd)"
                    .to_string(),
            ),
            Some(v) if v / 100_000 > freebsd_major => p.push(format!(
                "linked for FreeBSD {} (__FreeBSD_version {v}), newer than the package's FreeBSD {freebsd_major}",
                v / 100_000
            )),
            Some(_) => {}
        }
        let foreign: Vec<&str> = self
            .needed
            .iter()
            .map(String::as_str)
            .filter(|lib| !FREEBSD_BASE_LIBS.contains(lib))
            .collect();
        if !foreign.is_empty() {
            p.push(format!(
                "needs `{}`, not FreeBSD base libraries (the package declares no dependencies; \
                 allowed: {})",
                foreign.join("`, `"),
                FREEBSD_BASE_LIBS.join(", ")
            ));
        }
        p
    }
}

fn machine_name(m: u16) -> &'static str {
    match m {
        62 => "x86-64",
        183 => "AArch64",
        3 => "i386",
        40 => "ARM",
        243 => "RISC-V",
        21 => "PowerPC64",
        _ => "unknown",
    }
}

/// Reads the facts natspkg checks out of ELF bytes. Errors when the bytes are not an ELF64
/// little-endian file or are malformed.
pub fn inspect(data: &[u8]) -> Result<ElfInfo> {
    if data.len() < 16 || &data[..4] != b"\x7fELF" {
        bail!("not an ELF file (no \\x7fELF magic)");
    }
    match data[4] {
        2 => {}
        1 => bail!("32-bit ELF (ELFCLASS32): FreeBSD amd64/aarch64 packages need 64-bit binaries"),
        c => bail!("ELF class byte is {c}, expected 2 (ELFCLASS64)"),
    }
    match data[5] {
        1 => {}
        2 => bail!("big-endian ELF: FreeBSD amd64 and aarch64 are little-endian"),
        e => bail!("ELF data-encoding byte is {e}, expected 1 (little-endian)"),
    }
    let header = elf::FileHeader64::<Endianness>::parse(data)
        .map_err(|e| anyhow::anyhow!("malformed ELF header: {e}"))?;
    let endian = header
        .endian()
        .map_err(|e| anyhow::anyhow!("malformed ELF header: {e}"))?;

    let mut interpreter = None;
    let mut osreldate = None;
    let phdrs = header
        .program_headers(endian, data)
        .map_err(|e| anyhow::anyhow!("malformed ELF program headers: {e}"))?;
    for ph in phdrs {
        if ph.p_type(endian) == elf::PT_INTERP {
            let bytes = ph
                .interpreter(endian, data)
                .map_err(|e| anyhow::anyhow!("malformed PT_INTERP: {e}"))?
                .unwrap_or_default();
            interpreter = Some(String::from_utf8_lossy(bytes).into_owned());
        }
        // The kernel finds the ABI note through PT_NOTE (the .note.tag section lies inside it),
        // so that is where we look too: it works for stripped binaries without section headers.
        if let Some(mut notes) = ph
            .notes(endian, data)
            .map_err(|e| anyhow::anyhow!("malformed PT_NOTE: {e}"))?
        {
            while let Some(note) = notes
                .next()
                .map_err(|e| anyhow::anyhow!("malformed ELF note: {e}"))?
            {
                if note.name() == b"FreeBSD" && note.n_type(endian).0 == NT_FREEBSD_ABI_TAG {
                    if let Ok(desc) = <[u8; 4]>::try_from(note.desc()) {
                        osreldate = Some(u32::from_le_bytes(desc));
                    }
                }
            }
        }
    }

    let sections = header
        .sections(endian, data)
        .map_err(|e| anyhow::anyhow!("malformed ELF section headers: {e}"))?;
    let dynamic = sections
        .dynamic_table(endian, data)
        .map_err(|e| anyhow::anyhow!("malformed ELF dynamic section: {e}"))?;
    let mut needed = Vec::new();
    for d in &dynamic {
        if d.tag == elf::DT_NEEDED {
            let name = dynamic
                .string(d)
                .map_err(|e| anyhow::anyhow!("malformed DT_NEEDED entry: {e}"))?;
            needed.push(String::from_utf8_lossy(name).into_owned());
        }
    }

    Ok(ElfInfo {
        machine: header.e_machine(endian).0,
        osabi: data[EI_OSABI],
        interpreter,
        osreldate,
        needed,
    })
}

/// Checks ELF bytes for `target` and FreeBSD `freebsd_major`; the error lists every problem.
pub fn check(data: &[u8], target: Target, freebsd_major: u32) -> Result<ElfInfo> {
    let info = inspect(data)?;
    let problems = info.problems(target, freebsd_major);
    if !problems.is_empty() {
        bail!(
            "not a FreeBSD {freebsd_major} {target} binary:\n  - {}",
            problems.join("\n  - ")
        );
    }
    Ok(info)
}

/// [`check`] for a file on disk; the error names the file.
pub fn check_file(path: &Path, target: Target, freebsd_major: u32) -> Result<ElfInfo> {
    let data = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    check(&data, target, freebsd_major).with_context(|| format!("{} is unusable", path.display()))
}

/// Sets `EI_OSABI` to FreeBSD in ELF bytes (in memory).
pub fn brand_bytes(data: &mut [u8]) -> Result<()> {
    if data.len() < 16 || &data[..4] != b"\x7fELF" {
        bail!("cannot brand: not an ELF file (no \\x7fELF magic)");
    }
    data[EI_OSABI] = ELFOSABI_FREEBSD;
    Ok(())
}

/// Brands a file in place as FreeBSD, like `brandelf -t FreeBSD`: byte 7 (`EI_OSABI`) becomes 9.
/// Only that byte is written, after checking the ELF magic; the file is synced before returning.
pub fn brand(path: &Path) -> Result<()> {
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .with_context(|| format!("cannot open {} to brand it", path.display()))?;
    let mut ident = [0u8; 16];
    f.read_exact(&mut ident).with_context(|| {
        format!(
            "cannot brand {}: shorter than an ELF header",
            path.display()
        )
    })?;
    brand_bytes(&mut ident).with_context(|| path.display().to_string())?;
    f.seek(SeekFrom::Start(EI_OSABI as u64))
        .and_then(|_| f.write_all(&[ELFOSABI_FREEBSD]))
        .and_then(|_| f.sync_all())
        .with_context(|| format!("cannot write EI_OSABI of {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{AARCH64_BIN, X86_64_BIN};

    #[test]
    fn reads_a_real_freebsd_binary() {
        let info = inspect(X86_64_BIN).unwrap();
        assert_eq!(info.machine, 62);
        assert_eq!(info.osabi, ELFOSABI_SYSV, "zig leaves EI_OSABI at SYSV");
        assert_eq!(info.interpreter.as_deref(), Some(FREEBSD_INTERP));
        assert_eq!(info.osreldate, Some(1_400_500));
        assert_eq!(info.freebsd_major(), Some(14));
        assert_eq!(info.needed, vec!["libc.so.7".to_string()]);
        assert!(info.problems(Target::X86_64, 14).is_empty());
        // A 14.0 binary runs on 15 too.
        assert!(info.problems(Target::X86_64, 15).is_empty());

        let a = check(AARCH64_BIN, Target::Aarch64, 14).unwrap();
        assert_eq!(a.machine, 183);
    }

    #[test]
    fn wrong_machine_is_named() {
        let e = check(X86_64_BIN, Target::Aarch64, 14)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("ELF machine is 62 (x86-64)") && e.contains("183 (AArch64)"),
            "{e}"
        );
    }

    #[test]
    fn binary_for_a_newer_major_is_refused() {
        let mut info = inspect(X86_64_BIN).unwrap();
        info.osreldate = Some(1_500_068);
        let p = info.problems(Target::X86_64, 14);
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].contains("FreeBSD 15"), "{p:?}");
    }

    #[test]
    fn host_linux_binary_is_refused() {
        let Ok(data) = std::fs::read("/bin/true") else {
            eprintln!("SKIP: no /bin/true on this host");
            return;
        };
        let e = format!("{:#}", check(&data, Target::X86_64, 14).unwrap_err());
        assert!(e.contains("no FreeBSD ABI note"), "{e}");
        assert!(e.contains("interpreter is `/lib"), "{e}");
        assert!(
            e.contains("needs `libc.so.6`, not FreeBSD base libraries"),
            "{e}"
        );
    }

    #[test]
    fn non_base_library_and_missing_interp_are_named() {
        let mut info = inspect(AARCH64_BIN).unwrap();
        info.needed.push("libssl.so.3".into());
        info.needed.push("libcrypto.so.3".into());
        info.interpreter = None;
        let p = info.problems(Target::Aarch64, 14).join("\n");
        assert!(
            p.contains("needs `libssl.so.3`, `libcrypto.so.3`, not"),
            "{p}"
        );
        assert_eq!(p.matches("allowed:").count(), 1, "{p}");
        assert!(p.contains("no PT_INTERP"), "{p}");
    }

    #[test]
    fn rejects_non_elf_32_bit_and_big_endian() {
        assert!(inspect(b"#!/bin/sh\necho hi\n")
            .unwrap_err()
            .to_string()
            .contains("not an ELF"));
        let mut b = X86_64_BIN.to_vec();
        b[4] = 1;
        assert!(inspect(&b).unwrap_err().to_string().contains("32-bit"));
        let mut b = X86_64_BIN.to_vec();
        b[5] = 2;
        assert!(inspect(&b).unwrap_err().to_string().contains("big-endian"));
        // Truncated after the identification bytes: an error, not a panic.
        assert!(inspect(&X86_64_BIN[..40]).is_err());
    }

    #[test]
    fn brand_sets_only_the_osabi_byte() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("bin");
        std::fs::write(&p, X86_64_BIN).unwrap();
        brand(&p).unwrap();
        let after = std::fs::read(&p).unwrap();
        assert_eq!(after[7], ELFOSABI_FREEBSD);
        assert_eq!(after.len(), X86_64_BIN.len());
        let diff: Vec<usize> = (0..after.len())
            .filter(|&i| after[i] != X86_64_BIN[i])
            .collect();
        assert_eq!(diff, vec![7]);
        assert_eq!(inspect(&after).unwrap().osabi, 9);
        // Branding twice is harmless.
        brand(&p).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), after);

        let txt = dir.path().join("script");
        std::fs::write(&txt, b"#!/bin/sh\nexit 0\n").unwrap();
        assert!(brand(&txt).is_err());
        assert_eq!(std::fs::read(&txt).unwrap(), b"#!/bin/sh\nexit 0\n");
    }
}
