//! A linter for Bastillefiles, following how Bastille 1.x's `template.sh` actually reads them
//! (see `shared/docs/bastille.md`):
//!
//! - lines ending in `\` are joined to the next one (before comments are dropped, so a comment
//!   ending in `\` swallows the next line); blank lines and lines whose first non-blank is `#`
//!   are ignored;
//! - the hook word is the first word, case-insensitive; the arguments are what follows the first
//!   single SPACE, so an indented line or a TAB after the hook word breaks the line;
//! - `${NAME}` is replaced (by sed, everywhere on the line, quotes or not) only once its `ARG`
//!   line has run; `${JAIL_NAME}`, `${JAIL_IP}`, `${JAIL_IP6}` always are;
//! - every line but `CMD` is then `eval`ed ON THE HOST as `bastille <hook> <jail> <args>`
//!   (`ARG` values go through `eval echo`, `LINE_IN_FILE` through `eval set --`), so an unquoted
//!   `;`, `|`, `&`, `<`, `>`, or a `$(...)` / backquote anywhere outside single quotes, runs on
//!   the host; `CMD` lines are single-quoted into `sh -c '...'` inside the jail and may use them.
//!
//! Every rule has a unit test with a failing example.

use std::fmt;
use std::path::Path;

/// One problem, at the (1-based) physical line where its logical line starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LintError {
    pub line: usize,
    pub message: String,
}

impl fmt::Display for LintError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

/// Variables Bastille defines for every template.
pub const BUILTIN_VARS: &[&str] = &["JAIL_NAME", "JAIL_IP", "JAIL_IP6"];

/// How many arguments a hook takes (after quote-aware word splitting, as `eval` does it).
#[derive(Clone, Copy, Debug)]
enum Arity {
    Exactly(usize),
    AtLeast(usize),
    Between(usize, usize),
    OneOf(&'static [usize]),
}

impl Arity {
    fn accepts(self, n: usize) -> bool {
        match self {
            Arity::Exactly(k) => n == k,
            Arity::AtLeast(k) => n >= k,
            Arity::Between(a, b) => (a..=b).contains(&n),
            Arity::OneOf(ks) => ks.contains(&n),
        }
    }
}

impl fmt::Display for Arity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let plural = |k: usize| if k == 1 { "" } else { "s" };
        match *self {
            Arity::Exactly(0) => write!(f, "no arguments"),
            Arity::Exactly(k) => write!(f, "exactly {k} argument{}", plural(k)),
            Arity::AtLeast(k) => write!(f, "at least {k} argument{}", plural(k)),
            Arity::Between(a, b) => write!(f, "{a} to {b} arguments"),
            Arity::OneOf(ks) => {
                let s: Vec<String> = ks.iter().map(usize::to_string).collect();
                write!(f, "{} arguments", s.join(" or "))
            }
        }
    }
}

/// The hooks a Bastillefile may use (upper case; the file's spelling is case-insensitive), with
/// their arity and what they are for (used in the error messages). Aliases are those template.sh
/// itself maps (`COPY`→cp, `FSTAB`→mount, `TAG`→tags, `LIF`/`LINEINFILE`→line_in_file).
const HOOKS: &[(&str, Arity, &str)] = &[
    ("ARG", Arity::Exactly(1), "NAME[=default]"),
    ("ARG+", Arity::Exactly(1), "NAME[=default] (mandatory)"),
    (
        "CMD",
        Arity::AtLeast(1),
        "command run with sh -c in the jail",
    ),
    ("CP", Arity::Exactly(2), "SRC DST"),
    ("COPY", Arity::Exactly(2), "SRC DST"),
    ("OVERLAY", Arity::Exactly(1), "DIR"),
    (
        "INCLUDE",
        Arity::AtLeast(1),
        "user/repo|URL [--arg NAME=VALUE]...",
    ),
    (
        "CONFIG",
        Arity::Between(2, 3),
        "set|add|get|remove PROPERTY [VALUE]",
    ),
    ("LIMITS", Arity::Between(2, 3), "[add] OPTION VALUE"),
    (
        "MOUNT",
        Arity::OneOf(&[2, 6]),
        "HOST_PATH JAIL_PATH [FS OPTIONS DUMP PASS]",
    ),
    (
        "FSTAB",
        Arity::OneOf(&[2, 6]),
        "HOST_PATH JAIL_PATH [FS OPTIONS DUMP PASS]",
    ),
    ("PKG", Arity::AtLeast(1), "PACKAGE..."),
    ("HPKG", Arity::AtLeast(1), "PACKAGE... (on the host)"),
    ("RDR", Arity::AtLeast(3), "tcp|udp HOST_PORT JAIL_PORT"),
    ("RENDER", Arity::Exactly(1), "PATH in the jail"),
    ("RESTART", Arity::Exactly(0), ""),
    ("SERVICE", Arity::Exactly(2), "NAME ACTION"),
    ("SYSRC", Arity::AtLeast(1), "NAME=VALUE..."),
    ("TAGS", Arity::AtLeast(1), "TAG..."),
    ("TAG", Arity::AtLeast(1), "TAG..."),
    ("LINE_IN_FILE", Arity::Exactly(2), "\"LINE\" PATH"),
    ("LIF", Arity::Exactly(2), "\"LINE\" PATH"),
    ("LINEINFILE", Arity::Exactly(2), "\"LINE\" PATH"),
];

