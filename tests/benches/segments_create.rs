//! Benchmark: `POST .../segment` with 25,000 user ids through the segments handler, against
//! the local DynamoDB-compatible server named by `AWS_ENDPOINT_URL_DYNAMODB` (run it with
//! `make bench-segments`, which starts one). Without that variable it does nothing.
//!
//! Three runs, each creating a fresh segment in the same stack; the time of each run is the
//! handler call only (the request is built beforehand; the check afterwards is not timed).
//! Output is one `key=value ...` line per fact, for scripts/bench-segments.sh:
//!
//! ```text
//! run=1 ids=25000 secs=... ids_per_s=...
//! requests run=1 total=... BatchWriteItem=... GetItem=... ...
//! ours_ids_per_s=...            (median of the runs)
//! requests_total=... batch_write=...   (DynamoDB requests of one create, retries included)
//! ```

use std::collections::BTreeMap;
use std::time::Instant;

use integration_tests::*;
use serde_json::json;

const IDS: usize = 25_000;
const RUNS: usize = 3;

/// Only a server on this machine: the bench writes 75,000+ items and must never reach AWS.
fn local_endpoint() -> Option<String> {
    let url = std::env::var("AWS_ENDPOINT_URL_DYNAMODB").ok().filter(|v| !v.is_empty())?;
    let rest = url.split_once("://").map_or(url.as_str(), |(_, r)| r);
    let host_port = rest.split('/').next().unwrap_or("");
    let host = if let Some(v6) = host_port.strip_prefix('[') {
        v6.split(']').next().unwrap_or("")
    } else {
        host_port.split(':').next().unwrap_or("")
    };
    if matches!(host, "127.0.0.1" | "localhost" | "::1") {
        Some(url)
    } else {
        eprintln!("error: AWS_ENDPOINT_URL_DYNAMODB={url} is not a local server; refusing to run");
        std::process::exit(2);
    }
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    s[s.len() / 2]
}

#[tokio::main]
async fn main() {
    let Some(endpoint) = local_endpoint() else {
        println!(
            "skipped: AWS_ENDPOINT_URL_DYNAMODB is not set (run `make bench-segments`, which starts a local server)"
        );
        return;
    };
    eprintln!("segments_create: {IDS} ids x {RUNS} runs against {endpoint}");

    let stack = Stack::new().await;
    let auth = stack.bearer(ALL_SCOPES).await;
    let app = stack.segments_app();
    let user_ids: Vec<String> = (0..IDS).map(|i| format!("user{i}@company.com")).collect();
    let body = json!({ "name": "bench", "userIds": user_ids }).to_string();
    let path = stack.segment_path("");
    let headers = [("authorization", auth.as_str()), ("content-type", "application/json")];

    let mut rates = Vec::with_capacity(RUNS);
    let mut counts: Vec<BTreeMap<String, usize>> = Vec::with_capacity(RUNS);
    for run in 1..=RUNS {
        let request = req("POST", &path, &headers, Some(&body));
        stack.counter.reset();
        let start = Instant::now();
        let resp = edge::front::serve(&app, request).await;
        let secs = start.elapsed().as_secs_f64();
        let ops = stack.counter.take();

        let a = answer(resp);
        assert_eq!(a.status, 201, "create failed: {}", a.body);
        assert_eq!(a.body["userCount"].as_i64(), Some(IDS as i64), "{}", a.body);
        // The members are really there: the count the API reads back from the store.
        let seg = a.body["segmentGuid"].as_str().expect("segmentGuid").to_string();
        let got = call_segments(&app, &auth, "GET", &stack.segment_path(&format!("/{seg}")), None).await;
        assert_eq!(got.status, 200, "{}", got.body);
        assert_eq!(got.body["userCount"].as_i64(), Some(IDS as i64), "{}", got.body);
        stack.counter.reset();

        let rate = IDS as f64 / secs;
        println!("run={run} ids={IDS} secs={secs:.3} ids_per_s={rate:.1}");
        let mut by_op: BTreeMap<String, usize> = BTreeMap::new();
        for op in ops {
            *by_op.entry(op).or_default() += 1;
        }
        let total: usize = by_op.values().sum();
        let detail: Vec<String> = by_op.iter().map(|(k, v)| format!("{k}={v}")).collect();
        println!("requests run={run} total={total} {}", detail.join(" "));
        rates.push(rate);
        counts.push(by_op);
    }

    println!("ours_ids_per_s={:.1}", median(&rates));
    // Retries are counted too, so runs may differ; report the median run's counts and the range.
    let totals: Vec<usize> = counts.iter().map(|c| c.values().sum()).collect();
    let batches: Vec<usize> = counts.iter().map(|c| c.get("BatchWriteItem").copied().unwrap_or(0)).collect();
    let mut order: Vec<usize> = (0..RUNS).collect();
    order.sort_by_key(|&i| totals[i]);
    let mid = order[RUNS / 2];
    println!(
        "requests_total={} batch_write={} requests_total_min={} requests_total_max={}",
        totals[mid],
        batches[mid],
        totals.iter().min().unwrap(),
        totals.iter().max().unwrap()
    );
}
