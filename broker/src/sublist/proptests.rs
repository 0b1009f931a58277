//! Property test: `Sublist` against a naive model (a list of subscriptions, each checked against
//! the subject token by token) over random insert/remove/match sequences. Run on a default
//! cache, a tiny one that evicts constantly, and none, so the cache can never change an answer.

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;

#[derive(Debug, Clone)]
enum Op {
    Insert(String, Option<String>, u32),
    /// Remove the model's n-th entry (modulo its length): mostly real removals.
    RemoveExisting(usize),
    /// Remove something that may not be there.
    Remove(String, Option<String>, u32),
    Match(String),
}

/// Subscription subjects: a few tokens from a small alphabet (so they collide), `*` anywhere,
/// `>` only last.
fn pattern() -> impl Strategy<Value = String> {
    let tok = prop_oneof![Just("a"), Just("b"), Just("c"), Just("*")];
    (prop::collection::vec(tok, 0..4), any::<bool>())
        .prop_filter("non-empty", |(toks, fwc)| !toks.is_empty() || *fwc)
        .prop_map(|(mut toks, fwc)| {
            if fwc {
                toks.push(">");
            }
            toks.join(".")
        })
}

/// Published subjects, including literal `*`/`>` tokens and the odd empty token.
fn subject() -> impl Strategy<Value = String> {
    let tok = prop_oneof![
        6 => prop_oneof![Just("a"), Just("b"), Just("c"), Just("d")],
        1 => Just("*"),
        1 => Just(">"),
        1 => Just(""),
    ];
    prop::collection::vec(tok, 1..6).prop_map(|t| t.join("."))
}

fn queue() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        2 => Just(None),
        1 => Just(Some("q1".to_string())),
        1 => Just(Some("q2".to_string())),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (pattern(), queue(), 0u32..4).prop_map(|(p, q, id)| Op::Insert(p, q, id)),
        2 => any::<usize>().prop_map(Op::RemoveExisting),
        1 => (pattern(), queue(), 0u32..4).prop_map(|(p, q, id)| Op::Remove(p, q, id)),
        5 => subject().prop_map(Op::Match),
    ]
}

/// Obviously-correct matching on token lists: `*` one token, `>` one or more.
fn naive_match(pattern: &[&str], subject: &[&str]) -> bool {
    match (pattern.split_first(), subject.split_first()) {
        (None, None) => true,
        (Some((&">", _)), Some(_)) => true,
        (Some((&"*", p)), Some((_, s))) => naive_match(p, s),
        (Some((pt, p)), Some((st, s))) => pt == st && naive_match(p, s),
        _ => false,
    }
}

type Normal = (Vec<u32>, Vec<Vec<u32>>);

/// What the model says `subject` reaches, as multisets.
fn model_matches(model: &[(String, Option<String>, u32)], subject: &str) -> Normal {
    let stoks: Vec<&str> = subject.split('.').collect();
    let mut psubs = Vec::new();
    let mut groups: BTreeMap<&str, Vec<u32>> = BTreeMap::new();
    // A published subject with an empty token reaches nobody (nats-server).
    if !stoks.contains(&"") {
        for (p, q, id) in model {
            let ptoks: Vec<&str> = p.split('.').collect();
            if naive_match(&ptoks, &stoks) {
                match q {
                    None => psubs.push(*id),
                    Some(q) => groups.entry(q).or_default().push(*id),
                }
            }
        }
    }
    normalize(psubs, groups.into_values().collect())
}

fn normalize(mut psubs: Vec<u32>, mut qsubs: Vec<Vec<u32>>) -> Normal {
    psubs.sort_unstable();
    for g in &mut qsubs {
        g.sort_unstable();
    }
    qsubs.sort();
    (psubs, qsubs)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn sublist_agrees_with_naive_model(ops in prop::collection::vec(op(), 1..80)) {
        let lists = [Sublist::new(), Sublist::with_cache_size(4), Sublist::with_cache_size(0)];
        let mut model: Vec<(String, Option<String>, u32)> = Vec::new();
        for op in ops {
            match op {
                Op::Insert(p, q, id) => {
                    for sl in &lists {
                        prop_assert!(sl.insert(p.as_bytes(), q.as_deref().map(str::as_bytes), id).is_ok());
                    }
                    model.push((p, q, id));
                }
                Op::RemoveExisting(n) => {
                    if model.is_empty() {
                        continue;
                    }
                    let (p, q, id) = model.swap_remove(n % model.len());
                    for sl in &lists {
                        prop_assert!(sl.remove(p.as_bytes(), q.as_deref().map(str::as_bytes), &id));
                    }
                }
                Op::Remove(p, q, id) => {
                    let pos = model.iter().position(|e| e.0 == p && e.1 == q && e.2 == id);
                    if let Some(i) = pos {
                        model.swap_remove(i);
                    }
                    for sl in &lists {
                        let removed = sl.remove(p.as_bytes(), q.as_deref().map(str::as_bytes), &id);
                        prop_assert_eq!(removed, pos.is_some());
                    }
                }
                Op::Match(s) => {
                    let want = model_matches(&model, &s);
                    for sl in &lists {
                        let r = sl.matches(s.as_bytes());
                        let got = normalize(r.psubs.clone(), r.qsubs.clone());
                        prop_assert_eq!(&got, &want, "subject {:?}", s);
                        prop_assert!(r.qsubs.iter().all(|g| !g.is_empty()));
                    }
                }
            }
            for sl in &lists {
                prop_assert_eq!(sl.count(), model.len());
            }
        }
        // Everything removed: the trie must be empty again (pruning under random churn).
        while let Some((p, q, id)) = model.pop() {
            for sl in &lists {
                prop_assert!(sl.remove(p.as_bytes(), q.as_deref().map(str::as_bytes), &id));
            }
        }
        for sl in &lists {
            prop_assert_eq!(sl.trie.read().node_count(), 0);
            prop_assert_eq!(sl.count(), 0);
        }
    }

    /// `valid_subject` against its definition, on arbitrary short byte strings.
    #[test]
    fn valid_subject_matches_definition(s in prop::collection::vec(
        prop_oneof![Just(b'a'), Just(b'.'), Just(b'*'), Just(b'>'), Just(b' '), Just(b'\t'), Just(0xffu8)],
        0..8,
    )) {
        let toks: Vec<&[u8]> = s.split(|&b| b == b'.').collect();
        let def = !s.is_empty()
            && toks.iter().all(|t| !t.is_empty() && !t.iter().any(|b| b" \t\r\n\x0c".contains(b)))
            && toks.iter().rev().skip(1).all(|t| *t != b">");
        prop_assert_eq!(valid_subject(&s), def);
        let literal = def && toks.iter().all(|t| *t != b"*" && *t != b">");
        prop_assert_eq!(valid_literal_subject(&s), literal);
    }
}
