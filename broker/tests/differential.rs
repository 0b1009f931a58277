//! Differential tests: the same raw protocol script is sent to the reference nats-server and to
//! natsd, and what each server answers must be the same, byte for byte, after two
//! normalisations only:
//! - INFO lines: the JSON key set of the fields clients need must match, and so must the values
//!   that must agree (headers, proto, max_payload, host, client_ip, port = the server's own port,
//!   auth_required, connect_info, ...); ids, versions and everything else may differ.
//! - one publish fanned out to several sids on one connection may arrive in any order (the
//!   protocol does not fix it), so runs of such deliveries are compared sorted.
//!
//! After every step the harness sends PING to every open connection and reads up to the PONG
//! (or the close), so each connection's transcript is deterministic. Those PONGs are part of
//! the transcript on both sides.
//!
//! Needs both servers: without the reference these tests print a skip message (and fail
//! under CI).

mod common;

use common::*;
use std::collections::BTreeMap;
use std::time::Duration;

/// How long a step may take to be answered.
const STEP_TIMEOUT: Duration = Duration::from_secs(2);

/// Keys every INFO must carry (clients crash without the first six).
const INFO_KEYS: &[&str] = &[
    "server_id",
    "server_name",
    "version",
    "go",
    "host",
    "port",
    "headers",
    "proto",
    "max_payload",
    "client_id",
    "client_ip",
];
/// Keys whose values must agree between the servers.
const INFO_VALUES: &[&str] = &[
    "host",
    "port",
    "headers",
    "proto",
    "max_payload",
    "client_ip",
    "auth_required",
    "tls_required",
    "tls_verify",
    "tls_available",
    "connect_info",
    "ldm",
];

struct Script {
    config: Option<&'static str>,
    args: &'static [&'static str],
    /// (connection index, bytes). A connection opens on its first step.
    steps: Vec<(usize, Vec<u8>)>,
    /// Steps after which the harness does not settle (it pauses instead), so that the next step
    /// continues a frame this one left unfinished.
    hold: &'static [usize],
}

fn script(steps: Vec<(usize, Vec<u8>)>) -> Script {
    Script {
        config: None,
        args: &[],
        steps,
        hold: &[],
    }
}

