//! Micro-benchmarks of the pure parts on every request's path: the fault decision, seeded id
//! generation, hop-by-hop header stripping and outcome serialisation.
//! Run with `cargo bench --bench hot_paths`; figures are recorded in BENCHMARKS.md.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use hyper::Method;
use hyper::header::{HeaderMap, HeaderName, HeaderValue};
use traceforge::fault::{FaultPlan, RequestFacts};
use traceforge::record::{Attempt, Format, Outcome, OutcomeWriter};

fn plan() -> FaultPlan {
    let text = r#"
        name = "bench"
        seed = 42
        faults = ["delay:100ms-500ms:0.3:/api", "error:503:0.25:/api", "drop:0.01"]
    "#;
    match traceforge::scenario::parse_str("bench.toml", text, &[]) {
        Ok(s) => s.fault_plan(),
        Err(e) => panic!("{e}"),
    }
}

fn decide(c: &mut Criterion) {
    let plan = plan();
    let ids: Vec<String> = (0..1024)
        .map(|i| traceforge::seed::request_id(7, i, 0))
        .collect();
    let headers = HeaderMap::new();
    let mut i = 0usize;
    c.bench_function("fault decision, 3 rules", |b| {
        b.iter(|| {
            i = (i + 1) % ids.len();
            let mut facts = RequestFacts::new(&Method::GET, "/api/resource", &ids[i]);
            facts.headers = &headers;
            facts.index = i as u64;
            black_box(plan.decide(black_box(&facts)))
        })
    });
}

fn ids(c: &mut Criterion) {
    let mut i = 0u64;
    c.bench_function("request id from (seed, index, attempt)", |b| {
        b.iter(|| {
            i += 1;
            black_box(traceforge::seed::request_id(black_box(42), i, 0))
        })
    });
    c.bench_function("trace id from (seed, index)", |b| {
        b.iter(|| {
            i += 1;
            black_box(traceforge::seed::trace_id(black_box(42), i))
        })
    });
}

fn strip(c: &mut Criterion) {
    let mut template = HeaderMap::new();
    for (name, value) in [
        ("host", "example.com"),
        ("user-agent", "bench/1.0"),
        ("accept", "*/*"),
        ("connection", "keep-alive, x-secret"),
        ("keep-alive", "timeout=5"),
        ("x-secret", "1"),
        ("x-request-id", "5f0c5a57-9d69-4a4e-9d6c-3b1f8a1b2c3d"),
        ("x-trace-id", "0af7651916cd43dd8448eb211c80319c"),
        ("te", "trailers"),
    ] {
        template.insert(
            HeaderName::from_static(name),
            HeaderValue::from_static(value),
        );
    }
    c.bench_function("strip hop-by-hop headers (9 headers)", |b| {
        b.iter_batched(
            || template.clone(),
            |mut headers| {
                traceforge::proxy::strip_hop_by_hop(&mut headers);
                headers
            },
            criterion::BatchSize::SmallInput,
        )
    });
}

fn serialise(c: &mut Criterion) {
    let outcome = Outcome {
        index: 12345,
        method: "GET".into(),
        path: "/api/resource".into(),
        status: Some(200),
        error: None,
        trace_id: traceforge::seed::trace_id(1, 12345),
        attempts: vec![
            Attempt {
                request_id: traceforge::seed::request_id(1, 12345, 0),
                status: Some(503),
                error: None,
                faults: vec!["api-503".into()],
                fault_kinds: vec!["error".into()],
                bytes: 71,
                latency: Duration::from_micros(812),
                start: Duration::from_millis(1234),
                websocket: None,
            },
            Attempt {
                request_id: traceforge::seed::request_id(1, 12345, 1),
                status: Some(200),
                error: None,
                faults: vec![],
                fault_kinds: vec![],
                bytes: 160,
                latency: Duration::from_micros(1500),
                start: Duration::from_millis(1285),
                websocket: None,
            },
        ],
        start: Duration::from_millis(1234),
        scheduled: Duration::from_millis(1234),
        service: Duration::from_millis(53),
        protocol: Default::default(),
        calls: Default::default(),
        latency: Duration::from_millis(53),
    };
    for (name, format) in [
        ("json", Format::Json),
        ("jsonl", Format::Jsonl),
        ("csv", Format::Csv),
    ] {
        let mut writer = match OutcomeWriter::new(format, std::io::sink()) {
            Ok(w) => w,
            Err(e) => panic!("{e}"),
        };
        c.bench_function(&format!("write one outcome ({name})"), |b| {
            b.iter(|| writer.write(black_box(&outcome)))
        });
    }
}

criterion_group!(benches, decide, ids, strip, serialise);
criterion_main!(benches);
