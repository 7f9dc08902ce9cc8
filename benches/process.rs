//! A job's output through `ProcessHandler`: `seq 1 200000` run as a job, end
//! to end (start, spawn, pipe, cut, batch, RPUSH, status), next to
//! hand-written code that spawns the same program and RPUSHes its lines in
//! batches of 1,000 (what a careful runner author writes by hand).

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use repobox_models::{Job, OutputRange, now_millis};
use repobox_orm::Store;
use repobox_orm::testing::RedisServer;
use repobox_runner::{ProcessHandler, Runner, RunnerConfig, RunnerControl};
use tokio::io::AsyncBufReadExt;

use common::*;

const LINES: u64 = 200_000;

fn process(c: &mut Criterion) {
    let rt = runtime();
    let server = RedisServer::start();
    let store = Store::open(server.url().as_str()).unwrap();
    let seq = AtomicU64::new(0);
    let mut g = c.benchmark_group("process");
    g.sample_size(10)
        .measurement_time(Duration::from_secs(20))
        .warm_up_time(Duration::from_secs(1));

    g.bench_function("seq_200k/process_handler", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let control = RunnerControl::new();
                let handler = ProcessHandler::exec("seq", ["1".to_owned(), LINES.to_string()]).max_output_lines(LINES);
                let config = RunnerConfig::new("bench").block(Duration::from_millis(5));
                let run = tokio::spawn(Runner::new(store.clone(), handler, config).run_with(control.clone()));
                let mut took = Duration::ZERO;
                for _ in 0..iters {
                    let job = job(seq.fetch_add(1, Ordering::Relaxed), "process");
                    let start = Instant::now();
                    Job::create_and_enqueue(&mut store.clone(), &job, now_millis())
                        .await
                        .unwrap();
                    loop {
                        let done = Job::get(&mut store.clone(), &job.id).await.unwrap().unwrap();
                        if done.status.is_final() {
                            break;
                        }
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                    took += start.elapsed();
                    let count = Job::output_count(&mut store.clone(), &job.id).await.unwrap();
                    assert_eq!(count, LINES);
                }
                control.drain();
                run.await.unwrap().unwrap();
                took
            })
        })
    });

    g.bench_function("seq_200k/hand_written", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let mut took = Duration::ZERO;
                for _ in 0..iters {
                    let id = format!("hand-{}", seq.fetch_add(1, Ordering::Relaxed));
                    let key = format!("job:{id}:output");
                    let start = Instant::now();
                    let mut child = tokio::process::Command::new("seq")
                        .args(["1".to_owned(), LINES.to_string()])
                        .stdout(std::process::Stdio::piped())
                        .spawn()
                        .unwrap();
                    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
                    let mut batch = Vec::with_capacity(1_000);
                    let mut conn = store.clone();
                    loop {
                        let line = lines.next_line().await.unwrap();
                        let end = line.is_none();
                        batch.extend(line);
                        if batch.len() == 1_000 || (end && !batch.is_empty()) {
                            let _: () = repobox_orm::redis::pipe()
                                .atomic()
                                .cmd("RPUSH")
                                .arg(&key)
                                .arg(&batch)
                                .ignore()
                                .cmd("PEXPIRE")
                                .arg(&key)
                                .arg(86_400_000)
                                .ignore()
                                .query_async(&mut conn)
                                .await
                                .unwrap();
                            batch.clear();
                        }
                        if end {
                            break;
                        }
                    }
                    child.wait().await.unwrap();
                    took += start.elapsed();
                    let got = Job::output(&mut store.clone(), &id, OutputRange::last(1))
                        .await
                        .unwrap();
                    assert_eq!(got, [LINES.to_string()]);
                }
                took
            })
        })
    });
    g.finish();
}

criterion_group!(benches, process);
criterion_main!(benches);
