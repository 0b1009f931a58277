//! Parser throughput: a read buffer full of PUB frames (16 B and 1 KiB payloads), parsed the way
//! the reader task does it (one BytesMut, ops split off the front).
use bytes::BytesMut;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use natsd::parser::{Op, Parser};
use std::hint::black_box;

fn frames(payload: usize, count: usize) -> Vec<u8> {
    let body = vec![b'x'; payload];
    let mut v = Vec::new();
    for _ in 0..count {
        v.extend_from_slice(format!("PUB bench.subject.foo {payload}\r\n").as_bytes());
        v.extend_from_slice(&body);
        v.extend_from_slice(b"\r\n");
    }
    v
}

fn bench_parser(c: &mut Criterion) {
    let mut group = c.benchmark_group("parse_pub");
    for &(payload, count) in &[(16usize, 4096usize), (1024, 256)] {
        let input = frames(payload, count);
        group.throughput(Throughput::Elements(count as u64));
        group.bench_with_input(BenchmarkId::from_parameter(payload), &input, |b, input| {
            let mut buf = BytesMut::with_capacity(input.len());
            b.iter(|| {
                let mut p = Parser::new(4096, 1024 * 1024);
                buf.clear();
                buf.extend_from_slice(input);
                let mut n = 0usize;
                while let Ok(Some(op)) = p.parse(&mut buf) {
                    if let Op::Pub(m) = op {
                        n += m.body().len();
                    }
                }
                black_box(n)
            });
        });
    }
    group.finish();
}

criterion_group!(benches, bench_parser);
criterion_main!(benches);
