//! Side-by-side queue benchmark: repobox's queue and runner, BullMQ (Node) and
//! apalis-redis (Rust) on one redis-server of our own, in BullMQ's benchmark
//! scenarios. See README.md.
//!
//! ```text
//! cargo run --release --manifest-path benches/queue_peers/Cargo.toml -- \
//!     [--rounds N] [--jobs N] [--only repobox,bullmq,apalis] [--scenarios a,b] [--json FILE|-]
//! ```

mod apalis_side;
mod bullmq_side;
mod model;
mod repobox_side;
mod report;
mod server;

use std::process::ExitCode;
use std::time::Duration;

use model::{BoxError, Measured, NotApplicable, Scenario, Side};
use report::{Outcome, Run};
use server::Server;

const USAGE: &str = "\
usage: queue-peers [--rounds N] [--jobs N] [--only repobox,bullmq,apalis]
                   [--scenarios queue-add,queue-add-bulk,worker-generic,worker-concurrent-10,...]
                   [--timeout SECS] [--json FILE|-]

  --rounds N      rounds per scenario; each round runs every side once (default 3)
  --jobs N        jobs per run (default 10000)
  --only LIST     the sides to run (default all three)
  --scenarios L   the scenarios to run (default queue-add, queue-add-bulk,
                  worker-generic, worker-concurrent-10, worker-concurrent-100)
  --timeout SECS  how long one run may take before it counts as failed (default 600)
  --json FILE     also write the raw rounds and the medians as JSON (`-`: to stdout, after the table)";

/// What the command line asks for.
#[derive(Debug)]
struct Args {
    rounds: usize,
    jobs: usize,
    sides: Vec<Side>,
    scenarios: Vec<Scenario>,
    timeout: Duration,
    json: Option<String>,
}

/// Parses a comma-separated list with `parse`, naming `what` in errors.
fn list<T>(value: &str, what: &str, parse: impl Fn(&str) -> Option<T>) -> Result<Vec<T>, String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| parse(s).ok_or_else(|| format!("unknown {what} `{s}`")))
        .collect()
}

/// Parses the command line (without the program name).
fn parse_args(mut argv: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut args = Args {
        rounds: 3,
        jobs: 10_000,
        sides: Side::ALL.to_vec(),
        scenarios: Scenario::DEFAULT.to_vec(),
        timeout: Duration::from_secs(600),
        json: None,
    };
    while let Some(flag) = argv.next() {
        if flag == "-h" || flag == "--help" {
            return Err(String::new());
        }
        let value = argv.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let number = || -> Result<usize, String> {
            value
                .parse::<usize>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| format!("{flag} needs a positive number, not `{value}`"))
        };
        match flag.as_str() {
            "--rounds" => args.rounds = number()?,
            "--jobs" => args.jobs = number()?,
            "--timeout" => args.timeout = Duration::from_secs(number()? as u64),
            "--only" => args.sides = list(&value, "side", Side::parse)?,
            "--scenarios" => args.scenarios = list(&value, "scenario", Scenario::parse)?,
            "--json" => args.json = Some(value),
            _ => return Err(format!("unknown option {flag}")),
        }
    }
    if args.sides.is_empty() || args.scenarios.is_empty() {
        return Err("nothing to run".into());
    }
    Ok(args)
}

/// Runs one side once, on an emptied server, within `timeout`.
async fn run_once(
    server: &Server,
    scenario: Scenario,
    side: Side,
    round: usize,
    args: &Args,
) -> Result<Measured, BoxError> {
    server.flushall().await?;
    let run = async {
        match side {
            Side::Repobox => repobox_side::run(server, scenario, round, args.jobs).await,
            Side::Bullmq => bullmq_side::run(server, scenario, args.jobs, args.timeout).await,
            Side::Apalis => apalis_side::run(server, scenario, args.jobs).await,
        }
    };
    tokio::time::timeout(args.timeout, run)
        .await
        .map_err(|_| format!("did not finish within {:?}", args.timeout))?
}

/// Tells how one run went, on stderr.
fn log(run: &Run, rounds: usize) {
    let at = format!("[{} round {}/{rounds}] {:<7}", run.scenario, run.round, run.side.name());
    match &run.outcome {
        Outcome::Measured(m) => eprintln!(
            "{at} {:>9.0} jobs/s  {:>7.1} µs CPU/job  {:>6.2} commands/job",
            m.jobs_per_sec(),
            m.cpu_us_per_job(),
            m.commands_per_job()
        ),
        Outcome::NotApplicable(why) => eprintln!("{at} n/a: {why}"),
        Outcome::Failed(e) => eprintln!("{at} FAILED: {e}"),
    }
}

/// Runs every scenario, round and side, alternating sides within each round.
async fn bench(args: &Args) -> Result<(Vec<Run>, serde_json::Value), BoxError> {
    let server = Server::start().await?;
    let version = server.version().await?;
    eprintln!("redis-server {version} on 127.0.0.1:{}", server.port());
    if args.sides.contains(&Side::Bullmq) {
        bullmq_side::prepare().await?;
    }
    let mut runs = Vec::new();
    for &scenario in &args.scenarios {
        for round in 1..=args.rounds {
            for side in Side::ALL.into_iter().filter(|s| args.sides.contains(s)) {
                let outcome = match run_once(&server, scenario, side, round, args).await {
                    Ok(m) => Outcome::Measured(m),
                    Err(e) => match e.downcast::<NotApplicable>() {
                        Ok(why) => Outcome::NotApplicable(why.0),
                        Err(e) => Outcome::Failed(e.to_string()),
                    },
                };
                let run = Run {
                    scenario,
                    side,
                    round,
                    outcome,
                };
                log(&run, args.rounds);
                runs.push(run);
            }
        }
    }
    server.flushall().await?;
    let context = serde_json::json!({
        "redis_version": version,
        "jobs": args.jobs,
        "rounds": args.rounds,
        "bulk": model::BULK,
    });
    Ok((runs, context))
}

/// Parses the options, runs the rounds, prints the table (and the JSON).
fn main() -> ExitCode {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(args) => args,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("{e}\n");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(if e.is_empty() { 0 } else { 2 });
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let (runs, context) = match runtime.block_on(bench(&args)) {
        Ok(done) => done,
        Err(e) => {
            eprintln!("queue-peers: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!(
        "{} jobs per run, median of {} round(s); jobs/s higher is better, CPU and commands lower are better\n",
        args.jobs, args.rounds
    );
    print!("{}", report::table(&runs, &args.scenarios));
    if let Some(path) = &args.json {
        let doc = report::json(&runs, &args.scenarios, context);
        let text = serde_json::to_string_pretty(&doc).expect("JSON of plain values");
        if path == "-" {
            println!("\n{text}");
        } else if let Err(e) = std::fs::write(path, text + "\n") {
            eprintln!("queue-peers: cannot write {path}: {e}");
            return ExitCode::FAILURE;
        }
    }
    let failed = runs.iter().filter(|r| matches!(r.outcome, Outcome::Failed(_))).count();
    if failed > 0 {
        eprintln!("queue-peers: {failed} run(s) failed; see above");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
