//! Criterion micro-benchmarks of the SSE wire format: the incremental upstream parser
//! (`sse_edge::sse::Parser`) and the safe encoder (`Event::encode_into`), in bytes/s.
//!
//! Inputs are realistic: ~100-byte single-line JSON events (price ticks) and 4 KiB events
//! whose data spans 64 lines. The parser is fed 16 KiB chunks — the size of a typical
//! socket read — so line and event boundaries fall anywhere in a chunk.
//!
//! Run: `cargo bench --bench parser` (add `-- --quick` for a short run).

use std::hint::black_box;

use bytes::BytesMut;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use sse_edge::sse::{Event, Parser};

/// Bytes per socket read handed to the parser.
const CHUNK: usize = 16 * 1024;
/// Bytes of wire stream per parser iteration.
const STREAM_BYTES: usize = 1 << 20;

/// A ~100-byte single-line event, as a price ticker would send it.
fn small_event(i: usize) -> Event {
    let mut e = Event::named(
        "price",
        format!(
            "{{\"sym\":\"ACME\",\"seq\":{i:08},\"bid\":101.25,\"ask\":101.27,\"ts\":1732200000}}"
        ),
    );
    e.id = Some(format!("{i}"));
    e
}

/// A 4 KiB event whose data is 64 lines of 63 characters plus the newline.
fn large_event(i: usize) -> Event {
    let line = "x".repeat(63);
    let mut data = String::with_capacity(4096);
    for n in 0..64 {
        if n > 0 {
            data.push('\n');
        }
        data.push_str(&line);
    }
    let mut e = Event::message(data);
    e.id = Some(format!("{i}"));
    e
}

/// Encodes events until the wire stream is at least [`STREAM_BYTES`] long.
fn wire_stream(make: fn(usize) -> Event) -> (Vec<u8>, usize) {
    let mut out = BytesMut::new();
    let mut n = 0;
    while out.len() < STREAM_BYTES {
        let e = make(n);
        let id = e.id.clone().unwrap_or_default();
        if e.encode_into(&id, &mut out).is_err() {
            break;
        }
        n += 1;
    }
    (out.to_vec(), n)
}

fn parser(c: &mut Criterion) {
    let mut group = c.benchmark_group("parser");
    for (name, make) in [
        ("small_100B", small_event as fn(usize) -> Event),
        ("large_4KiB_multiline", large_event),
    ] {
        let (wire, events) = wire_stream(make);
        group.throughput(Throughput::Bytes(wire.len() as u64));
        group.bench_function(name, |b| {
            b.iter(|| {
                let mut parser = Parser::new(1 << 20);
                let mut seen = 0;
                for chunk in wire.chunks(CHUNK) {
                    seen += parser.feed(black_box(chunk)).events.len();
                }
                assert_eq!(seen, events);
                seen
            })
        });
    }
    group.finish();
}

fn encoder(c: &mut Criterion) {
    let mut group = c.benchmark_group("encoder");
    for (name, event) in [
        ("small_100B", small_event(12345678)),
        ("large_4KiB_multiline", large_event(12345678)),
    ] {
        let mut out = BytesMut::with_capacity(8192);
        if event.encode_into("12345678", &mut out).is_err() {
            continue;
        }
        group.throughput(Throughput::Bytes(out.len() as u64));
        group.bench_function(name, |b| {
            b.iter(|| {
                out.clear();
                let ok = black_box(&event)
                    .encode_into(black_box("12345678"), &mut out)
                    .is_ok();
                (ok, out.len())
            })
        });
    }
    group.finish();
}

criterion_group!(benches, parser, encoder);
criterion_main!(benches);
