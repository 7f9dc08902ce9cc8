//! `repobox`: the demo, the job runner, and inspection of jobs, the queue and indexes.
//!
//! - `cli`: what the command line accepts;
//! - `commands`: one file per command;
//! - `output`: tables and JSON;
//! - `redact`: what may be shown of a Redis URL, in messages and logs;
//! - `handler`: the demo handler (`demo`, `runner --demo`);
//! - `embedded`: the demo's throw-away `redis-server`;
//! - `web`: `repobox web`, the web UI and `/metrics`.
//!
//! Exit codes: 0 success, 1 a command that failed (Redis unreachable, a job
//! not found, ...), 2 a usage error (clap's code), 3 `index check` found
//! entries to repair, unique conflicts or bad members (`index repair`: left
//! conflicts or bad members for a person), 4 `schema --check` found a
//! breaking change. With `--json` every error is one JSON object on stderr: `{"error": "...", "kind": "usage" |
//! "unreachable" | "error"}`.

mod cli;
mod commands;
#[cfg(feature = "embedded-redis")]
mod embedded;
mod handler;
mod metrics;
mod output;
mod progress;
mod redact;
mod web;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use clap::error::ErrorKind;
use serde_json::json;

use crate::redact::{ScrubbedStderr, Scrubber};

fn main() -> ExitCode {
    let scrubber = Scrubber::from_process();
    let cli = match cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(&e, wants_json(), &scrubber),
    };
    let json = cli.json;
    hide_secrets_from_proc();
    if !matches!(
        cli.command,
        cli::Command::Runner(_) | cli::Command::Demo(_) | cli::Command::Web(_)
    ) {
        end_quietly_on_a_closed_pipe();
    }
    init_logs(&cli, &scrubber);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            report(
                &format!("cannot start the async runtime: {e}"),
                "error",
                json,
                &scrubber,
            );
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(commands::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        // The report is printed; the code is what a cron job alerts on.
        Err(e) if e.downcast_ref::<commands::index::Findings>().is_some() => {
            ExitCode::from(commands::index::Findings::EXIT_CODE)
        }
        Err(e) if e.downcast_ref::<commands::migrate::Unfinished>().is_some() => {
            ExitCode::from(commands::migrate::Unfinished::EXIT_CODE)
        }
        Err(e) if e.downcast_ref::<commands::schema::Breaking>().is_some() => {
            ExitCode::from(commands::schema::Breaking::EXIT_CODE)
        }
        Err(e) => {
            let kind = if commands::is_unreachable(&e) {
                "unreachable"
            } else {
                "error"
            };
            report(&one_line(&e), kind, json, &scrubber);
            ExitCode::FAILURE
        }
    }
}

/// A short-lived command whose reader went away (`repobox queue stats |
/// head -3`) ends as Unix tools do, by SIGPIPE, instead of a panic in
/// `println!` (Rust ignores SIGPIPE by default). The daemons (`runner`,
/// `demo`) keep ignoring it: a closed socket is an error to handle there.
fn end_quietly_on_a_closed_pipe() {
    use nix::sys::signal::{SigHandler, Signal, signal};
    // SAFETY: no other thread runs yet, and the default action replaces
    // no handler of this program's.
    if let Err(e) = unsafe { signal(Signal::SIGPIPE, SigHandler::SigDfl) } {
        tracing::debug!(error = %e, "could not restore SIGPIPE's default action");
    }
}

/// The environment variables whose values are secrets.
const SECRET_VARS: [&str; 3] = ["REDIS_URL", repobox_orm::crypto::KEYS_ENV, "REPOBOX_WEB_TOKEN"];

