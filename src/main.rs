//! `repobox`: the demo, the job runner, and inspection of jobs, the queue and indexes.
//!
//! - `cli`: what the command line accepts;
//! - `commands`: one file per command;
//! - `output`: tables and JSON;
//! - `handler`: the runner's built-in demo handler;
//! - `embedded`: the demo's throw-away `redis-server`.

mod cli;
mod commands;
#[cfg(feature = "embedded-redis")]
mod embedded;
mod handler;
mod output;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("REPOBOX_LOG").unwrap_or_else(|_| "off".into()))
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let json = wants_json();
    match runtime.block_on(commands::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let message = output::clean(&one_line(&e));
            if json {
                eprintln!("{}", serde_json::json!({ "error": message }));
            } else {
                eprintln!("error: {message}");
            }
            ExitCode::FAILURE
        }
    }
}

/// Whether the command was asked for JSON: its errors are JSON too.
fn wants_json() -> bool {
    std::env::args_os().any(|a| a == "--json")
}

/// The error and its causes on one line, without repeating a cause that the
/// message before it already says.
fn one_line(e: &anyhow::Error) -> String {
    let mut out: Vec<String> = Vec::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if !out.last().is_some_and(|prev| prev.contains(&text)) {
            out.push(text);
        }
    }
    out.join(": ")
}