/// One step on connection 0.
fn one(bytes: impl AsRef<[u8]>) -> Script {
    script(vec![(0, bytes.as_ref().to_vec())])
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

struct Transcript {
    bytes: Vec<u8>,
    closed: bool,
    timed_out: bool,
}

/// PINGs in what a client sent: lines that are `ping` in any case. (A payload that is the word
/// `ping` would be miscounted: scripts do not use one.)
fn count_pings(bytes: &[u8]) -> usize {
    bytes
        .split(|&b| b == b'\n')
        .filter(|l| {
            let mut l = *l;
            while let Some(rest) = l.strip_suffix(b"\r") {
                l = rest;
            }
            l.eq_ignore_ascii_case(b"ping")
        })
        .count()
}

fn run(kind: Kind, s: &Script) -> (Vec<Transcript>, u16) {
    let mut launch = Launch::new(kind).args(s.args.iter().copied());
    if let Some(c) = s.config {
        launch = launch.config(c);
    }
    let srv = launch.start();
    let n = s.steps.iter().map(|(c, _)| c + 1).max().unwrap_or(0);
    let mut conns: Vec<Option<Conn>> = (0..n).map(|_| None).collect();
    let mut out: Vec<Transcript> = (0..n)
        .map(|_| Transcript {
            bytes: Vec::new(),
            closed: false,
            timed_out: false,
        })
        .collect();
    // PINGs sent minus PONGs received, per connection.
    let mut owed = vec![0usize; n];
    for (step, (ci, bytes)) in s.steps.iter().enumerate() {
        let ci = *ci;
        if conns[ci].is_none() {
            let mut c = srv.connect_raw();
            // The INFO on accept (or whatever comes instead).
            match c.try_read_until(b"\r\n", STEP_TIMEOUT) {
                Ok(line) => out[ci].bytes.extend(line),
                Err((got, end)) => {
                    c.take_pending();
                    out[ci].bytes.extend(got);
                    out[ci].closed |= end == End::Closed;
                }
            }
            conns[ci] = Some(c);
        }
        if !out[ci].closed {
            let c = conns[ci].as_mut().unwrap();
            if c.try_send(bytes).is_ok() {
                owed[ci] += count_pings(bytes);
            }
        }
        if s.hold.contains(&step) {
            std::thread::sleep(Duration::from_millis(20));
            continue;
        }
        // Settle every open connection. The sender first: its PONG proves the server has
        // handled what it sent, so what that routed to the others is queued ahead of their PONGs.
        let order: Vec<usize> = std::iter::once(ci)
            .chain((0..n).filter(|&i| i != ci))
            .collect();
        settle(&order, &mut conns, &mut out, &mut owed);
    }
    // Once more at the end: catches what a server sends after a PONG (the async INFO).
    let all: Vec<usize> = (0..n).collect();
    settle(&all, &mut conns, &mut out, &mut owed);
    (out, srv.port())
}

/// PING each open connection in `order` and read up to the PONGs it owes (or the close).
fn settle(order: &[usize], conns: &mut [Option<Conn>], out: &mut [Transcript], owed: &mut [usize]) {
    for &i in order {
        let Some(c) = conns[i].as_mut() else { continue };
        let t = &mut out[i];
        if t.closed {
            continue;
        }
        if c.try_send(b"PING\r\n").is_ok() {
            owed[i] += 1;
        } else {
            // Already closed by the server: collect what it sent before closing.
            let (got, closed) = c.read_for(STEP_TIMEOUT);
            t.bytes.extend(got);
            t.closed = closed;
            t.timed_out = !closed;
            owed[i] = 0;
        }
        while owed[i] > 0 {
            match c.try_read_until(b"PONG\r\n", STEP_TIMEOUT) {
                Ok(got) => {
                    t.bytes.extend(got);
                    owed[i] -= 1;
                }
                Err((got, end)) => {
                    c.take_pending();
                    t.bytes.extend(got);
                    match end {
                        End::Closed => t.closed = true,
                        End::Timeout => t.timed_out = true,
                    }
                    owed[i] = 0;
                }
            }
        }
    }
}

/// An INFO line as the set of keys clients need plus the values that must agree.
fn normalise_info(frame: &[u8], port: u16) -> String {
    let Some(info) = parse_info(frame) else {
        return format!("INFO <not `INFO {{json}} \\r\\n`>: {}", show(frame));
    };
    let mut m = BTreeMap::new();
    for &k in INFO_KEYS {
        m.insert(
            k.to_string(),
            if info.get(k).is_some() {
                "present".to_string()
            } else {
                "MISSING".to_string()
            },
        );
    }
    for &k in INFO_VALUES {
        if let Some(v) = info.get(k) {
            let v = if k == "port" && *v == port {
                "<the server's port>".to_string()
            } else {
                v.to_string()
            };
            m.insert(k.to_string(), v);
        }
    }
    format!("INFO {m:?}")
}

/// `MSG <subj> <sid> [reply] <n>` / `HMSG ...`: everything but the sid, plus the payload. Two
/// deliveries with the same key come from one publish fanned out over several sids (or from
/// identical publishes, where order does not matter either).
fn fanout_key(frame: &[u8]) -> Option<Vec<u8>> {
    let eol = find(frame, b"\r\n")?;
    let head = std::str::from_utf8(&frame[..eol]).ok()?;
    let mut parts: Vec<&str> = head.split(' ').collect();
    if !matches!(parts.first(), Some(&"MSG") | Some(&"HMSG")) || parts.len() < 4 {
        return None;
    }
    parts.remove(2);
    let mut key = parts.join(" ").into_bytes();
    key.extend_from_slice(&frame[eol..]);
    Some(key)
}

fn normalise(t: &Transcript, port: u16) -> Vec<String> {
    let mut fs = frames(&t.bytes);
    // Sort runs of deliveries that share a fanout key.
    let mut i = 0;
    while i < fs.len() {
        let Some(key) = fanout_key(&fs[i]) else {
            i += 1;
            continue;
        };
        let mut j = i + 1;
        while j < fs.len() && fanout_key(&fs[j]).as_ref() == Some(&key) {
            j += 1;
        }
        fs[i..j].sort();
        i = j;
    }
    let mut out: Vec<String> = fs
        .iter()
        .map(|f| {
            if f.starts_with(b"INFO ") {
                normalise_info(f, port)
            } else {
                show(f)
            }
        })
        .collect();
    out.push(
        match (t.closed, t.timed_out) {
            (true, _) => "<closed by the server>",
            (false, true) => "<no PONG within the step timeout>",
            (false, false) => "<open>",
        }
        .to_string(),
    );
    out
}

fn differential(name: &str, s: Script) {
    if !reference_available() {
        return;
    }
    let (want, got) = std::thread::scope(|sc| {
        let r = sc.spawn(|| run(Kind::Reference, &s));
        let n = sc.spawn(|| run(Kind::Natsd, &s));
        (r.join(), n.join())
    });
    let (want, want_port) = want.expect("the script failed to run against the reference");
    let (got, got_port) = got.expect("the script failed to run against natsd");
    let mut failures = Vec::new();
    for (i, (w, g)) in want.iter().zip(&got).enumerate() {
        let w = normalise(w, want_port);
        let g = normalise(g, got_port);
        // NATSD_DIFF_SHOW=1 prints what the reference answered, to review the scripts.
        if std::env::var_os("NATSD_DIFF_SHOW").is_some() {
            eprintln!("[{name}] connection {i}:\n    {}", w.join("\n    "));
        }
        if w != g {
            let at = w.iter().zip(&g).take_while(|(a, b)| a == b).count();
            failures.push(format!(
                "connection {i}: first difference at frame {at}\n  reference: {}\n  natsd:     {}\n\
                 full reference transcript:\n    {}\nfull natsd transcript:\n    {}",
                w.get(at).map(String::as_str).unwrap_or("<nothing>"),
                g.get(at).map(String::as_str).unwrap_or("<nothing>"),
                w.join("\n    "),
                g.join("\n    ")
            ));
        }
    }
    let steps: Vec<String> = s
        .steps
        .iter()
        .map(|(c, b)| format!("  conn {c} sends {}", show(b)))
        .collect();
    assert!(
        failures.is_empty(),
        "differential script `{name}` differs:\n{}\nscript:\n{}",
        failures.join("\n"),
        steps.join("\n")
    );
}

macro_rules! diff_test {
    ($name:ident, $script:expr) => {
        #[test]
        fn $name() {
            differential(stringify!($name), $script);
        }
    };
}

const C: &[u8] = b"CONNECT {\"verbose\":false,\"pedantic\":false}\r\n";
const CH: &[u8] = b"CONNECT {\"verbose\":false,\"pedantic\":false,\"headers\":true}\r\n";
const CNR: &[u8] =
    b"CONNECT {\"verbose\":false,\"pedantic\":false,\"headers\":true,\"no_responders\":true}\r\n";
const CV: &[u8] = b"CONNECT {\"verbose\":true,\"pedantic\":false,\"headers\":true}\r\n";
const CP: &[u8] = b"CONNECT {\"verbose\":false,\"pedantic\":true}\r\n";

// --- CONNECT and INFO -------------------------------------------------------------------------

diff_test!(connect_then_ping, one(C));
diff_test!(nothing_sent, one(b""));
diff_test!(ping_before_connect, one(b"PING\r\n"));
diff_test!(
    verbose_before_connect,
    one(b"SUB a 1\r\nPUB a 1\r\nx\r\nUNSUB 1\r\n")
);
diff_test!(connect_empty_object, one(b"CONNECT {}\r\nSUB a 1\r\n"));
diff_test!(
    connect_twice,
    one(cat(&[b"CONNECT {}\r\n", C, b"SUB a 1\r\nPUB a 1\r\nx\r\n"]))
);
diff_test!(
    connect_unknown_fields,
    one(b"CONNECT {\"verbose\":false,\"pedantic\":false,\"foo\":1,\"lang\":\"rust\",\"name\":\"n\",\"version\":\"1\"}\r\n")
);
diff_test!(connect_bad_json, one(b"CONNECT {bad json\r\n"));
diff_test!(connect_without_json, one(b"CONNECT\r\n"));
diff_test!(connect_array, one(b"CONNECT []\r\n"));
diff_test!(
    connect_wrong_type,
    one(b"CONNECT {\"verbose\":\"yes\"}\r\n")
);
diff_test!(
    connect_trailing_garbage,
    one(b"CONNECT {\"verbose\":false} x\r\n")
);
diff_test!(
    connect_protocol_1_async_info,
    one(b"CONNECT {\"verbose\":false,\"pedantic\":false,\"protocol\":1}\r\n")
);
diff_test!(
    connect_protocol_0,
    one(b"CONNECT {\"verbose\":false,\"pedantic\":false,\"protocol\":0}\r\n")
);
diff_test!(
    connect_protocol_2,
    one(b"CONNECT {\"verbose\":false,\"pedantic\":false,\"protocol\":2}\r\n")
);
diff_test!(
    connect_no_responders_without_headers,
    one(b"CONNECT {\"verbose\":false,\"no_responders\":true}\r\n")
);
diff_test!(
    connect_verbose_session,
    one(cat(&[
        CV,
        b"SUB a 1\r\nPUB a 1\r\nx\r\nHPUB a 12 14\r\nNATS/1.0\r\n\r\nhi\r\nUNSUB 1\r\nPING\r\n"
    ]))
);
diff_test!(
    verbose_errors_get_no_ok,
    one(cat(&[CV, b"SUB foo..bar 1\r\nUNSUB 5\r\n"]))
);

// --- Operations and parsing -------------------------------------------------------------------

diff_test!(unknown_operation, one(cat(&[C, b"FOO\r\n"])));
diff_test!(leading_space, one(cat(&[C, b" PING\r\n"])));
diff_test!(client_sends_msg, one(cat(&[C, b"MSG a 1 1\r\nx\r\n"])));
diff_test!(client_sends_ok, one(cat(&[C, b"+OK\r\n"])));
diff_test!(client_sends_info, one(cat(&[C, b"INFO {}\r\n"])));
diff_test!(client_sends_err, one(cat(&[C, b"-ERR 'x'\r\n"])));
diff_test!(client_sends_pong, one(cat(&[C, b"PONG\r\n"])));
diff_test!(
    mixed_case_operations,
    one(b"connect {\"verbose\":false,\"pedantic\":false,\"headers\":true}\r\nsUb a 1\r\nPuB a 1\r\nx\r\nhPuB a 12 12\r\nNATS/1.0\r\n\r\n\r\nPiNg\r\nuNsUb 1\r\n")
);
diff_test!(
    tabs_and_spaces,
    one(cat(&[
        C,
        b"SUB\ta\t\t1\r\nSUB  b  q  2\r\nPUB \t a \t 1\r\nx\r\nPUB b r 1 \r\ny\r\nSUB  c  3  \r\nPING \r\n"
    ]))
);
diff_test!(
    lf_only_line_endings,
    one(b"CONNECT {\"verbose\":false,\"pedantic\":false}\nSUB a 1\nPUB a 1\nx\r\nPING\n")
);
diff_test!(
    payload_ended_by_lf_only,
    one(cat(&[C, b"SUB a 1\r\nPUB a 1\r\nx\n"]))
);
diff_test!(ping_with_extra_cr, one(cat(&[C, b"PING\r\r\n"])));
diff_test!(
    pipelined_in_one_write,
    one(cat(&[
        C,
        b"SUB p.> 1\r\n",
        &(0..50)
            .flat_map(|i| format!("PUB p.{i} r.{i} 2\r\n{:02}\r\n", i).into_bytes())
            .collect::<Vec<u8>>(),
    ]))
);
diff_test!(
    split_across_writes,
    Script {
        config: None,
        args: &[],
        steps: vec![
            (0, CH.to_vec()),
            (0, b"SUB a 1\r\nPUB a 5\r\nhel".to_vec()),
            (0, b"lo\r\nPUB a 2\r\n".to_vec()),
            (0, b"ok\r\nHPUB a 12".to_vec()),
            (0, b" 14\r\nNATS/1.0\r\n".to_vec()),
            (0, b"\r\nhi\r".to_vec()),
            (0, b"\n".to_vec()),
        ],
        hold: &[1, 2, 3, 4, 5],
    }
);
diff_test!(
    control_line_too_long,
    one(cat(&[
        C,
        format!("PUB {} 1\r\nx\r\n", "a".repeat(8192)).as_bytes()
    ]))
);
diff_test!(
    control_line_too_long_without_crlf,
    one(cat(&[C, format!("SUB {}", "a".repeat(8192)).as_bytes()]))
);
diff_test!(
    long_line_under_the_limit,
    one(cat(&[
        C,
        format!("SUB {0} 1\r\nPUB {0} 1\r\nx\r\n", "b".repeat(3900)).as_bytes()
    ]))
);

// --- PUB sizes --------------------------------------------------------------------------------

diff_test!(pub_missing_size, one(cat(&[C, b"PUB a\r\n"])));
diff_test!(pub_no_args, one(cat(&[C, b"PUB\r\n"])));
diff_test!(pub_bad_size, one(cat(&[C, b"PUB a x\r\n"])));
diff_test!(pub_negative_size, one(cat(&[C, b"PUB a -1\r\n"])));
diff_test!(pub_plus_size, one(cat(&[C, b"PUB a +1\r\nx\r\n"])));
diff_test!(
    pub_leading_zero_size,
    one(cat(&[C, b"SUB a 1\r\nPUB a 01\r\nx\r\n"]))
);
diff_test!(
    pub_huge_size,
    one(cat(&[C, b"PUB a 99999999999999999999\r\n"]))
);
diff_test!(pub_too_many_args, one(cat(&[C, b"PUB a b c 1\r\n"])));
diff_test!(pub_empty_subject, one(cat(&[C, b"PUB  1\r\n"])));
diff_test!(pub_payload_too_long, one(cat(&[C, b"PUB a 3\r\nabcd\r\n"])));
diff_test!(
    pub_payload_too_short,
    script(vec![
        (0, cat(&[C, b"SUB a 1\r\n"])),
        (0, b"PUB a 5\r\nab\r\n".to_vec())
    ])
);
diff_test!(
    pub_zero_payload_and_crlf_payloads,
    one(cat(&[
        C,
        b"SUB a 1\r\nPUB a 0\r\n\r\nPUB a 2\r\n\r\n\r\nPUB a 2\r\nx\r\r\n"
    ]))
);
diff_test!(
    pub_binary_payload,
    one(cat(&[C, b"SUB a 1\r\nPUB a 6\r\n\x00\x01\xfe\xff\r\n\r\n"]))
);
diff_test!(
    pub_64k_payload,
    one(cat(&[
        C,
        b"SUB a 1\r\nPUB a 65536\r\n",
        &[b'y'; 65536],
        b"\r\n"
    ]))
);
diff_test!(
    max_payload_at_the_limit,
    Script {
        config: Some("max_payload: 16\n"),
        args: &[],
        hold: &[],
        steps: vec![(
            0,
            cat(&[CH, b"SUB a 1\r\nPUB a 16\r\n0123456789abcdef\r\nHPUB a 12 16\r\nNATS/1.0\r\n\r\nabcd\r\n"])
        )]
    }
);
diff_test!(
    max_payload_exceeded,
    Script {
        config: Some("max_payload: 16\n"),
        args: &[],
        hold: &[],
        steps: vec![(0, cat(&[C, b"PUB a 17\r\n"]))]
    }
);
diff_test!(
    max_payload_exceeded_by_hpub,
    Script {
        config: Some("max_payload: 16\n"),
        args: &[],
        hold: &[],
        steps: vec![(0, cat(&[CH, b"HPUB a 12 17\r\n"]))]
    }
);
diff_test!(
    default_max_payload_exceeded,
    one(cat(&[C, b"PUB a 1048577\r\n"]))
);

// --- HPUB -------------------------------------------------------------------------------------

diff_test!(
    hpub_delivery,
    one(cat(&[
        CH,
        b"SUB a 1\r\nHPUB a 18 20\r\nNATS/1.0\r\nK: v\r\n\r\nhi\r\nHPUB a r 12 12\r\nNATS/1.0\r\n\r\n\r\n"
    ]))
);
diff_test!(
    hpub_odd_header_blocks,
    one(cat(&[
        CH,
        b"SUB a 1\r\nHPUB a 0 0\r\n\r\nHPUB a 5 5\r\nhello\r\nHPUB a 12 12\r\nXXXX/1.0\r\n\r\n\r\n"
    ]))
);
diff_test!(
    hpub_to_a_subscriber_without_headers,
    script(vec![
        (0, cat(&[C, b"SUB a 1\r\n"])),
        (
            1,
            cat(&[
                CH,
                b"SUB a 1\r\nHPUB a 18 20\r\nNATS/1.0\r\nK: v\r\n\r\nhi\r\n"
            ])
        ),
    ])
);
diff_test!(
    hpub_without_headers,
    one(cat(&[C, b"HPUB a 12 14\r\nNATS/1.0\r\n\r\nhi\r\n"]))
);
diff_test!(
    hpub_before_connect,
    one(b"HPUB a 12 14\r\nNATS/1.0\r\n\r\nhi\r\n")
);
diff_test!(
    hpub_header_larger_than_total,
    one(cat(&[CH, b"HPUB a 20 16\r\n"]))
);
diff_test!(hpub_missing_size, one(cat(&[CH, b"HPUB a 12\r\n"])));
diff_test!(
    hpub_length_mismatch,
    one(cat(&[
        CH,
        b"HPUB a 18 20\r\nNATS/1.0\r\nK: v\r\n\r\nhi!\r\n"
    ]))
);

// --- SUB, UNSUB, subjects ---------------------------------------------------------------------

diff_test!(
    invalid_subjects,
    one(cat(&[
        C,
        b"SUB foo..bar 1\r\nSUB foo. 2\r\nSUB .foo 3\r\nSUB foo.>.bar 4\r\nSUB >.a 5\r\nSUB . 6\r\n"
    ]))
);
diff_test!(
    odd_but_valid_subjects,
    one(cat(&[
        C,
        "SUB fo*o 1\r\nSUB a.>> 2\r\nSUB a.** 3\r\nSUB é.ü 4\r\nPUB fo*o 1\r\n1\r\nPUB a.>> 1\r\n2\r\nPUB a.** 1\r\n3\r\nPUB é.ü 1\r\n4\r\n"
            .as_bytes()
    ]))
);
diff_test!(sub_empty_subject, one(cat(&[C, b"SUB  1\r\n"])));
diff_test!(sub_missing_sid, one(cat(&[C, b"SUB a\r\n"])));
diff_test!(sub_too_many_args, one(cat(&[C, b"SUB a b c d\r\n"])));
diff_test!(
    sid_strings,
    one(cat(&[
        C,
        b"SUB a x-1\r\nSUB b 99999999999999999999\r\nPUB a 1\r\n1\r\nPUB b 1\r\n2\r\nUNSUB x-1\r\nPUB a 1\r\n3\r\n"
    ]))
);
diff_test!(
    sid_reused_for_another_subject,
    one(cat(&[
        C,
        b"SUB a 1\r\nSUB b 1\r\nPUB a 1\r\nx\r\nPUB b 1\r\ny\r\n"
    ]))
);
diff_test!(
    wildcards,
    one(cat(&[
        C,
        b"SUB a.* 1\r\nSUB a.> 2\r\nSUB * 3\r\nSUB > 4\r\nSUB *.b.* 5\r\n\
          PUB a 1\r\n1\r\nPUB a.b 1\r\n2\r\nPUB a.b.c 1\r\n3\r\nPUB x.b.y 1\r\n4\r\nPUB a.b.c.d 1\r\n5\r\n"
    ]))
);
diff_test!(
    gt_needs_a_token,
    one(cat(&[
        C,
        b"SUB a.b.> 1\r\nPUB a.b 1\r\nx\r\nPUB a.b.c 1\r\ny\r\n"
    ]))
);
diff_test!(
    wildcard_publish_without_pedantic,
    one(cat(&[
        C,
        b"SUB > 1\r\nSUB a.* 2\r\nPUB a.* 1\r\nx\r\nPUB * 1\r\ny\r\n"
    ]))
);
diff_test!(
    wildcard_publish_with_pedantic,
    one(cat(&[
        CP,
        b"SUB > 1\r\nSUB a.* 2\r\nPUB a.* 1\r\nx\r\nPUB a.> 1\r\ny\r\nPUB a..b 1\r\nz\r\nPUB a.b* 1\r\nw\r\n"
    ]))
);
diff_test!(
    unsub_variants,
    one(cat(&[
        C,
        b"SUB a 1\r\nUNSUB 1 0\r\nPUB a 1\r\n1\r\nSUB b 2\r\nUNSUB 2 -1\r\nPUB b 1\r\n2\r\n\
          SUB c 3\r\nUNSUB 3 x\r\nPUB c 1\r\n3\r\nUNSUB 99\r\nUNSUB 98 2\r\nUNSUB 4 99999999999999999999\r\n"
    ]))
);
diff_test!(unsub_no_args, one(cat(&[C, b"UNSUB\r\n"])));
diff_test!(
    unsub_max_sequences,
    one(cat(&[
        C,
        b"SUB a 1\r\nUNSUB 1 2\r\nPUB a 1\r\n1\r\nPUB a 1\r\n2\r\nPUB a 1\r\n3\r\n\
          SUB b 2\r\nPUB b 1\r\n4\r\nPUB b 1\r\n5\r\nUNSUB 2 1\r\nPUB b 1\r\n6\r\n\
          SUB c 3\r\nPUB c 1\r\n7\r\nUNSUB 3 3\r\nPUB c 1\r\n8\r\nPUB c 1\r\n9\r\nPUB c 1\r\n0\r\n\
          SUB d 4\r\nUNSUB 4 1\r\nPUB d 1\r\nx\r\nSUB d 4\r\nPUB d 1\r\ny\r\n"
    ]))
);
diff_test!(
    one_copy_per_sid,
    one(cat(&[
        C,
        b"SUB a.b 1\r\nSUB a.* 2\r\nSUB a.> 3\r\nSUB > 4\r\nSUB a.b 1\r\nPUB a.b 1\r\nx\r\n"
    ]))
);
diff_test!(
    queue_group_single_member_and_plain,
    one(cat(&[
        C,
        b"SUB a q 1\r\nSUB a q 1\r\nSUB a 2\r\nPUB a 1\r\nx\r\nUNSUB 1\r\nPUB a 1\r\ny\r\n"
    ]))
);
diff_test!(
    max_subscriptions,
    Script {
        config: Some("max_subscriptions: 2\n"),
        args: &[],
        hold: &[],
        steps: vec![(
            0,
            cat(&[C, b"SUB a 1\r\nSUB b 2\r\nSUB c 3\r\nPUB c 1\r\nx\r\nUNSUB 1\r\nSUB c 3\r\nPUB c 1\r\ny\r\n"])
        )]
    }
);

// --- Several connections ----------------------------------------------------------------------

diff_test!(
    delivery_between_connections,
    script(vec![
        (0, cat(&[C, b"SUB x.* 1\r\nSUB x.y 2\r\n"])),
        (1, cat(&[CH, b"SUB x.y 5\r\n"])),
        (
            2,
            cat(&[
                CH,
                b"PUB x.y r 3\r\nabc\r\nHPUB x.y 18 20\r\nNATS/1.0\r\nK: v\r\n\r\nhi\r\n"
            ])
        ),
        (1, b"UNSUB 5\r\n".to_vec()),
        (2, b"PUB x.y 1\r\nz\r\n".to_vec()),
    ])
);
diff_test!(
    echo_false,
    script(vec![
        (
            0,
            b"CONNECT {\"verbose\":false,\"pedantic\":false,\"echo\":false}\r\nSUB a 1\r\n"
                .to_vec()
        ),
        (1, cat(&[C, b"SUB a 1\r\n"])),
        (0, b"PUB a 1\r\nx\r\n".to_vec()),
        (1, b"PUB a 1\r\ny\r\n".to_vec()),
    ])
);
diff_test!(
    request_reply,
    script(vec![
        (0, cat(&[C, b"SUB svc q 1\r\n"])),
        (
            1,
            cat(&[CNR, b"SUB _INBOX.r 1\r\nPUB svc _INBOX.r 3\r\nreq\r\n"])
        ),
        (0, b"PUB _INBOX.r 4\r\nresp\r\n".to_vec()),
        (1, b"PUB nobody _INBOX.r 0\r\n\r\n".to_vec()),
    ])
);
diff_test!(
    no_responders_variants,
    one(cat(&[
        CNR,
        b"SUB r 1\r\nSUB r.* 2\r\nPUB foo r 0\r\n\r\nPUB foo.bar r.x 2\r\nhi\r\n\
          HPUB nobody r 12 12\r\nNATS/1.0\r\n\r\n\r\nPUB foo 0\r\n\r\nPUB foo unheard 0\r\n\r\n"
    ]))
);
diff_test!(
    no_responders_needs_the_option,
    one(cat(&[CH, b"SUB r 1\r\nPUB foo r 0\r\n\r\n"]))
);
diff_test!(
    max_connections,
    Script {
        config: Some("max_connections: 2\n"),
        args: &[],
        hold: &[],
        steps: vec![(0, C.to_vec()), (1, C.to_vec()), (2, C.to_vec())]
    }
);

// --- Auth -------------------------------------------------------------------------------------

diff_test!(
    auth_user_pass_good,
    Script {
        config: None,
        args: &["--user", "u", "--pass", "p"],
        hold: &[],
        steps: vec![(
            0,
            b"CONNECT {\"verbose\":false,\"pedantic\":false,\"user\":\"u\",\"pass\":\"p\"}\r\nSUB a 1\r\nPUB a 1\r\nx\r\n".to_vec()
        )]
    }
);
diff_test!(
    auth_user_pass_bad,
    Script {
        config: None,
        args: &["--user", "u", "--pass", "p"],
        hold: &[],
        steps: vec![(
            0,
            b"CONNECT {\"verbose\":false,\"pedantic\":false,\"user\":\"u\",\"pass\":\"q\"}\r\n"
                .to_vec()
        )]
    }
);
diff_test!(
    auth_missing_connect,
    Script {
        config: None,
        args: &["--user", "u", "--pass", "p"],
        hold: &[],
        steps: vec![(0, b"SUB a 1\r\n".to_vec())]
    }
);
diff_test!(
    auth_token_good_and_bad,
    Script {
        config: None,
        args: &["--auth", "secret"],
        hold: &[],
        steps: vec![
            (
                0,
                b"CONNECT {\"verbose\":false,\"pedantic\":false,\"auth_token\":\"secret\"}\r\n"
                    .to_vec()
            ),
            (
                1,
                b"CONNECT {\"verbose\":false,\"pedantic\":false,\"auth_token\":\"secreT\"}\r\n"
                    .to_vec()
            ),
            (
                2,
                b"CONNECT {\"verbose\":false,\"pedantic\":false,\"user\":\"secret\"}\r\n".to_vec()
            ),
        ]
    }
);
diff_test!(
    credentials_ignored_without_auth,
    one(b"CONNECT {\"verbose\":false,\"pedantic\":false,\"user\":\"x\",\"pass\":\"y\",\"auth_token\":\"z\"}\r\n")
);

#[test]
fn normalisation_keeps_differences_visible() {
    // The comparison must not hide what it is there to catch.
    let t = |b: &[u8]| Transcript {
        bytes: b.to_vec(),
        closed: false,
        timed_out: false,
    };
    let a = normalise(&t(b"MSG a 1 1\r\nx\r\nMSG a 2 1\r\nx\r\n"), 1);
    let b = normalise(&t(b"MSG a 2 1\r\nx\r\nMSG a 1 1\r\nx\r\n"), 1);
    assert_eq!(a, b, "fanout order is free");
    let c = normalise(&t(b"MSG a 2 1\r\ny\r\nMSG a 1 1\r\nx\r\n"), 1);
    assert_ne!(a, c, "payloads differ");
    let d = normalise(&t(b"MSG a 1 1\r\nx\r\n"), 1);
    assert_ne!(a, d, "a missing delivery");
    let i1 = normalise(
        &t(b"INFO {\"server_id\":\"A\",\"headers\":true,\"port\":5} \r\n"),
        5,
    );
    let i2 = normalise(
        &t(b"INFO {\"server_id\":\"B\",\"headers\":true,\"port\":7} \r\n"),
        7,
    );
    assert_eq!(i1, i2, "ids and ports are per server");
    let i3 = normalise(
        &t(b"INFO {\"server_id\":\"B\",\"headers\":false,\"port\":7} \r\n"),
        7,
    );
    assert_ne!(i1, i3, "headers must agree");
    let i4 = normalise(&t(b"INFO {\"headers\":true,\"port\":7} \r\n"), 7);
    assert_ne!(i2, i4, "a missing key");
    let i5 = normalise(
        &t(b"INFO {\"server_id\":\"B\",\"headers\":true,\"port\":7}\r\n"),
        7,
    );
    assert_ne!(i2, i5, "the space before CRLF");
    let mut closed = t(b"");
    closed.closed = true;
    assert_ne!(
        normalise(&closed, 1),
        normalise(&t(b""), 1),
        "close vs open"
    );
}

// --- Config-driven limits and auth ------------------------------------------------------------

diff_test!(
    max_control_line_from_config,
    Script {
        config: Some("max_control_line: 1024\n"),
        args: &[],
        steps: vec![
            (
                0,
                cat(&[C, format!("SUB {} 1\r\n", "a".repeat(900)).as_bytes()])
            ),
            (
                1,
                cat(&[C, format!("SUB {} 1\r\n", "a".repeat(2000)).as_bytes()])
            ),
        ],
        hold: &[],
    }
);

// --- Users, permissions, accounts -----------------------------------------------------------

diff_test!(
    users_permissions_allow_deny_and_wildcard_delivery,
    Script {
        config: Some(
            "authorization {\n  users = [\n    \
             {user: alice, password: pa, permissions: {publish: {allow: [\"a.>\"], deny: \"a.no\"}, \
             subscribe: {allow: [\"a.>\", \"q.*\"], deny: [\"a.secret\"]}}}\n    \
             {user: bob, password: pb}\n  ]\n}\n"
        ),
        args: &[],
        steps: vec![
            (0, b"CONNECT {\"verbose\":true,\"pedantic\":false,\"user\":\"alice\",\"pass\":\"pa\"}\r\nSUB a.> 1\r\nSUB q.x g 2\r\nSUB b 3\r\nSUB a.secret 4\r\nSUB b g 5\r\nPUB a.no 1\r\nx\r\nPUB b 1\r\nx\r\nPUB a.ok 1\r\ny\r\n".to_vec()),
            (1, b"CONNECT {\"verbose\":false,\"pedantic\":false,\"user\":\"bob\",\"pass\":\"pb\"}\r\nPUB a.secret 1\r\ns\r\nPUB a.fine 1\r\nf\r\nPUB q.x 1\r\nq\r\n".to_vec()),
            (0, b"PING\r\n".to_vec()),
            (2, b"CONNECT {\"verbose\":false,\"pedantic\":false,\"user\":\"alice\",\"pass\":\"nope\"}\r\n".to_vec()),
        ],
        hold: &[],
    }
);

diff_test!(
    accounts_isolate_with_per_user_permissions,
    Script {
        config: Some(
            "accounts {\n  A { users = [ {user: a1, password: p}, {user: a2, password: p, \
             permissions: {publish: x}} ] }\n  B { users = [ {user: b1, password: p} ] }\n}\n"
        ),
        args: &[],
        steps: vec![
            (0, b"CONNECT {\"verbose\":false,\"pedantic\":false,\"user\":\"a1\",\"pass\":\"p\"}\r\nSUB x 1\r\nSUB y 2\r\n".to_vec()),
            (1, b"CONNECT {\"verbose\":false,\"pedantic\":false,\"user\":\"b1\",\"pass\":\"p\"}\r\nSUB x 1\r\nPUB x 1\r\nb\r\n".to_vec()),
            (2, b"CONNECT {\"verbose\":true,\"pedantic\":false,\"user\":\"a2\",\"pass\":\"p\"}\r\nPUB x 1\r\na\r\nPUB y 1\r\nn\r\n".to_vec()),
            (0, b"PING\r\n".to_vec()),
            (1, b"PING\r\n".to_vec()),
            (3, b"CONNECT {\"verbose\":false,\"pedantic\":false,\"user\":\"a2\",\"pass\":\"wrong\"}\r\n".to_vec()),
            (4, b"CONNECT {\"verbose\":false,\"pedantic\":false}\r\n".to_vec()),
        ],
        hold: &[],
    }
);

diff_test!(
    bcrypt_token,
    Script {
        config: Some(
            "authorization {\n  \
             token: \"$2a$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW\"\n}\n"
        ),
        args: &[],
        steps: vec![
            (0, b"CONNECT {\"verbose\":false,\"pedantic\":false,\"auth_token\":\"U*V\"}\r\n".to_vec()),
            (1, b"CONNECT {\"verbose\":true,\"pedantic\":false,\"auth_token\":\"U*U\"}\r\nSUB a 1\r\nPUB a 1\r\nx\r\n".to_vec()),
        ],
        hold: &[],
    }
);

diff_test!(
    single_user_bcrypt_password,
    Script {
        config: Some(
            "authorization {\n  user: bob\n  \
             password: \"$2a$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW\"\n}\n"
        ),
        args: &[],
        steps: vec![
            (0, b"CONNECT {\"verbose\":false,\"pedantic\":false,\"user\":\"bob\",\"pass\":\"U*V\"}\r\n".to_vec()),
            (1, b"CONNECT {\"verbose\":false,\"pedantic\":false,\"user\":\"alice\",\"pass\":\"U*U\"}\r\n".to_vec()),
            (2, b"CONNECT {\"verbose\":true,\"pedantic\":false,\"user\":\"bob\",\"pass\":\"U*U\"}\r\nSUB a 1\r\nPUB a 1\r\nx\r\n".to_vec()),
        ],
        hold: &[],
    }
);

// --- More edges -------------------------------------------------------------------------------

diff_test!(
    subjects_are_case_sensitive,
    one(cat(&[
        C,
        b"SUB A 1\r\nSUB a 2\r\nPUB a 1\r\nx\r\nPUB A 1\r\ny\r\n"
    ]))
);
diff_test!(
    queue_names,
    one(cat(&[
        C,
        b"SUB a q.x 1\r\nSUB a q* 2\r\nSUB a q> 3\r\nSUB a Q-_1 4\r\nPUB a 1\r\nx\r\n"
    ]))
);
diff_test!(
    reply_subjects,
    one(cat(&[
        C,
        b"SUB a 1\r\nPUB a r.* 1\r\n1\r\nPUB a r.> 1\r\n2\r\nPUB a r..x 1\r\n3\r\nPUB a _INBOX.x.y 1\r\n4\r\n"
    ]))
);
diff_test!(
    reply_subjects_pedantic,
    one(cat(&[
        CP,
        b"SUB a 1\r\nPUB a r.* 1\r\n1\r\nPUB a r..x 1\r\n3\r\n"
    ]))
);
diff_test!(
    invalid_publish_subject_without_pedantic,
    one(cat(&[
        C,
        b"SUB > 1\r\nPUB a..b 1\r\nx\r\nPUB .a 1\r\ny\r\nPUB a. 1\r\nz\r\n"
    ]))
);
diff_test!(
    sid_reuse_after_unsub_max,
    one(cat(&[
        C,
        b"SUB a 1\r\nUNSUB 1 1\r\nPUB a 1\r\nx\r\nSUB b 1\r\nPUB b 1\r\ny\r\nPUB a 1\r\nz\r\n"
    ]))
);
diff_test!(verbose_pong_and_ping, one(cat(&[CV, b"PONG\r\nPING\r\n"])));
diff_test!(
    tab_before_crlf,
    one(cat(&[C, b"SUB a 1\t\r\nPUB a 1\t\r\nx\r\nPING\t\r\n"]))
);
diff_test!(
    many_subscriptions_one_publish,
    one(cat(&[
        C,
        &(1..=100)
            .flat_map(
                |i| format!("SUB m.{} {i}\r\n", if i % 2 == 0 { "*" } else { ">" }).into_bytes()
            )
            .collect::<Vec<u8>>(),
        b"PUB m.x 1\r\nx\r\n",
    ]))
);
diff_test!(
    unsub_then_resub_same_sid_other_subject,
    one(cat(&[
        C,
        b"SUB a 1\r\nUNSUB 1\r\nSUB b 1\r\nPUB a 1\r\nx\r\nPUB b 1\r\ny\r\n"
    ]))
);
