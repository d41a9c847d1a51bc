//! Benchmarks (criterion): map+encode one referral with the default REF^I12 mapping,
//! without and with a 1 MB attachment, parse one RRI^I12 with the guarded reader, and read
//! one A005 referral: JSON text to `Value`, `Value` to the full typed `ReferralRequest`, and
//! `Value` to the narrow `ReferralFacts` the outbound pipeline decides with.
//! Run with `cargo bench --bench mapping`; figures are recorded in `BENCHMARKS.md`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ers_bridge::hl7::{read, read_inbound};
use ers_bridge::mapping::{compile_file, ApplyInput, Attachments};

fn path(rel: &str) -> String {
    format!("{}/{rel}", env!("CARGO_MANIFEST_DIR"))
}

fn benches(c: &mut Criterion) {
    let mapping = compile_file(path("mappings/ref_i12.v24.toml").as_ref()).unwrap();
    let text = std::fs::read_to_string(path("samples/fhir/referrals/booked-dbs.json")).unwrap();
    let referral: serde_json::Value = serde_json::from_str(&text).unwrap();
    let control_id = mapping.control_id_for(&referral).unwrap();
    let timestamp = chrono::DateTime::parse_from_rfc3339("2024-01-15T10:30:00+00:00").unwrap();
    let none = Attachments::new();
    let mut big = Attachments::new();
    big.insert(
        "80000".into(),
        (0..1_000_000u32).map(|i| (i % 251) as u8).collect(),
    );

    let mut g = c.benchmark_group("map_encode");
    g.throughput(Throughput::Elements(1));
    g.bench_function("ref_i12_no_attachment", |b| {
        b.iter(|| {
            let input = ApplyInput {
                referral: black_box(&referral),
                control_id: &control_id,
                timestamp,
                attachments: &none,
                attachment_errors: &Default::default(),
            };
            black_box(mapping.render(&input).unwrap().1.len())
        })
    });
    g.bench_function("ref_i12_1mb_attachment", |b| {
        b.iter(|| {
            let input = ApplyInput {
                referral: black_box(&referral),
                control_id: &control_id,
                timestamp,
                attachments: &big,
                attachment_errors: &Default::default(),
            };
            black_box(mapping.render(&input).unwrap().1.len())
        })
    });
    g.finish();

    let rri = std::fs::read(path("bench/rri.hl7")).unwrap();
    let mut g = c.benchmark_group("parse");
    g.throughput(Throughput::Elements(1));
    g.bench_function("rri_i12_read", |b| {
        b.iter(|| black_box(read(black_box(&rri)).unwrap().segments.len()))
    });
    g.bench_function("rri_i12_read_inbound", |b| {
        b.iter(|| black_box(read_inbound(black_box(&rri), 1 << 20).unwrap().control_id))
    });
    g.bench_function("referral_value_from_text", |b| {
        b.iter(|| black_box(serde_json::from_str::<serde_json::Value>(black_box(&text)).unwrap()))
    });
    g.bench_function("referral_typed_from_value", |b| {
        use serde::Deserialize;
        b.iter(|| {
            black_box(ers_bridge::fhir::ReferralRequest::deserialize(black_box(&referral)).unwrap())
        })
    });
    g.bench_function("referral_facts_from_value", |b| {
        b.iter(|| {
            let facts = ers_bridge::fhir::ReferralFacts::from_value(black_box(&referral)).unwrap();
            black_box(facts.attachments().count())
        })
    });
    g.finish();
}

criterion_group! {
    name = mapping;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(30);
    targets = benches
}
criterion_main!(mapping);