/// A Bastillefile line after `\` joining.
struct Logical {
    /// 1-based physical line where it starts.
    line: usize,
    text: String,
}

/// What the quote-aware scan of a line found.
#[derive(Debug, Default)]
struct Scan {
    /// The words after quote removal, as `eval` would see them (before host expansions).
    words: Vec<String>,
    /// Host-shell syntax outside single quotes: `;`, `|`, `&`, `<`, `>`, `$(`, `` ` ``.
    metachars: Vec<&'static str>,
    /// `$NAME`, `${NAME:-x}`, `$1`... outside single quotes: not Bastille variables.
    raw_expansions: Vec<String>,
    unterminated: Option<char>,
}

impl Scan {
    /// Records a host-shell character once per line.
    fn note(&mut self, m: &'static str) {
        if !self.metachars.contains(&m) {
            self.metachars.push(m);
        }
    }
}

/// Lints `text`. With `template_dir`, `CP`/`COPY`/`OVERLAY` sources are checked to exist in it.
pub fn lint(text: &str, template_dir: Option<&Path>) -> Vec<LintError> {
    let mut errors = Vec::new();
    let mut err = |line: usize, message: String| errors.push(LintError { line, message });
    // ARG name -> line where it was declared.
    let mut declared: Vec<(String, usize)> = Vec::new();

    for l in logical_lines(text, &mut err) {
        let line = l.line;
        let t = l.text.as_str();
        if t.trim().is_empty() || t.trim_start().starts_with('#') {
            continue;
        }
        if t.contains('\r') {
            err(
                line,
                "contains a carriage return (Windows line ending): Bastille would read the \
                 hook word or last argument with a trailing CR; save the file with LF endings"
                    .into(),
            );
            continue;
        }
        if t.starts_with([' ', '\t']) {
            err(
                line,
                "starts with whitespace: Bastille splits on single spaces, so the hook word \
                 would become part of the arguments; remove the indentation"
                    .into(),
            );
            continue;
        }
        let (head, rest) = match t.split_once(' ') {
            Some((h, r)) => (h, r),
            None => (t, ""),
        };
        if let Some((word, _)) = head.split_once('\t') {
            err(
                line,
                format!(
                    "TAB after the hook word `{word}`: Bastille takes the arguments from after \
                     the first space only; use a single space"
                ),
            );
            continue;
        }
        let hook = head.to_ascii_uppercase();
        let Some(&(_, arity, usage)) = HOOKS.iter().find(|(h, _, _)| *h == hook) else {
            let known: Vec<&str> = HOOKS.iter().map(|(h, _, _)| *h).collect();
            err(
                line,
                format!(
                    "unknown hook `{head}`: Bastille would run `bastille {}` and abort; \
                     known hooks: {}",
                    head.to_ascii_lowercase(),
                    known.join(" ")
                ),
            );
            continue;
        };
        let is_cmd = hook == "CMD";

        // Template variables: `${NAME}` must be declared (by an ARG line above) or built in.
        let assigned_here = if is_cmd {
            shell_assigned_names(rest)
        } else {
            Vec::new()
        };
        for name in braced_vars(rest) {
            if BUILTIN_VARS.contains(&name.as_str())
                || declared.iter().any(|(n, _)| *n == name)
                || assigned_here.contains(&name)
            {
                continue;
            }
            let later = logical_lines_args(text)
                .into_iter()
                .find(|(n, l)| *n == name && *l > line);
            let msg = match later {
                Some((_, l)) => format!(
                    "`${{{name}}}` is used before its ARG line (line {l}): Bastille substitutes \
                     a variable only after its ARG line has run; move `ARG {name}` up"
                ),
                None if is_cmd => format!(
                    "`${{{name}}}` is not declared: add `ARG {name}=...` above (or, for a shell \
                     variable of the jail, assign it in this CMD line)"
                ),
                None => format!(
                    "`${{{name}}}` is not declared: add `ARG {name}=...` above; undeclared, \
                     the HOST shell expands it (usually to nothing)"
                ),
            };
            err(line, msg);
        }

        let scan = scan_words(rest);
        if let Some(q) = scan.unterminated {
            err(
                line,
                format!(
                    "unterminated {} quote: {} would fail to parse this line",
                    if q == '\'' { "single" } else { "double" },
                    if is_cmd {
                        "the jail's sh"
                    } else {
                        "Bastille's eval"
                    }
                ),
            );
            continue;
        }
        if !is_cmd {
            for m in &scan.metachars {
                err(
                    line,
                    format!(
                        "`{m}` outside single quotes on a {hook} line: every line but CMD is \
                         eval'ed on the HOST, so this would run on the host, not in the jail; \
                         single-quote it, or do the work in a CMD line"
                    ),
                );
            }
            for e in &scan.raw_expansions {
                err(
                    line,
                    format!(
                        "`{e}` is not a template variable (Bastille substitutes only `${{NAME}}` \
                         after `ARG NAME`); on a {hook} line the HOST shell would expand it"
                    ),
                );
            }
            if !scan.metachars.is_empty() {
                // The words after a host `;` or `|` are another command: counting them would
                // only add confusing errors.
                continue;
            }
        }

        let n = scan.words.len();
        if !arity.accepts(n) {
            err(
                line,
                format!(
                    "{hook} takes {arity} (`{}`), found {n}{}",
                    format!("{hook} {usage}").trim_end(),
                    if n > 0 && !is_cmd {
                        "; quote an argument that contains spaces"
                    } else {
                        ""
                    }
                ),
            );
            continue;
        }
        let w: Vec<&str> = scan.words.iter().map(String::as_str).collect();
        match hook.as_str() {
            "ARG" | "ARG+" => {
                let name = w[0].split('=').next().unwrap_or("");
                if !is_var_name(name) {
                    err(
                        line,
                        format!(
                            "`{name}` is not a valid ARG name: use letters, digits and `_`, \
                             not starting with a digit"
                        ),
                    );
                } else if BUILTIN_VARS.contains(&name) {
                    err(
                        line,
                        format!("`{name}` is built in: Bastille always sets it; pick another name"),
                    );
                } else if let Some((_, first)) = declared.iter().find(|(n, _)| n == name) {
                    err(
                        line,
                        format!(
                            "ARG {name} is already declared on line {first}: the first value \
                             wins (sed replaces it first), so this one has no effect"
                        ),
                    );
                } else {
                    declared.push((name.to_string(), line));
                }
            }
            "CP" | "COPY" | "OVERLAY" => {
                let src = w[0];
                if let Some(dir) = template_dir {
                    if !src.starts_with('/') && !src.contains("${") {
                        let p = dir.join(src);
                        let ok = if hook == "OVERLAY" {
                            p.is_dir()
                        } else {
                            p.exists()
                        };
                        if !ok {
                            err(
                                line,
                                format!(
                                    "{hook} source `{src}` does not exist in the template \
                                     directory {} (sources are relative to it)",
                                    dir.display()
                                ),
                            );
                        }
                    }
                }
            }
            "CONFIG" => {
                if !["set", "add", "get", "remove"].contains(&w[0]) {
                    err(
                        line,
                        format!("CONFIG `{}`: use set, add, get or remove", w[0]),
                    );
                } else if matches!(w[0], "get" | "remove") && n != 2 {
                    err(line, format!("CONFIG {} takes only a PROPERTY", w[0]));
                }
            }
            "LIMITS" if n == 3 && w[0] != "add" => {
                err(
                    line,
                    format!(
                        "LIMITS with 3 arguments must start with `add`, not `{}`",
                        w[0]
                    ),
                );
            }
            "RDR" => {
                if !matches!(w[0], "tcp" | "udp") {
                    err(line, format!("RDR protocol `{}`: use tcp or udp", w[0]));
                }
                for port in &w[1..3] {
                    if !(port.contains("${") || port.parse::<u16>().is_ok_and(|p| p > 0)) {
                        err(
                            line,
                            format!("RDR port `{port}` is not a port number (1-65535)"),
                        );
                    }
                }
            }
            "SYSRC" => {
                for a in &w {
                    if !a.starts_with('-') && !a.contains('=') {
                        err(
                            line,
                            format!(
                                "SYSRC `{a}` has no `=VALUE`: sysrc would only print it (and \
                                 fail if unset); write `{a}=VALUE`"
                            ),
                        );
                    }
                }
            }
            "INCLUDE" => {
                let mut rest = w[1..].iter();
                while let Some(flag) = rest.next() {
                    let pair = rest.next();
                    if *flag != "--arg" || !pair.is_some_and(|p| p.contains('=')) {
                        err(
                            line,
                            "INCLUDE takes the template then `--arg NAME=VALUE` pairs only \
                             (ARGs are not inherited)"
                                .into(),
                        );
                        break;
                    }
                }
            }
            _ => {}
        }
    }
    errors
}

