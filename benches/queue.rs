//! Queue throughput: jobs per second through enqueue -> runner -> ack with a
//! no-op handler, with 1 and 4 runners on one server.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use repobox_models::{Job, now_millis};
use repobox_orm::Store;
use repobox_orm::testing::RedisServer;
use repobox_runner::{HandlerResult, JobHandler, Output, Runner, RunnerConfig};

use common::*;

#[derive(Clone)]
struct Noop(Arc<AtomicU64>);

impl JobHandler for Noop {
    async fn run(&self, _job: Job, _output: Output) -> HandlerResult {
        self.0.fetch_add(1, Ordering::Relaxed);
        Ok(0)
    }
}

fn queue(c: &mut Criterion) {
    let rt = runtime();
    let server = RedisServer::start();
    let store = Store::open(server.url().as_str()).unwrap();
    let seq = AtomicU64::new(0);
    let mut g = c.benchmark_group("queue");
    g.sample_size(10)
        .measurement_time(Duration::from_secs(10))
        .warm_up_time(Duration::from_secs(1));
    for runners in [1usize, 4] {
        g.bench_function(format!("enqueue_run_ack/{runners}_runners"), |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let done = Arc::new(AtomicU64::new(0));
                    let (stop, stopped) = tokio::sync::watch::channel(false);
                    let mut handles = Vec::new();
                    for r in 0..runners {
                        let config = RunnerConfig::new(format!("bench-{r}"))
                            .concurrency(16)
                            .block(Duration::from_millis(20));
                        let runner = Runner::new(store.clone(), Noop(done.clone()), config);
                        let mut stopped = stopped.clone();
                        handles.push(tokio::spawn(runner.run(async move {
                            let _ = stopped.wait_for(|s| *s).await;
                        })));
                    }
                    let base = seq.fetch_add(iters, Ordering::Relaxed);
                    let start = Instant::now();
                    let mut conn = store.clone();
                    for i in 0..iters {
                        Job::create_and_enqueue(&mut conn, &job(base + i, "queue"), now_millis())
                            .await
                            .unwrap();
                    }
                    while done.load(Ordering::Relaxed) < iters {
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                    let took = start.elapsed();
                    stop.send(true).unwrap();
                    for h in handles {
                        h.await.unwrap().unwrap();
                    }
                    took
                })
            })
        });
    }
    g.finish();
}

criterion_group!(benches, queue);
criterion_main!(benches);
