//! Feeds arbitrary bytes, cut into arbitrary chunks, to the protocol parser.
//! Checks: no panic, the buffer the client controls stays bounded, and the ops parsed from the
//! chunked input equal the ops parsed from the same bytes in one piece.
#![no_main]
use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use natsd::parser::{Op, ParseError, Parser};

const MAX_CONTROL_LINE: usize = 256;
const MAX_PAYLOAD: usize = 1024;

fn run(data: &[u8], cuts: &[u8]) -> (Vec<Op>, Option<ParseError>) {
    let mut p = Parser::new(MAX_CONTROL_LINE, MAX_PAYLOAD);
    let mut buf = BytesMut::new();
    let mut ops = Vec::new();
    let mut at = 0;
    let mut cut_iter = cuts.iter().cycle();
    while at < data.len() {
        let step = if cuts.is_empty() {
            data.len()
        } else {
            (*cut_iter.next().unwrap() as usize).max(1)
        };
        let end = (at + step).min(data.len());
        buf.extend_from_slice(&data[at..end]);
        at = end;
        loop {
            match p.parse(&mut buf) {
                Ok(Some(op)) => ops.push(op),
                Ok(None) => break,
                Err(e) => return (ops, Some(e)),
            }
        }
        assert!(buf.len() <= MAX_CONTROL_LINE + MAX_PAYLOAD + 4 + step);
    }
    (ops, None)
}

fuzz_target!(|input: &[u8]| {
    // First byte: how many of the following bytes are chunk sizes.
    let Some((&n, rest)) = input.split_first() else { return };
    let n = (n as usize % 16).min(rest.len());
    let (cuts, data) = rest.split_at(n);
    let chunked = run(data, cuts);
    let whole = run(data, &[]);
    // An error may be detected earlier on a partial line (unknown op prefix); ops before it agree.
    match (&chunked.1, &whole.1) {
        (None, None) => assert_eq!(chunked.0, whole.0),
        _ => {
            let k = chunked.0.len().min(whole.0.len());
            assert_eq!(chunked.0[..k], whole.0[..k]);
        }
    }
});
