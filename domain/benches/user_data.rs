//! Validating + transforming the largest legal `POST /public/v1/user/data` request (100 users,
//! 20 properties, just under 2 MB) next to a bare `serde_json::from_slice::<Value>` of the
//! same bytes, in the same run. Report the ratio (`cargo bench -p domain --bench user_data`).

use criterion::{Criterion, criterion_group, criterion_main};
use domain::integration::Definition;
use domain::user_data::{self, Envelope, MAX_BODY_BYTES, MAX_STRING_BYTES};
use serde_json::{Value, json};
use std::hint::black_box;

const PROPERTIES: usize = 20;
const USERS: usize = 100;

fn definition() -> Definition {
    let props: Vec<Value> = (0..PROPERTIES)
        .map(|i| json!({"path": format!("p{i:02}"), "name": format!("P{i:02}"), "type": "String"}))
        .collect();
    Definition::from_json(&json!({"name": "bench", "userIdentifierProperty": "email", "properties": props}))
        .unwrap()
}

/// The largest request this API accepts: values as long as the 2 MB body allows.
fn largest_body() -> Vec<u8> {
    let body = |len: usize| {
        let data: Vec<Value> = (0..USERS)
            .map(|u| {
                let mut item = serde_json::Map::new();
                item.insert("email".into(), json!(format!("user{u}@example.com")));
                for p in 0..PROPERTIES {
                    item.insert(format!("p{p:02}"), json!("x".repeat(len)));
                }
                Value::Object(item)
            })
            .collect();
        serde_json::to_vec(&json!({"token": "0".repeat(64), "data": data})).unwrap()
    };
    let mut len = MAX_STRING_BYTES;
    while body(len).len() > MAX_BODY_BYTES {
        len -= 1;
    }
    body(len)
}

/// What the handler does before it writes: parse, check the envelope, validate every item
/// and build the per-user attribute lists.
fn validate_and_transform(def: &Definition, bytes: &[u8]) -> usize {
    let envelope: Envelope = serde_json::from_slice(bytes).unwrap();
    let mut request = envelope.into_request(true).unwrap();
    let validated = user_data::validate(def, &mut request.data).unwrap();
    validated
        .users
        .iter()
        .map(|u| u.values.iter().map(|(i, _)| def.properties[*i].name.len()).sum::<usize>())
        .sum()
}

fn bench(c: &mut Criterion) {
    let def = definition();
    let bytes = largest_body();
    eprintln!("request: {} bytes, {USERS} users x {PROPERTIES} properties", bytes.len());
    assert!(validate_and_transform(&def, &bytes) > 0);
    let mut group = c.benchmark_group("largest user-data request");
    group.throughput(criterion::Throughput::Bytes(bytes.len() as u64));
    group.bench_function("baseline: serde_json::from_slice::<Value>", |b| {
        b.iter(|| black_box(serde_json::from_slice::<Value>(black_box(&bytes)).unwrap()))
    });
    group.bench_function("parse + validate + transform", |b| {
        b.iter(|| black_box(validate_and_transform(&def, black_box(&bytes))))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