/// Joins `\`-continued lines the way template.sh's awk does (the backslash is dropped and the
/// next line appended as is). A comment ending in `\` or a `\` on the last line is reported.
fn logical_lines(text: &str, err: &mut impl FnMut(usize, String)) -> Vec<Logical> {
    let mut out = Vec::new();
    let mut cur: Option<Logical> = None;
    let mut last = 0;
    for (i, raw) in text.split('\n').enumerate() {
        let n = i + 1;
        last = n;
        let (body, continued) = match raw.strip_suffix('\\') {
            Some(b) => (b, true),
            None => (raw, false),
        };
        let l = cur.get_or_insert_with(|| Logical {
            line: n,
            text: String::new(),
        });
        if continued && l.text.is_empty() && body.trim_start().starts_with('#') {
            err(
                n,
                format!(
                    "comment ends with `\\`: Bastille joins line {} into this comment, so it \
                     never runs; remove the backslash",
                    n + 1
                ),
            );
        }
        l.text.push_str(body);
        if !continued {
            out.push(cur.take().expect("set above"));
        }
    }
    if let Some(l) = cur {
        err(
            last,
            "the last line ends with `\\` but nothing follows to continue it".into(),
        );
        out.push(l);
    }
    out
}

/// (ARG name, line) for every ARG/ARG+ line, for "used before its ARG line" messages.
fn logical_lines_args(text: &str) -> Vec<(String, usize)> {
    logical_lines(text, &mut |_, _| {})
        .into_iter()
        .filter_map(|l| {
            let (head, rest) = l.text.split_once(' ')?;
            if !matches!(head.to_ascii_uppercase().as_str(), "ARG" | "ARG+") {
                return None;
            }
            let name = rest.trim().split('=').next()?.trim_matches(['"', '\'']);
            Some((name.to_string(), l.line))
        })
        .collect()
}

