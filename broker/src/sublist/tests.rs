//! Unit tests for the subject trie, the validity rules and the match cache.

use std::sync::Arc;

use super::cache::MAX_CACHED_SUBJECT;
use super::*;

/// Sorted plain subscribers of `subject`.
fn psubs(sl: &Sublist<u32>, subject: &str) -> Vec<u32> {
    let mut v = sl.matches(subject.as_bytes()).psubs.clone();
    v.sort_unstable();
    v
}

/// Queue groups of `subject`, each sorted, groups sorted.
fn qsubs(sl: &Sublist<u32>, subject: &str) -> Vec<Vec<u32>> {
    let mut groups: Vec<Vec<u32>> = sl.matches(subject.as_bytes()).qsubs.clone();
    for g in &mut groups {
        g.sort_unstable();
    }
    groups.sort();
    groups
}

fn sub(sl: &Sublist<u32>, subject: &str, id: u32) {
    sl.insert(subject.as_bytes(), None, id).unwrap();
}

fn qsub(sl: &Sublist<u32>, subject: &str, queue: &str, id: u32) {
    sl.insert(subject.as_bytes(), Some(queue.as_bytes()), id)
        .unwrap();
}

fn node_count(sl: &Sublist<u32>) -> usize {
    sl.trie.read().node_count()
}

#[test]
fn literal_subjects_match_exactly() {
    let sl = Sublist::new();
    sub(&sl, "foo.bar", 1);
    sub(&sl, "foo", 2);
    sub(&sl, "foo.bar.baz", 3);
    assert_eq!(psubs(&sl, "foo.bar"), [1]);
    assert_eq!(psubs(&sl, "foo"), [2]);
    assert_eq!(psubs(&sl, "foo.bar.baz"), [3]);
    assert!(sl.matches(b"foo.baz").is_empty());
    assert!(sl.matches(b"bar").is_empty());
    assert!(sl.matches(b"foo.bar.baz.qux").is_empty());
    assert_eq!(sl.count(), 3);
}

#[test]
fn star_matches_exactly_one_token() {
    let sl = Sublist::new();
    sub(&sl, "foo.*", 1);
    sub(&sl, "*.bar", 2);
    sub(&sl, "*", 3);
    sub(&sl, "foo.*.baz", 4);
    assert_eq!(psubs(&sl, "foo.bar"), [1, 2]);
    assert_eq!(psubs(&sl, "foo.x"), [1]);
    assert_eq!(psubs(&sl, "foo"), [3]);
    assert_eq!(psubs(&sl, "foo.bar.baz"), [4]);
    assert!(sl.matches(b"foo.bar.qux").is_empty());
    assert!(sl.matches(b"foo.x.y.baz").is_empty());
}

#[test]
fn gt_matches_one_or_more_trailing_tokens() {
    let sl = Sublist::new();
    sub(&sl, "foo.>", 1);
    sub(&sl, ">", 2);
    sub(&sl, "foo.*.>", 3);
    sub(&sl, "*.bar.>", 4);
    assert_eq!(
        psubs(&sl, "foo"),
        [2],
        "foo.> needs at least one more token"
    );
    assert_eq!(psubs(&sl, "foo.bar"), [1, 2]);
    assert_eq!(psubs(&sl, "foo.bar.baz"), [1, 2, 3, 4]);
    assert_eq!(psubs(&sl, "x.bar.y.z"), [2, 4]);
    assert_eq!(psubs(&sl, "x"), [2]);
}

#[test]
fn wildcard_tokens_in_published_subjects_are_literal() {
    let sl = Sublist::new();
    sub(&sl, "foo.bar", 1);
    sub(&sl, "foo.*", 2);
    sub(&sl, "foo.>", 3);
    // Like nats-server: a published `*` is just a token, reached by wildcards only.
    assert_eq!(psubs(&sl, "foo.*"), [2, 3]);
    assert_eq!(psubs(&sl, "foo.>"), [2, 3]);
    assert!(sl.matches(b"*").is_empty());
    // `*bar` is an ordinary token both ways.
    sub(&sl, "foo.*bar", 4);
    assert_eq!(psubs(&sl, "foo.*bar"), [2, 3, 4]);
    assert_eq!(psubs(&sl, "foo.xbar"), [2, 3]);
}

