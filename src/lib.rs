//! natspkg: cross-compile natsd for FreeBSD, package it for pkg(8), emit a Bastille template.
//!
//! One path for the data: `toolchain` provisions, `compile` builds natsd for a `target`, `elf`
//! checks and brands the binary, `metadata` reads the packaging facts from Cargo.toml, `pkg` writes
//! the .pkg (and `pkg::verify` reads one back), `template` emits the Bastille template, which
//! `bastillefile` lints.

pub mod bastillefile;
pub mod compile;
pub mod elf;
pub mod metadata;
pub mod pkg;
pub mod progress;
pub mod target;
pub mod template;
#[cfg(test)]
mod test_support;
pub mod toolchain;
