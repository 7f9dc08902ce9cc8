//! `repobox schema`: the wire schema, and `--check FILE`, its compatibility
//! with a committed one (`repobox_orm::meta::compat`).

use anyhow::Context;
use repobox_orm::meta::compat::{Compat, compare, validate};

use crate::cli::SchemaArgs;
use crate::output::json_line;

/// A check that found breaking changes: the report is printed, and the
/// process exits with [`Breaking::EXIT_CODE`] so that a CI job fails on it.
#[derive(Debug)]
pub struct Breaking {
    /// How many changes break.
    pub count: usize,
}

impl Breaking {
    /// The exit code of a check that found a breaking change.
    pub const EXIT_CODE: u8 = 4;
}

impl std::fmt::Display for Breaking {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} breaking schema change(s)", self.count)
    }
}

impl std::error::Error for Breaking {}

/// Prints the schema, or compares it with `--check`'s file.
pub fn schema(args: &SchemaArgs, json: bool) -> anyhow::Result<()> {
    let current = repobox_models::schema();
    let Some(path) = &args.check else {
        println!("{}", serde_json::to_string_pretty(&current)?);
        return Ok(());
    };
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let committed: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not a JSON schema", path.display()))?;
    if let Err(why) = validate(&committed) {
        anyhow::bail!("{} is not a schema `repobox schema` printed: {why}", path.display());
    }
    let changes = compare(&committed, &current);
    let breaking = changes.iter().filter(|c| c.compat == Compat::Breaking).count();
    if json {
        println!(
            "{}",
            json_line(&serde_json::json!({
                "breaking": breaking,
                "compatible": changes.len() - breaking,
                "changes": changes,
            }))
        );
    } else {
        for c in &changes {
            let kind = match c.compat {
                Compat::Breaking => "breaking  ",
                Compat::Compatible => "compatible",
            };
            println!("{kind}  {}: {}", c.at, c.change);
        }
        match (changes.len(), breaking) {
            (0, _) => println!("no changes from {}", path.display()),
            (n, 0) => println!("{n} compatible change(s) from {}", path.display()),
            (n, b) => println!("{n} change(s) from {}, {b} breaking", path.display()),
        }
    }
    if breaking > 0 {
        return Err(Breaking { count: breaking }.into());
    }
    Ok(())
}