#[test]
fn published_subjects_with_empty_tokens_match_nothing() {
    let sl = Sublist::new();
    sub(&sl, ">", 1);
    sub(&sl, "foo.*.bar", 2);
    for bad in ["", ".", "foo.", ".foo", "foo..bar", ".."] {
        assert!(
            sl.matches(bad.as_bytes()).is_empty(),
            "{bad:?} must match nothing"
        );
    }
    assert_eq!(sl.cache_len(), 0, "invalid subjects are not cached");
}

#[test]
fn queue_groups_are_grouped_by_name_across_subjects() {
    let sl = Sublist::new();
    qsub(&sl, "foo.bar", "workers", 1);
    qsub(&sl, "foo.bar", "workers", 2);
    qsub(&sl, "foo.*", "workers", 3);
    qsub(&sl, "foo.>", "audit", 4);
    sub(&sl, "foo.bar", 5);
    assert_eq!(psubs(&sl, "foo.bar"), [5]);
    assert_eq!(qsubs(&sl, "foo.bar"), [vec![1, 2, 3], vec![4]]);
    assert_eq!(qsubs(&sl, "foo.baz"), [vec![3], vec![4]]);
    assert!(psubs(&sl, "foo.baz").is_empty());
    assert_eq!(qsubs(&sl, "foo.a.b"), [vec![4]]);
}

#[test]
fn queue_and_plain_subscriptions_are_removed_separately() {
    let sl = Sublist::new();
    qsub(&sl, "foo", "q", 1);
    sub(&sl, "foo", 1);
    assert!(!sl.remove(b"foo", Some(b"other"), &1), "wrong queue name");
    assert!(sl.remove(b"foo", Some(b"q"), &1));
    assert_eq!(psubs(&sl, "foo"), [1]);
    assert!(qsubs(&sl, "foo").is_empty());
    assert!(!sl.remove(b"foo", Some(b"q"), &1), "already gone");
    assert!(sl.remove(b"foo", None, &1));
    assert!(sl.matches(b"foo").is_empty());
}

#[test]
fn duplicates_are_stored_and_removed_one_at_a_time() {
    let sl = Sublist::new();
    sub(&sl, "foo.*", 7);
    sub(&sl, "foo.*", 7);
    qsub(&sl, "foo.*", "q", 8);
    qsub(&sl, "foo.*", "q", 8);
    assert_eq!(psubs(&sl, "foo.x"), [7, 7]);
    assert_eq!(qsubs(&sl, "foo.x"), [vec![8, 8]]);
    assert_eq!(sl.count(), 4);
    assert!(sl.remove(b"foo.*", None, &7));
    assert!(sl.remove(b"foo.*", Some(b"q"), &8));
    assert_eq!(psubs(&sl, "foo.x"), [7]);
    assert_eq!(qsubs(&sl, "foo.x"), [vec![8]]);
    assert_eq!(sl.count(), 2);
}

#[test]
fn remove_needs_the_exact_subject_and_value() {
    let sl = Sublist::new();
    sub(&sl, "foo.*", 1);
    assert!(
        !sl.remove(b"foo.bar", None, &1),
        "a literal does not remove a wildcard sub"
    );
    assert!(!sl.remove(b"foo.>", None, &1));
    assert!(!sl.remove(b"foo.*", None, &2));
    assert!(!sl.remove(b"foo..bar", None, &1), "invalid subject");
    assert!(!sl.remove(b"foo.*", Some(b""), &1), "invalid queue");
    assert!(!sl.remove(b"foo.*.baz", None, &1), "deeper than stored");
    assert!(!sl.remove(b"foo", None, &1), "shallower than stored");
    assert_eq!(sl.count(), 1);
    assert!(sl.remove(b"foo.*", None, &1));
    assert_eq!(sl.count(), 0);
}

