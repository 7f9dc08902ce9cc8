//! Scale curves: how the library behaves as an index grows to 10,000,
//! 100,000 and 1,000,000 members. For each size: `index check` (members
//! checked per second, and the bench process's peak heap above its start,
//! counted by its allocator), a page of 50 at the newest end and in the
//! middle, and a create into the index (criterion, each against the size),
//! and `MEMORY USAGE` of one entity's hash. Prints a Markdown table of the
//! sweep and memory figures to stderr; criterion reports the latencies.
mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use repobox_orm::prelude::*;
use repobox_orm::testing::{PeakAlloc, RedisServer};

use common::runtime;

#[global_allocator]
static ALLOC: PeakAlloc = PeakAlloc::new();

/// An entity of a realistic size, in one sorted index per size.
#[derive(RedisEntity, Debug, Clone, PartialEq)]
#[key("item:<id>")]
#[index(sorted = "items:<kind>", score = at)]
struct Item {
    id: String,
    kind: String,
    at: i64,
    owner: String,
    title: String,
    state: String,
}

fn item(kind: &str, i: u64) -> Item {
    Item {
        id: format!("{kind}-{i}"),
        kind: kind.to_owned(),
        at: 1_700_000_000_000 + i as i64,
        owner: format!("user-{}", i % 1000),
        title: "Build the repository at its main branch".into(),
        state: "queued".into(),
    }
}

const SIZES: [u64; 3] = [10_000, 100_000, 1_000_000];

fn scale(c: &mut Criterion) {
    let rt = runtime();
    let server = RedisServer::start();
    let store = Store::open(server.url().as_str()).unwrap();
    let mut table = vec![
        "| members | index check: members/s | its peak heap above the start | `MEMORY USAGE` of one entity's hash |"
            .to_owned(),
        "| ---: | ---: | ---: | ---: |".to_owned(),
    ];
    let created = AtomicU64::new(0);
    let mut g = c.benchmark_group("scale");
    g.sample_size(20)
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_millis(500));
    for n in SIZES {
        let kind = format!("k{n}");
        rt.block_on(async {
            let mut conn = store.clone();
            // Only this size's index: the smaller ones are not checked again.
            let _: () = redis::cmd("FLUSHDB").query_async(&mut conn).await.unwrap();
            let items: Vec<Item> = (0..n).map(|i| item(&kind, i)).collect();
            for chunk in items.chunks(10_000) {
                for r in Item::create_many(&mut conn, chunk).await.unwrap() {
                    r.unwrap();
                }
            }
            let before = ALLOC.reset_peak();
            let began = Instant::now();
            let reports = repobox_orm::check_indexes::<Item, _>(&mut conn).await.unwrap();
            let took = began.elapsed();
            let peak = ALLOC.peak_above(before);
            assert_eq!(reports[0].members, n);
            let usage: u64 = redis::cmd("MEMORY")
                .arg("USAGE")
                .arg(format!("item:{kind}-0"))
                .query_async(&mut conn)
                .await
                .unwrap();
            table.push(format!(
                "| {n} | {:.0} | {:.1} KB | {usage} bytes |",
                n as f64 / took.as_secs_f64(),
                peak as f64 / 1024.0
            ));
        });
        g.bench_with_input(BenchmarkId::new("page_newest_50", n), &n, |b, _| {
            b.iter(|| {
                rt.block_on(async {
                    let page = Item::by_kind(&mut store.clone(), kind.as_str(), Page::newest(50))
                        .await
                        .unwrap();
                    assert_eq!(page.items.len(), 50);
                })
            })
        });
        g.bench_with_input(BenchmarkId::new("page_middle_50", n), &n, |b, &n| {
            b.iter(|| {
                rt.block_on(async {
                    let page = Item::by_kind(
                        &mut store.clone(),
                        kind.as_str(),
                        Page::newest(50).offset((n / 2) as usize),
                    )
                    .await
                    .unwrap();
                    assert_eq!(page.items.len(), 50);
                })
            })
        });
        g.bench_with_input(BenchmarkId::new("create", n), &n, |b, &n| {
            b.iter(|| {
                rt.block_on(async {
                    let i = n + created.fetch_add(1, Ordering::Relaxed);
                    Item::create(&mut store.clone(), &item(&kind, i)).await.unwrap();
                })
            })
        });
    }
    g.finish();
    eprintln!("\n{}", table.join("\n"));
}

criterion_group!(benches, scale);
criterion_main!(benches);