fn is_var_name(s: &str) -> bool {
    let mut c = s.chars();
    c.next()
        .is_some_and(|f| f.is_ascii_alphabetic() || f == '_')
        && c.all(|ch| ch.is_ascii_alphanumeric() || ch == '_')
}

/// Every `${NAME}` (exact braced form, what Bastille's sed replaces), in order.
fn braced_vars(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = s;
    while let Some(i) = rest.find("${") {
        let after = &rest[i + 2..];
        match after.find('}') {
            Some(j) if is_var_name(&after[..j]) => {
                out.push(after[..j].to_string());
                rest = &after[j + 1..];
            }
            _ => rest = after,
        }
    }
    out
}

/// Names a CMD line assigns itself (`X=...`, `for X in`, `read ... X`), so that `${X}` later in
/// the same line is the jail shell's variable, not a missing ARG.
fn shell_assigned_names(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let toks: Vec<&str> = s
        .split(|c: char| c.is_whitespace() || c == ';' || c == '&' || c == '|')
        .filter(|t| !t.is_empty())
        .collect();
    for (i, t) in toks.iter().enumerate() {
        if let Some((name, _)) = t.split_once('=') {
            if is_var_name(name) {
                out.push(name.to_string());
            }
        }
        if *t == "for" {
            if let Some(n) = toks.get(i + 1) {
                out.push(n.to_string());
            }
        }
        if *t == "read" {
            out.extend(
                toks[i + 1..]
                    .iter()
                    .take_while(|w| is_var_name(w) || w.starts_with('-'))
                    .filter(|w| !w.starts_with('-'))
                    .map(|w| w.to_string()),
            );
        }
    }
    out
}