#[test]
fn removal_prunes_empty_nodes() {
    let sl = Sublist::new();
    sub(&sl, "a.b.c.d", 1);
    sub(&sl, "a.b", 2);
    sub(&sl, "a.*.c.>", 3);
    qsub(&sl, "a.b.c.d", "q", 4);
    assert_eq!(node_count(&sl), 4 + 3);
    assert!(sl.remove(b"a.b.c.d", None, &1));
    assert_eq!(node_count(&sl), 7, "the queue sub still holds a.b.c.d");
    assert!(sl.remove(b"a.b.c.d", Some(b"q"), &4));
    assert_eq!(
        node_count(&sl),
        2 + 3,
        "c and d under a.b are gone, a.b stays"
    );
    assert!(sl.remove(b"a.*.c.>", None, &3));
    assert_eq!(node_count(&sl), 2);
    assert!(sl.remove(b"a.b", None, &2));
    assert_eq!(node_count(&sl), 0);
    assert_eq!(sl.count(), 0);
}

#[test]
fn churn_does_not_grow_the_trie() {
    let sl = Sublist::new();
    sub(&sl, "keep.me", 0);
    for round in 0..50u32 {
        for i in 0..100u32 {
            let subj = format!("_INBOX.{round}.{i}");
            sub(&sl, &subj, i);
            qsub(&sl, "svc.*.req", &format!("q{i}"), i);
            assert!(!sl.matches(subj.as_bytes()).is_empty());
        }
        for i in 0..100u32 {
            assert!(sl.remove(format!("_INBOX.{round}.{i}").as_bytes(), None, &i));
            assert!(sl.remove(b"svc.*.req", Some(format!("q{i}").as_bytes()), &i));
        }
        assert_eq!(node_count(&sl), 2, "round {round}");
    }
    assert_eq!(sl.count(), 1);
    assert!(sl.cache_len() <= DEFAULT_CACHE_SIZE);
}

#[test]
fn insert_rejects_invalid_subjects_and_queues() {
    let sl = Sublist::new();
    for bad in [
        "",
        "foo..bar",
        "foo.",
        ".foo",
        "foo.>.bar",
        "foo bar",
        "foo\tbar",
        ">.foo",
    ] {
        assert_eq!(
            sl.insert(bad.as_bytes(), None, 1),
            Err(SubjectError::Invalid),
            "{bad:?}"
        );
    }
    assert_eq!(sl.insert(b"foo", Some(b""), 1), Err(SubjectError::Invalid));
    assert_eq!(
        sl.insert(b"foo", Some(b"a b"), 1),
        Err(SubjectError::Invalid)
    );
    assert_eq!(sl.count(), 0);
    assert_eq!(sl.generation(), 0, "failed inserts change nothing");
    assert!(SubjectError::Invalid
        .to_string()
        .contains("invalid subject"));
}

#[test]
fn valid_subject_rules() {
    let ok = [
        "foo", "foo.bar", "*", ">", "foo.*", "foo.>", "*.*.>", "foo.*bar", "foo>", "a.b>",
    ];
    for s in ok {
        assert!(valid_subject(s.as_bytes()), "{s:?} should be valid");
    }
    let bad = [
        "",
        "foo..bar",
        "foo.",
        ".foo",
        ".",
        "foo.>.bar",
        ">.>",
        "foo bar",
        "foo\tbar",
        "foo\r\n",
        " foo",
        "foo.\x0cbar",
    ];
    for s in bad {
        assert!(!valid_subject(s.as_bytes()), "{s:?} should be invalid");
    }
}

#[test]
fn valid_literal_subject_rules() {
    for s in ["foo", "foo.bar", "foo.*bar", "foo>", "a.b.c"] {
        assert!(
            valid_literal_subject(s.as_bytes()),
            "{s:?} should be a valid publish subject"
        );
    }
    for s in [
        "*", ">", "foo.*", "foo.>", "*.bar", "", "foo..bar", "foo.", ".foo", "foo bar",
    ] {
        assert!(
            !valid_literal_subject(s.as_bytes()),
            "{s:?} is no publish subject"
        );
    }
}