/// Overwrites the values of [`SECRET_VARS`] in the environment block the
/// process started with, which `/proc/<pid>/environ` shows to processes of
/// the same user (a runner's jobs) and to root, and keeps them for this
/// process in a copy only it reads. (`runner` also makes itself
/// non-dumpable, which closes `/proc/<pid>/mem` and `environ` to its jobs.)
fn hide_secrets_from_proc() {
    #[cfg(target_os = "linux")]
    for name in SECRET_VARS {
        let Some(value) = std::env::var_os(name) else {
            continue;
        };
        let prefix = format!("{name}=");
        // SAFETY: this runs at the start of `main`, before the runtime or
        // any other thread exists, so nothing reads the environment while it
        // changes. `environ` is the C library's null-terminated array of
        // pointers to NUL-terminated strings; the bytes written are within
        // each string's value, and the string stays NUL-terminated.
        unsafe {
            let mut entry = nix::libc::environ;
            while !entry.is_null() && !(*entry).is_null() {
                let text = std::ffi::CStr::from_ptr(*entry).to_bytes();
                if let Some(secret) = text.strip_prefix(prefix.as_bytes()) {
                    std::ptr::write_bytes((*entry).add(prefix.len()), b'*', secret.len());
                }
                entry = entry.add(1);
            }
            // A fresh copy for this process; the block keeps the stars.
            std::env::set_var(name, &value);
        }
    }
}

/// Log lines on stderr, through the scrubber: the daemon (`runner`) says what
/// it does at `info` by default, the other commands nothing unless
/// `REPOBOX_LOG` asks; `--log-format json` (the default with `--json`)
/// makes each line a JSON object.
fn init_logs(cli: &cli::Cli, scrubber: &Scrubber) {
    // The runner's own lines say when Redis is lost and back, once per
    // outage: the store's line per reconnect attempt is not wanted there.
    let default = if matches!(cli.command, cli::Command::Runner(_) | cli::Command::Web(_)) {
        "info,repobox::store=error"
    } else {
        "off"
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("REPOBOX_LOG").unwrap_or_else(|_| default.into());
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(ScrubbedStderr::new(scrubber.clone()));
    let format = cli.log_format.unwrap_or(if cli.json {
        cli::LogFormat::Json
    } else {
        cli::LogFormat::Text
    });
    match format {
        cli::LogFormat::Json => logs.json().flatten_event(true).init(),
        cli::LogFormat::Text => logs.with_ansi(std::io::stderr().is_terminal()).init(),
    }
}

/// Whether the arguments that clap refused ask for JSON: `--json` is among them.
fn wants_json() -> bool {
    std::env::args_os().any(|a| a == "--json")
}

/// Prints an error on stderr: one line, or one JSON object with `--json`;
/// never a secret of a URL the process was given, never a control character.
fn report(message: &str, kind: &str, json: bool, scrubber: &Scrubber) {
    let message = scrubber.scrub(message);
    if json {
        eprintln!("{}", output::json_line(&json!({ "error": message, "kind": kind })));
    } else {
        eprintln!("error: {}", output::clean(&message));
    }
}

/// clap's error, or its `--help` and `--version`: those print as clap prints
/// them; with `--json` an argument error is one JSON object. Exit code 2
/// (clap's), 0 for help and version.
fn usage_error(e: &clap::Error, json: bool, scrubber: &Scrubber) -> ExitCode {
    let code = ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(2));
    let informational = matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion);
    let text = e.render().to_string();
    if json && !informational {
        report(&usage_message(e.kind(), &text), "usage", true, scrubber);
        return code;
    }
    let scrubbed = scrubber.scrub(&text);
    if scrubbed == text {
        // In colour where clap would colour it.
        let _ = e.print();
    } else {
        eprint!("{scrubbed}");
    }
    code
}

/// clap's message on one line: its first paragraph, without `error: `.
fn usage_message(kind: ErrorKind, text: &str) -> String {
    if kind == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
        return "a subcommand is required (see --help)".to_owned();
    }
    let first = text.split("\n\n").next().unwrap_or(text);
    let first = first.strip_prefix("error: ").unwrap_or(first);
    first.split_whitespace().collect::<Vec<_>>().join(" ")
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