/// Splits like the host shell's `eval` would (single and double quotes, backslash escapes),
/// noting host-shell syntax and expansions that are not Bastille variables.
fn scan_words(s: &str) -> Scan {
    #[derive(PartialEq)]
    enum Q {
        None,
        Single,
        Double,
    }
    let mut scan = Scan::default();
    let mut q = Q::None;
    let mut cur: Option<String> = None;
    let chars: Vec<char> = s.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        match q {
            Q::Single => {
                if c == '\'' {
                    q = Q::None;
                } else {
                    cur.get_or_insert_with(String::new).push(c);
                }
            }
            Q::Double | Q::None => {
                let dq = q == Q::Double;
                match c {
                    '\\' => {
                        if let Some(n) = next {
                            cur.get_or_insert_with(String::new).push(n);
                            i += 1;
                        }
                    }
                    '"' => {
                        q = if dq { Q::None } else { Q::Double };
                        cur.get_or_insert_with(String::new);
                    }
                    '\'' if !dq => {
                        q = Q::Single;
                        cur.get_or_insert_with(String::new);
                    }
                    '`' => {
                        scan.note("`");
                        cur.get_or_insert_with(String::new).push(c);
                    }
                    '$' if next == Some('(') => {
                        scan.note("$(");
                        cur.get_or_insert_with(String::new).push(c);
                    }
                    '$' => {
                        // `${NAME}` exactly is Bastille's; any other expansion is the host's.
                        let rest: String = chars[i..].iter().collect();
                        let exact = rest
                            .strip_prefix("${")
                            .and_then(|r| r.split_once('}'))
                            .is_some_and(|(n, _)| is_var_name(n));
                        if !exact {
                            let e: String = match next {
                                Some('{') => rest
                                    .char_indices()
                                    .find(|&(_, ch)| ch == '}')
                                    .map_or(rest.clone(), |(j, _)| rest[..=j].to_string()),
                                Some(n) if n.is_ascii_alphanumeric() || "_@*#?$!-".contains(n) => {
                                    let len = rest[1..]
                                        .char_indices()
                                        .find(|&(_, ch)| !(ch.is_ascii_alphanumeric() || ch == '_'))
                                        .map_or(rest.len() - 1, |(j, _)| j)
                                        .max(1);
                                    rest[..1 + len].to_string()
                                }
                                _ => String::new(),
                            };
                            if !e.is_empty() {
                                scan.raw_expansions.push(e);
                            }
                        }
                        cur.get_or_insert_with(String::new).push(c);
                    }
                    ';' | '|' | '&' | '<' | '>' if !dq => {
                        scan.note(match c {
                            ';' => ";",
                            '|' => "|",
                            '&' => "&",
                            '<' => "<",
                            _ => ">",
                        });
                        if let Some(w) = cur.take() {
                            scan.words.push(w);
                        }
                    }
                    c if c.is_whitespace() && !dq => {
                        if let Some(w) = cur.take() {
                            scan.words.push(w);
                        }
                    }
                    c => cur.get_or_insert_with(String::new).push(c),
                }
            }
        }
        i += 1;
    }
    match q {
        Q::Single => scan.unterminated = Some('\''),
        Q::Double => scan.unterminated = Some('"'),
        Q::None => {}
    }
    if let Some(w) = cur.take() {
        scan.words.push(w);
    }
    scan
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lints and returns the messages, one "line N: ..." string each.
    fn msgs(text: &str) -> Vec<String> {
        lint(text, None).iter().map(ToString::to_string).collect()
    }

    /// Asserts exactly one error, on `line`, containing `needle`.
    fn one(text: &str, line: usize, needle: &str) {
        let e = lint(text, None);
        assert_eq!(e.len(), 1, "{text:?} -> {e:?}");
        assert_eq!(e[0].line, line, "{e:?}");
        assert!(e[0].message.contains(needle), "{:?} lacks {needle:?}", e[0]);
    }

    const GOOD: &str = "\
# A good template.
ARG NATS_PORT=4222
ARG+ SECRET
ARG LISTEN=${JAIL_IP}

