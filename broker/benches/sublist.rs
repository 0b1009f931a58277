//! Micro-benchmarks of the subject trie on ~1000 subscriptions: match with a cache hit, with a
//! cache miss, with the cache off, from two threads at once, and insert+remove.
//!
//! `cargo bench -p natsd --bench sublist` (add `-- --quick` for a short run).

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use natsd::sublist::Sublist;

/// 1000 subscriptions shaped like a service mesh: mostly literal, some `*`, some `>`, some in
/// queue groups; `app.<n>.evt.<m>` reaches about five of them.
fn populated(cache_size: usize) -> Sublist<u32> {
    let sl = Sublist::with_cache_size(cache_size);
    let mut id = 0u32;
    let mut add = |subject: String, queue: Option<&[u8]>| {
        sl.insert(subject.as_bytes(), queue, id)
            .expect("valid subject");
        id += 1;
    };
    for i in 0..700 {
        add(format!("app.{}.evt.{i}", i % 50), None);
    }
    for i in 0..200 {
        add(format!("app.{}.*.{i}", i % 50), None);
    }
    for i in 0..50 {
        add(format!("app.{i}.>"), None);
    }
    for i in 0..50 {
        add(format!("app.*.evt.{i}"), Some(b"workers"));
    }
    assert_eq!(sl.count(), 1000);
    sl
}

fn bench_match(c: &mut Criterion) {
    let mut g = c.benchmark_group("match");

    let sl = populated(1024);
    let hot = b"app.7.evt.107";
    assert!(sl.matches(hot).psubs.len() >= 3);
    g.bench_function("cache_hit", |b| {
        b.iter(|| black_box(sl.matches(black_box(hot))))
    });

    // 64k distinct subjects through a 1024-entry cache: nearly every call walks the trie,
    // builds a result and stores it (evicting when a shard is full).
    let subjects: Vec<Vec<u8>> = (0..65_536)
        .map(|i| format!("app.{}.evt.{}", i % 50, i % 700).into_bytes())
        .collect();
    let distinct: Vec<Vec<u8>> = (0..65_536)
        .map(|i| format!("app.{}.evt.{i}", i % 50).into_bytes())
        .collect();
    let mut i = 0;
    g.bench_function("cache_miss", |b| {
        b.iter(|| {
            i = (i + 1) % distinct.len();
            black_box(sl.matches(&distinct[i]))
        })
    });

    let nocache = populated(0);
    let mut j = 0;
    g.bench_function("no_cache", |b| {
        b.iter(|| {
            j = (j + 1) % subjects.len();
            black_box(nocache.matches(&subjects[j]))
        })
    });

    g.bench_function("no_interest_hit", |b| {
        b.iter(|| black_box(sl.matches(black_box(b"other.subject"))))
    });

    // Two publisher threads on different hot subjects (shared cache, shared Arcs): shows lock
    // and refcount contention. Reported time is per match per thread.
    let shared = Arc::new(populated(1024));
    g.bench_function("cache_hit_2_threads", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            std::thread::scope(|s| {
                for t in 0..2 {
                    let sl = &shared;
                    s.spawn(move || {
                        let subj = format!("app.{t}.evt.{}", t + 100);
                        for _ in 0..iters {
                            black_box(sl.matches(subj.as_bytes()));
                        }
                    });
                }
            });
            start.elapsed()
        })
    });
    g.finish();
}

fn bench_insert_remove(c: &mut Criterion) {
    let mut g = c.benchmark_group("insert_remove");
    let sl = populated(1024);
    // Fill the cache so invalidation has work to do.
    for i in 0..1024 {
        sl.matches(format!("app.{}.evt.{i}", i % 50).as_bytes());
    }
    g.bench_function("literal", |b| {
        b.iter(|| {
            sl.insert(b"app.3.evt.new", None, 5000).unwrap();
            assert!(sl.remove(b"app.3.evt.new", None, &5000));
        })
    });
    g.bench_function("wildcard_full_cache", |b| {
        b.iter(|| {
            sl.insert(b"app.3.*.new", None, 5000).unwrap();
            assert!(sl.remove(b"app.3.*.new", None, &5000));
        })
    });
    g.bench_function("queue", |b| {
        b.iter(|| {
            sl.insert(b"app.3.evt.7", Some(b"workers"), 5000).unwrap();
            assert!(sl.remove(b"app.3.evt.7", Some(b"workers"), &5000));
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(2)).warm_up_time(Duration::from_millis(500));
    targets = bench_match, bench_insert_remove
}
criterion_main!(benches);
