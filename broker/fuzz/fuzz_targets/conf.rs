#![no_main]
//! Throws arbitrary bytes at the config parser and the Options mapping: any panic, hang or
//! stack overflow is a bug (the parser bounds its own nesting and include depth).
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(src) = std::str::from_utf8(data) else {
        return;
    };
    // A name in a directory that does not exist, so `include` lines cannot reach real files.
    if let Ok(tree) = natsd::conf::parse_str(src, "/nonexistent-natsd-fuzz/fuzz.conf") {
        let mut opts = natsd::options::Options::default();
        let _ = natsd::conf::apply(&tree, &mut opts);
    }
});
