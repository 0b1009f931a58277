//! Fixtures and helpers shared by the unit tests of elf, pkg and template (test builds only).

use crate::pkg::{Account, Message, PackageFile, PackageSpec};
use crate::target::Target;

/// `int main(void){return 0;}` linked by `zig cc -target <arch>-freebsd.14.0 -Os -s`
/// (see src/pkg/testdata/README.md): real FreeBSD 14 binaries, 3 KiB each.
pub(crate) const X86_64_BIN: &[u8] = include_bytes!("pkg/testdata/true-freebsd14-x86_64");
pub(crate) const AARCH64_BIN: &[u8] = include_bytes!("pkg/testdata/true-freebsd14-aarch64");

/// A copy of `bin` with the FreeBSD ELF brand set, as `natspkg build` ships it.
pub(crate) fn branded(bin: &[u8]) -> Vec<u8> {
    let mut b = bin.to_vec();
    crate::elf::brand_bytes(&mut b).unwrap();
    b
}

/// The natsd package's fixed facts (name, origin, account, ...) around the parts each test
/// chooses: the target, the description, the files and the messages.
pub(crate) fn natsd_spec(
    target: Target,
    desc: &str,
    files: Vec<PackageFile>,
    messages: Vec<Message>,
) -> PackageSpec {
    PackageSpec {
        name: "natsd".into(),
        version: "0.1.0".into(),
        origin: "net/natsd".into(),
        comment: "Small NATS broker".into(),
        desc: desc.into(),
        maintainer: "natspkg@users.noreply.github.com".into(),
        www: "https://github.com/natspkg/natspkg".into(),
        prefix: "/usr/local".into(),
        target,
        freebsd_major: 14,
        licenses: vec!["APACHE20".into()],
        categories: vec!["net".into()],
        conflicts: vec!["nats-server-*".into()],
        account: Some(Account {
            user: "nats".into(),
            group: "nats".into(),
            uid: 305,
            gid: 305,
            gecos: "NATS Daemon".into(),
        }),
        files,
        messages,
        mtime: 1_700_000_000,
    }
}

/// Asserts that `/bin/sh -n` accepts `script`; `what` names it in the failure.
pub(crate) fn assert_sh_parses(what: &str, script: &str) {
    let o = std::process::Command::new("/bin/sh")
        .args(["-n", "-c", script])
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "{what}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}