#[test]
fn generation_and_count_follow_changes() {
    let sl = Sublist::new();
    let g0 = sl.generation();
    sub(&sl, "a", 1);
    let g1 = sl.generation();
    assert!(g1 > g0);
    qsub(&sl, "a.*", "q", 2);
    let g2 = sl.generation();
    assert!(g2 > g1);
    assert_eq!(sl.count(), 2);
    assert!(!sl.remove(b"a", None, &9));
    assert_eq!(sl.generation(), g2, "a failed remove changes nothing");
    let _ = sl.matches(b"a");
    assert_eq!(sl.generation(), g2, "matching changes nothing");
    assert!(sl.remove(b"a", None, &1));
    assert!(sl.generation() > g2);
    assert_eq!(sl.count(), 1);
}

#[test]
fn cache_hit_returns_the_same_arc() {
    let sl = Sublist::new();
    sub(&sl, "foo.*", 1);
    let a = sl.matches(b"foo.bar");
    let b = sl.matches(b"foo.bar");
    assert!(Arc::ptr_eq(&a, &b), "a hit must hand out the cached result");
    assert_eq!(sl.cache_len(), 1);
    // No interest is cached too, as the shared empty result.
    let e1 = sl.matches(b"nothing.here");
    let e2 = sl.matches(b"other");
    assert!(e1.is_empty() && Arc::ptr_eq(&e1, &e2));
    assert_eq!(sl.cache_len(), 3);
}

#[test]
fn cache_is_refreshed_by_literal_insert_and_remove() {
    let sl = Sublist::new();
    assert!(sl.matches(b"foo.bar").is_empty());
    sub(&sl, "foo.bar", 1);
    assert_eq!(psubs(&sl, "foo.bar"), [1], "cached empty result replaced");
    qsub(&sl, "foo.bar", "q", 2);
    assert_eq!(qsubs(&sl, "foo.bar"), [vec![2]]);
    assert!(sl.remove(b"foo.bar", None, &1));
    assert!(
        psubs(&sl, "foo.bar").is_empty(),
        "cached result dropped on remove"
    );
    assert!(sl.remove(b"foo.bar", Some(b"q"), &2));
    assert!(sl.matches(b"foo.bar").is_empty());
}

#[test]
fn cache_is_refreshed_by_wildcard_insert_and_remove() {
    let sl = Sublist::new();
    sub(&sl, "foo.bar", 1);
    sub(&sl, "other.x", 9);
    assert_eq!(psubs(&sl, "foo.bar"), [1]);
    let other = sl.matches(b"other.x");
    assert!(sl.matches(b"foo.baz.qux").is_empty());

    sub(&sl, "foo.*", 2);
    assert_eq!(psubs(&sl, "foo.bar"), [1, 2]);
    sub(&sl, "foo.>", 3);
    assert_eq!(psubs(&sl, "foo.bar"), [1, 2, 3]);
    assert_eq!(psubs(&sl, "foo.baz.qux"), [3]);
    qsub(&sl, "*.bar", "q", 4);
    assert_eq!(qsubs(&sl, "foo.bar"), [vec![4]]);
    assert!(
        Arc::ptr_eq(&other, &sl.matches(b"other.x")),
        "unrelated cached results survive wildcard changes"
    );

    assert!(sl.remove(b"foo.*", None, &2));
    assert_eq!(psubs(&sl, "foo.bar"), [1, 3]);
    assert!(sl.remove(b"foo.>", None, &3));
    assert_eq!(psubs(&sl, "foo.bar"), [1]);
    assert!(sl.matches(b"foo.baz.qux").is_empty());
    assert!(sl.remove(b"*.bar", Some(b"q"), &4));
    assert!(qsubs(&sl, "foo.bar").is_empty());
}

#[test]
fn cache_stays_bounded() {
    let sl = Sublist::new();
    sub(&sl, "load.>", 1);
    for i in 0..10 * DEFAULT_CACHE_SIZE {
        assert_eq!(sl.matches(format!("load.{i}").as_bytes()).psubs, [1]);
        assert!(
            sl.cache_len() <= DEFAULT_CACHE_SIZE,
            "at {i}: {}",
            sl.cache_len()
        );
    }
    assert!(
        sl.cache_len() >= DEFAULT_CACHE_SIZE / 4,
        "the cache is still in use"
    );
}