PKG nginx
cmd pkg -N >/dev/null 2>&1 || env ASSUME_ALWAYS_YES=yes pkg bootstrap -y
CMD for f in a b; do echo ${f}; done
CP files/x /tmp/x
SYSRC nats_enable=YES nats_port=${NATS_PORT}
SERVICE nats restart
MOUNT /host /jail
MOUNT /host /jail nullfs ro 0 0
RDR tcp ${NATS_PORT} 4222
RENDER /usr/local/etc/nats.conf
LINE_IN_FILE \"listen ${LISTEN}\" /etc/x.conf
CONFIG set allow.raw_sockets 1
LIMITS memoryuse 1G
INCLUDE user/repo --arg A=b
TAGS nats broker
RESTART
CMD echo one \\
two
  # an indented comment is still a comment
";

    #[test]
    fn a_good_file_passes() {
        assert_eq!(msgs(GOOD), Vec::<String>::new());
    }

    #[test]
    fn display_names_the_line() {
        let e = lint("FROB x\n", None);
        assert!(
            e[0].to_string().starts_with("line 1: unknown hook `FROB`"),
            "{}",
            e[0]
        );
    }

    #[test]
    fn hook_words_are_case_insensitive() {
        assert!(lint("service nats start\nSysRc a=b\nrestart\n", None).is_empty());
    }

    #[test]
    fn unknown_hook_is_rejected() {
        one("PKG x\nSTART\n", 2, "unknown hook `START`");
        one("RUN echo hi\n", 1, "known hooks: ARG");
    }

    #[test]
    fn arity_cp_exactly_two() {
        one("CP a\n", 1, "CP takes exactly 2 arguments");
        one("COPY a b c\n", 1, "COPY takes exactly 2 arguments");
        // A quoted argument with spaces is one argument.
        assert!(lint("CP \"my file\" /tmp/x\n", None).is_empty());
        one("CP my file /tmp/x\n", 1, "quote an argument");
    }

    #[test]
    fn arity_service_exactly_two() {
        one("SERVICE nats\n", 1, "SERVICE takes exactly 2 arguments");
        one("SERVICE nats start now\n", 1, "exactly 2");
    }

    #[test]
    fn arity_mount_two_or_six() {
        one("MOUNT /a /b nullfs ro\n", 1, "MOUNT takes 2 or 6 arguments");
    }

    #[test]
    fn arity_restart_zero_and_arg_one() {
        one("RESTART now\n", 1, "RESTART takes no arguments");
        one("ARG\n", 1, "ARG takes exactly 1 argument");
        one("ARG A=b c\n", 1, "ARG takes exactly 1 argument");
        one("CMD\n", 1, "CMD takes at least 1 argument");
        one("RENDER\n", 1, "RENDER takes exactly 1 argument");
        one("RDR tcp 80\n", 1, "RDR takes at least 3");
        one(
            "LINE_IN_FILE line /x /y\n",
            1,
            "LINE_IN_FILE takes exactly 2",
        );
    }

    #[test]
    fn hook_specific_argument_checks() {
        one("RDR sctp 80 80\n", 1, "use tcp or udp");
        one("RDR tcp 80 http\n", 1, "`http` is not a port");
        one("SYSRC nats_enable\n", 1, "has no `=VALUE`");
        one("CONFIG frob a b\n", 1, "use set, add, get or remove");
        one("CONFIG get a b\n", 1, "takes only a PROPERTY");
        one("LIMITS del a b\n", 1, "must start with `add`");
        one("INCLUDE u/r A=b\n", 1, "`--arg NAME=VALUE` pairs");
        one("ARG 9LIVES=1\n", 1, "not a valid ARG name");
        one("ARG JAIL_IP=1\n", 1, "built in");
        one("ARG A=1\nARG A=2\n", 2, "already declared on line 1");
    }

    #[test]
    fn leading_whitespace_is_rejected() {
        one("PKG x\n  SYSRC a=b\n", 2, "starts with whitespace");
        one("\tCMD true\n", 1, "starts with whitespace");
    }

    #[test]
    fn tab_after_hook_word_is_rejected() {
        one(
            "SERVICE\tnats start\n",
            1,
            "TAB after the hook word `SERVICE`",
        );
    }

    #[test]
    fn carriage_returns_are_rejected() {
        one("PKG x\r\n", 1, "carriage return");
    }

    #[test]
    fn continuation_joins_lines_and_reports_the_first() {
        // Joined: `SERVICE nats start` (2 args): fine.
        assert!(lint("SERVICE nats \\\nstart\n", None).is_empty());
        // Joined: 3 args, reported at line 2 where the logical line starts.
        one("PKG x\nSERVICE nats \\\nstart \\\nnow\n", 2, "exactly 2");
        one("PKG x \\", 1, "nothing follows");
    }

    #[test]
    fn comment_ending_in_backslash_swallows_the_next_line() {
        one(
            "# note \\\nSERVICE nats start\n",
            1,
            "joins line 2 into this comment",
        );
    }

    #[test]
    fn variables_must_be_declared_before_use() {
        one(
            "SYSRC port=${PORT}\nARG PORT=1\n",
            1,
            "used before its ARG line (line 2)",
        );
        one("SYSRC port=${PORT}\n", 1, "`${PORT}` is not declared");
        one("CMD echo ${PORT}\n", 1, "`${PORT}` is not declared");
        // Built-ins and jail-shell variables assigned in the same CMD line are fine.
        assert!(lint("SYSRC ip=${JAIL_IP} n=${JAIL_NAME} v6=${JAIL_IP6}\n", None).is_empty());
        assert!(lint("CMD X=1; echo ${X}\n", None).is_empty());
        assert!(lint("CMD read -r A B < /etc/x; echo ${A}${B}\n", None).is_empty());
    }

    #[test]
    fn host_metacharacters_outside_cmd_are_rejected() {
        one(
            "SYSRC a=b; rm -rf /tmp/x\n",
            1,
            "`;` outside single quotes on a SYSRC line",
        );
        one("PKG x | tee log\n", 1, "`|` outside single quotes");
        one("PKG x && echo\n", 1, "`&` outside");
        one("SYSRC a=$(hostname)\n", 1, "`$(` outside");
        one("SYSRC \"a=$(hostname)\"\n", 1, "`$(` outside"); // double quotes do not stop it
        one("SYSRC a=`hostname`\n", 1, "``` outside single quotes");
        one("SERVICE nats start >/dev/null\n", 1, "`>` outside");
        // Quoted, they are plain characters; in CMD they run in the jail, which is the point.
        assert!(lint("SYSRC 'a=b;c' \"d=e|f\" 'g=$(h)'\n", None).is_empty());
        assert!(lint("CMD a; b | c && d > e $(f) `g`\n", None).is_empty());
    }

    #[test]
    fn host_expansions_outside_cmd_are_rejected() {
        one("SYSRC a=$HOME\n", 1, "`$HOME` is not a template variable");
        one(
            "ARG A=1\nSYSRC a=${A:-x}\n",
            2,
            "`${A:-x}` is not a template variable",
        );
        assert!(lint("SYSRC 'a=$HOME'\nCMD echo $HOME\n", None).is_empty());
    }

    #[test]
    fn unterminated_quotes_are_rejected() {
        one(
            "SYSRC \"a=b\n",
            1,
            "unterminated double quote: Bastille's eval",
        );
        one(
            "CMD echo 'hi\n",
            1,
            "unterminated single quote: the jail's sh",
        );
    }

    #[test]
    fn cp_sources_must_exist_in_the_template_dir() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("files")).unwrap();
        std::fs::write(d.path().join("files/x.pkg"), b"x").unwrap();
        std::fs::create_dir_all(d.path().join("usr/local")).unwrap();
        let ok = "CP files/x.pkg /tmp/x.pkg\nOVERLAY usr\nCP /abs/host/path /tmp/y\n";
        assert!(
            lint(ok, Some(d.path())).is_empty(),
            "{:?}",
            lint(ok, Some(d.path()))
        );
        let e = lint(
            "CP files/y.pkg /tmp/y.pkg\nOVERLAY files/x.pkg\n",
            Some(d.path()),
        );
        assert_eq!(e.len(), 2, "{e:?}");
        assert!(
            e[0].message.contains("`files/y.pkg` does not exist"),
            "{e:?}"
        );
        assert_eq!((e[0].line, e[1].line), (1, 2));
        // Without a directory the check is skipped.
        assert!(lint("CP files/y.pkg /tmp/y.pkg\n", None).is_empty());
    }

    #[test]
    fn every_error_is_reported_not_only_the_first() {
        let e = lint("FROB\nSERVICE nats\n RESTART\n", None);
        assert_eq!(e.iter().map(|e| e.line).collect::<Vec<_>>(), [1, 2, 3]);
    }
}
