//! The FreeBSD targets natspkg builds for, and what each means for the ELF file and the package ABI.

use std::fmt;

/// FreeBSD majors we package for. 13 is not supported: zig's crt1 needs `__libc_start1`
/// (FBSD_1.7, FreeBSD 14.0+), and 13 is end-of-life.
pub const SUPPORTED_FREEBSD: &[u32] = &[14, 15];
pub const DEFAULT_FREEBSD: u32 = 14;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Target {
    X86_64,
    Aarch64,
}

impl Target {
    pub const ALL: [Target; 2] = [Target::X86_64, Target::Aarch64];

    /// The Rust target triple.
    pub fn triple(self) -> &'static str {
        match self {
            Target::X86_64 => "x86_64-unknown-freebsd",
            Target::Aarch64 => "aarch64-unknown-freebsd",
        }
    }

    /// Parses a triple; the error lists the supported ones.
    pub fn parse(s: &str) -> Result<Target, String> {
        Target::ALL
            .into_iter()
            .find(|t| t.triple() == s)
            .ok_or_else(|| {
                format!(
                    "unsupported target `{s}`: natspkg builds for {}",
                    Target::ALL.map(|t| t.triple()).join(", ")
                )
            })
    }

    /// Tier 3 targets have no prebuilt std in rustup: std is built from source on a pinned nightly.
    pub fn needs_build_std(self) -> bool {
        matches!(self, Target::Aarch64)
    }

    /// FreeBSD's name for the machine architecture (`uname -p`), as used in the package ABI.
    pub fn freebsd_arch(self) -> &'static str {
        match self {
            Target::X86_64 => "amd64",
            Target::Aarch64 => "aarch64",
        }
    }

    /// The package `abi` key: `FreeBSD:14:aarch64`.
    pub fn abi(self, major: u32) -> String {
        format!("FreeBSD:{major}:{}", self.freebsd_arch())
    }

    /// The legacy package `arch` key: `freebsd:14:x86:64`, `freebsd:14:aarch64:64`.
    pub fn legacy_arch(self, major: u32) -> String {
        let a = match self {
            Target::X86_64 => "x86:64",
            Target::Aarch64 => "aarch64:64",
        };
        format!("freebsd:{major}:{a}")
    }

    /// ELF e_machine value (EM_X86_64 = 62, EM_AARCH64 = 183).
    pub fn elf_machine(self) -> u16 {
        match self {
            Target::X86_64 => 62,
            Target::Aarch64 => 183,
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.triple())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn abi_and_arch_follow_the_pkg_table() {
        assert_eq!(Target::X86_64.abi(14), "FreeBSD:14:amd64");
        assert_eq!(Target::Aarch64.abi(15), "FreeBSD:15:aarch64");
        assert_eq!(Target::X86_64.legacy_arch(14), "freebsd:14:x86:64");
        assert_eq!(Target::Aarch64.legacy_arch(14), "freebsd:14:aarch64:64");
    }

    #[test]
    fn unknown_target_lists_supported_ones() {
        let e = Target::parse("armv7-unknown-freebsd").unwrap_err();
        assert!(
            e.contains("x86_64-unknown-freebsd") && e.contains("aarch64-unknown-freebsd"),
            "{e}"
        );
        assert_eq!(
            Target::parse("aarch64-unknown-freebsd"),
            Ok(Target::Aarch64)
        );
    }
}