#[test]
fn long_subjects_work_but_are_not_cached() {
    let sl = Sublist::new();
    let long = format!("a.{}", "x".repeat(MAX_CACHED_SUBJECT));
    sub(&sl, "a.*", 1);
    sub(&sl, &long, 2);
    assert_eq!(psubs(&sl, &long), [1, 2]);
    assert_eq!(sl.cache_len(), 0);
}

#[test]
fn disabled_cache_still_matches() {
    let sl = Sublist::with_cache_size(0);
    sub(&sl, "foo.*", 1);
    assert_eq!(psubs(&sl, "foo.bar"), [1]);
    sub(&sl, "foo.bar", 2);
    assert_eq!(psubs(&sl, "foo.bar"), [1, 2]);
    assert_eq!(sl.cache_len(), 0);
}

#[test]
fn tiny_cache_evicts_and_stays_correct() {
    let sl = Sublist::with_cache_size(4);
    sub(&sl, "t.*", 1);
    for round in 0..3 {
        for i in 0..20 {
            assert_eq!(psubs(&sl, &format!("t.{i}")), [1], "round {round}");
            assert!(sl.cache_len() <= 4);
        }
    }
    sub(&sl, "t.>", 2);
    for i in 0..20 {
        assert_eq!(psubs(&sl, &format!("t.{i}")), [1, 2]);
    }
}

#[test]
fn deep_subjects_do_not_overflow() {
    let sl = Sublist::new();
    let stars = vec!["*"; 2000].join(".");
    let lits = vec!["a"; 2000].join(".");
    sub(&sl, &stars, 1);
    sub(&sl, &lits, 2);
    assert_eq!(psubs(&sl, &lits), [1, 2]);
    assert!(sl.remove(stars.as_bytes(), None, &1));
    assert!(sl.remove(lits.as_bytes(), None, &2));
    assert_eq!(node_count(&sl), 0);
}

#[test]
fn shared_across_threads() {
    fn assert_send_sync<S: Send + Sync>() {}
    assert_send_sync::<Sublist<Arc<String>>>();

    // Publishers hammer the cache while a writer adds and removes wildcard interest; every
    // result must be one the trie really had (the literal sub is always there), and the
    // final state must be exact.
    let sl = Arc::new(Sublist::new());
    sub(&sl, "p.x", 0);
    std::thread::scope(|s| {
        for _ in 0..3 {
            let sl = &sl;
            s.spawn(move || {
                for i in 0..20_000u32 {
                    let r =
                        sl.matches(format!("p.{}", if i % 2 == 0 { "x" } else { "y" }).as_bytes());
                    assert!(r.psubs.iter().all(|&id| id == 0 || id == 1));
                    if i % 2 == 0 {
                        assert!(r.psubs.contains(&0));
                    }
                }
            });
        }
        let sl = &sl;
        s.spawn(move || {
            for _ in 0..2_000 {
                sub(sl, "p.*", 1);
                assert!(sl.remove(b"p.*", None, &1));
            }
        });
    });
    assert_eq!(psubs(&sl, "p.x"), [0]);
    assert!(sl.matches(b"p.y").is_empty());
    assert_eq!(sl.count(), 1);
}

#[test]
fn after_insert_every_thread_sees_it() {
    // The generation protocol callers rely on: read the generation, then match; once a thread
    // sees a newer generation, its next match reflects the change.
    let sl = Arc::new(Sublist::new());
    std::thread::scope(|s| {
        let reader = {
            let sl = &sl;
            s.spawn(move || {
                let mut seen = 0;
                while seen < 500 {
                    let g = sl.generation();
                    let r = sl.matches(b"gen.test");
                    // Writer inserts on odd target generations and removes on even ones.
                    let expect = g % 2 == 1;
                    let now = sl.generation();
                    if now == g {
                        assert_eq!(!r.is_empty(), expect, "generation {g}");
                        seen += 1;
                    }
                }
            })
        };
        for _ in 0..1000 {
            sub(&sl, "gen.*", 1);
            assert!(sl.remove(b"gen.*", None, &1));
            if reader.is_finished() {
                break;
            }
        }
    });
}
