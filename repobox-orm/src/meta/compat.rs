//! Schema compatibility: what changed between a committed wire schema and
//! the current one ([`EntityMeta::schema`](super::EntityMeta::schema) for
//! each model, in a JSON document's `models`), each change classified as
//! compatible (hashes written before still read, clients that follow the
//! old schema still work) or breaking. `repobox schema --check` prints it.
//!
//! Compatible: a new model, a new optional field, a field made optional, a
//! renamed field or enum value whose old name is an alias, a new alias, a
//! new enum value, a new index, another TTL. Breaking: a removed model,
//! field, alias or enum value (without an alias that keeps it readable), a
//! field of another type or another encryption, a field made required, a
//! new required field, a changed key template, a removed or changed index.
//! Other sections of the document (streams, protocols) are compared as
//! they are: an addition (a key, or items added to a list) is compatible,
//! a removal or a change breaking. [`validate`] refuses a document of
//! another shape.

use serde_json::{Map, Value};

/// How a change affects data written before and clients of the old schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Compat {
    /// Both keep working.
    Compatible,
    /// Old data or old clients break.
    Breaking,
}

/// One difference between two schemas.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Change {
    /// Compatible or breaking.
    pub compat: Compat,
    /// Where: `Job`, `Job.exit_code`, `Job.index.by_user_id`, `streams`.
    pub at: String,
    /// What changed, in words.
    pub change: String,
}

fn push(out: &mut Vec<Change>, compat: Compat, at: impl Into<String>, change: impl Into<String>) {
    out.push(Change {
        compat,
        at: at.into(),
        change: change.into(),
    });
}

/// The changes from the schema document `old` to `new`, models first.
pub fn compare(old: &Value, new: &Value) -> Vec<Change> {
    let mut out = Vec::new();
    compare_models(&mut out, &old["models"], &new["models"]);
    let (empty_old, empty_new) = (Map::new(), Map::new());
    let old_map = old.as_object().unwrap_or(&empty_old);
    let new_map = new.as_object().unwrap_or(&empty_new);
    for (name, before) in old_map.iter().filter(|(n, _)| *n != "models") {
        match new_map.get(name) {
            Some(after) => compare_as_is(&mut out, name, before, after),
            None => push(&mut out, Compat::Breaking, name, "removed"),
        }
    }
    for name in new_map.keys().filter(|n| *n != "models" && !old_map.contains_key(*n)) {
        push(&mut out, Compat::Compatible, name, "added");
    }
    out
}

/// A section that is not a model: objects key by key, anything else whole.
fn compare_as_is(out: &mut Vec<Change>, at: &str, old: &Value, new: &Value) {
    match (old, new) {
        (Value::Object(o), Value::Object(n)) => {
            for (k, before) in o {
                let here = format!("{at}.{k}");
                match n.get(k) {
                    Some(after) => compare_as_is(out, &here, before, after),
                    None => push(out, Compat::Breaking, here, "removed"),
                }
            }
            for k in n.keys().filter(|k| !o.contains_key(*k)) {
                push(out, Compat::Compatible, format!("{at}.{k}"), "added");
            }
        }
        // A list that only gained items: each is an addition.
        (Value::Array(o), Value::Array(n)) if o.iter().all(|item| n.contains(item)) => {
            for item in n.iter().filter(|item| !o.contains(item)) {
                push(out, Compat::Compatible, at, format!("added {item}"));
            }
        }
        _ if old == new => {}
        _ => push(out, Compat::Breaking, at, format!("changed from {old} to {new}")),
    }
}

/// Checks that `schema` has the shape [`compare`] reads (what `repobox
/// schema` prints): every model, field and index named, a field's type a
/// string and its `optional` a boolean, lists where lists are expected.
/// A document that does not is refused, never read as one with fewer
/// fields (which would hide what it had).
///
/// # Errors
///
/// A message naming the first place where `schema` does not have that shape.
pub fn validate(schema: &Value) -> std::result::Result<(), String> {
    let models = schema["models"].as_array().ok_or("`models` is not a list")?;
    for (m, model) in models.iter().enumerate() {
        let name = model["name"].as_str().ok_or(format!("model {m} has no name"))?;
        model["key"]
            .as_str()
            .ok_or(format!("model `{name}` has no key template"))?;
        let fields = model["fields"]
            .as_array()
            .ok_or(format!("model `{name}`: `fields` is not a list"))?;
        for (i, f) in fields.iter().enumerate() {
            let field = f["name"]
                .as_str()
                .ok_or(format!("model `{name}`: field {i} has no name"))?;
            let at = format!("`{name}.{field}`");
            f["type"].as_str().ok_or(format!("{at} has no type"))?;
            f["optional"]
                .as_bool()
                .ok_or(format!("{at}: `optional` is not true or false"))?;
            for list in ["values", "aliases"] {
                if !f[list].is_null() && !f[list].as_array().is_some_and(|a| a.iter().all(Value::is_string)) {
                    return Err(format!("{at}: `{list}` is not a list of strings"));
                }
            }
            if !f["value_aliases"].is_null()
                && !f["value_aliases"]
                    .as_object()
                    .is_some_and(|o| o.values().all(Value::is_string))
            {
                return Err(format!("{at}: `value_aliases` is not a map of strings"));
            }
        }
        let indexes = model["indexes"]
            .as_array()
            .ok_or(format!("model `{name}`: `indexes` is not a list"))?;
        for (i, ix) in indexes.iter().enumerate() {
            ix["name"]
                .as_str()
                .ok_or(format!("model `{name}`: index {i} has no name"))?;
        }
    }
    Ok(())
}

fn by_name(list: &Value) -> Vec<(&str, &Value)> {
    list.as_array()
        .map(|items| items.iter().filter_map(|m| Some((m["name"].as_str()?, m))).collect())
        .unwrap_or_default()
}

fn compare_models(out: &mut Vec<Change>, old: &Value, new: &Value) {
    let (old, new) = (by_name(old), by_name(new));
    for (name, before) in &old {
        match new.iter().find(|(n, _)| n == name) {
            Some((_, after)) => compare_model(out, name, before, after),
            None => push(out, Compat::Breaking, *name, "model removed"),
        }
    }
    for (name, _) in new.iter().filter(|(n, _)| !old.iter().any(|(o, _)| o == n)) {
        push(out, Compat::Compatible, *name, "new model");
    }
}

fn compare_model(out: &mut Vec<Change>, model: &str, old: &Value, new: &Value) {
    if old["key"] != new["key"] {
        // A re-key in progress still breaks other clients, which must read
        // the new key; this crate reads both while `previous` names the old.
        let detail = match new["previous_key"] == old["key"] {
            true => {
                "every entity moves (a re-key migration); readers built on this schema find an entity under either key until it has moved, other clients must read the new key"
            }
            false => "every entity moves (a re-key migration)",
        };
        push(
            out,
            Compat::Breaking,
            model,
            format!("key template changed from {} to {}: {detail}", old["key"], new["key"]),
        );
    }
    match (old["co_located"].as_bool(), new["co_located"].as_bool()) {
        (Some(true), Some(false)) => push(
            out,
            Compat::Breaking,
            model,
            "no longer co-located: on a cluster its writes become ordered steps instead of one atomic script",
        ),
        (Some(false), Some(true)) => push(out, Compat::Compatible, model, "now co-located"),
        _ => {}
    }
    if old["ttl_ms"] != new["ttl_ms"] {
        push(
            out,
            Compat::Compatible,
            model,
            format!("TTL changed from {} to {} ms", old["ttl_ms"], new["ttl_ms"]),
        );
    }
    let (old_fields, new_fields) = (by_name(&old["fields"]), by_name(&new["fields"]));
    let aliases_of = |f: &Value| -> Vec<String> {
        f["aliases"]
            .as_array()
            .map(|a| a.iter().filter_map(|s| s.as_str().map(str::to_owned)).collect())
            .unwrap_or_default()
    };
    let mut matched: Vec<&str> = Vec::new();
    for (name, before) in &old_fields {
        let at = format!("{model}.{name}");
        if let Some((_, after)) = new_fields.iter().find(|(n, _)| n == name) {
            matched.push(name);
            compare_field(out, &at, before, after, None);
            continue;
        }
        // A rename: a new field that reads this name as an alias, and that
        // was not a field of its own before (then this one's values would
        // be lost: every write of it deletes its aliases).
        let renamed = new_fields
            .iter()
            .find(|(n, f)| aliases_of(f).iter().any(|a| a == name) && !old_fields.iter().any(|(o, _)| o == n));
        match renamed {
            Some((renamed, after)) => {
                matched.push(renamed);
                push(
                    out,
                    Compat::Compatible,
                    &at,
                    format!("renamed to `{renamed}`, which reads `{name}` (an alias)"),
                );
                compare_field(out, &format!("{model}.{renamed}"), before, after, Some(name));
            }
            None => push(
                out,
                Compat::Breaking,
                &at,
                "field removed, and no field reads it as an alias",
            ),
        }
    }
    for (name, after) in new_fields.iter().filter(|(n, _)| !matched.contains(n)) {
        let at = format!("{model}.{name}");
        if after["optional"].as_bool() == Some(true) {
            push(out, Compat::Compatible, at, "new optional field");
        } else {
            push(
                out,
                Compat::Breaking,
                at,
                "new required field: hashes written before do not have it",
            );
        }
    }
    compare_indexes(out, model, &old["indexes"], &new["indexes"]);
}

/// `renamed_from`: the old name the field was matched by, an alias of the
/// new one, which is not a new alias of its own.
fn compare_field(out: &mut Vec<Change>, at: &str, old: &Value, new: &Value, renamed_from: Option<&str>) {
    if old["type"] != new["type"] {
        push(
            out,
            Compat::Breaking,
            at,
            format!("type changed from {} to {}", old["type"], new["type"]),
        );
    }
    match (old["optional"].as_bool(), new["optional"].as_bool()) {
        (Some(true), Some(false)) => push(
            out,
            Compat::Breaking,
            at,
            "made required: hashes without it no longer read",
        ),
        (Some(false), Some(true)) => push(out, Compat::Compatible, at, "made optional"),
        _ => {}
    }
    if old["encrypted"] != new["encrypted"] {
        push(
            out,
            Compat::Breaking,
            at,
            "encryption changed: stored values no longer read",
        );
    }
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .map(|a| a.iter().filter_map(|s| s.as_str().map(str::to_owned)).collect())
            .unwrap_or_default()
    };
    for alias in strings(&old["aliases"])
        .iter()
        .filter(|a| !strings(&new["aliases"]).contains(a))
    {
        push(
            out,
            Compat::Breaking,
            at,
            format!("alias `{alias}` removed: hashes that still hold it no longer read"),
        );
    }
    for alias in strings(&new["aliases"])
        .iter()
        .filter(|a| !strings(&old["aliases"]).contains(a) && Some(a.as_str()) != renamed_from)
    {
        push(out, Compat::Compatible, at, format!("new alias `{alias}`"));
    }
    let (old_values, new_values) = (strings(&old["values"]), strings(&new["values"]));
    let new_aliases = new["value_aliases"].as_object();
    for value in old_values.iter().filter(|v| !new_values.contains(v)) {
        match new_aliases.and_then(|a| a.get(value)) {
            Some(to) => push(
                out,
                Compat::Compatible,
                at,
                format!("enum value `{value}` renamed to {to}, which reads it"),
            ),
            None => push(
                out,
                Compat::Breaking,
                at,
                format!("enum value `{value}` removed, and no value reads it as an alias"),
            ),
        }
    }
    for value in new_values.iter().filter(|v| !old_values.contains(v)) {
        push(out, Compat::Compatible, at, format!("new enum value `{value}`"));
    }
    let old_value_aliases = old["value_aliases"].as_object();
    for (alias, _) in old_value_aliases.into_iter().flatten() {
        if new_aliases.is_none_or(|a| !a.contains_key(alias)) && !new_values.contains(alias) {
            push(
                out,
                Compat::Breaking,
                at,
                format!("enum alias `{alias}` removed: hashes that still hold it no longer read"),
            );
        }
    }
    for (alias, _) in new_aliases.into_iter().flatten() {
        if old_value_aliases.is_none_or(|a| !a.contains_key(alias)) && !old_values.contains(alias) {
            push(out, Compat::Compatible, at, format!("new enum alias `{alias}`"));
        }
    }
}

/// Whether two index declarations are the same but for the `previous_key`
/// a re-key leaves behind (which changes nothing another client reads).
fn same_index(old: &Value, new: &Value) -> bool {
    let strip = |v: &Value| {
        let mut v = v.clone();
        if let Some(m) = v.as_object_mut() {
            m.remove("previous_key");
        }
        v
    };
    strip(old) == strip(new)
}

fn compare_indexes(out: &mut Vec<Change>, model: &str, old: &Value, new: &Value) {
    let (old, new) = (by_name(old), by_name(new));
    for (name, before) in &old {
        let at = format!("{model}.index.{name}");
        match new.iter().find(|(n, _)| n == name) {
            Some((_, after)) if same_index(before, after) => {}
            // A re-key of the index's template in progress still breaks
            // other clients, which must read the new keys.
            Some((_, after)) if after["previous_key"] == before["key"] => push(
                out,
                Compat::Breaking,
                at,
                format!(
                    "key template changed from {} to {}: its entries move (a re-key migration); readers built \
                     on this schema read both keys until they have moved, other clients must read the new one",
                    before["key"], after["key"]
                ),
            ),
            Some((_, after)) => push(
                out,
                Compat::Breaking,
                at,
                format!("changed from {before} to {after}: its entries must be moved (a migration)"),
            ),
            None => push(
                out,
                Compat::Breaking,
                at,
                "index removed: clients that read it see it go stale",
            ),
        }
    }
    for (name, _) in new.iter().filter(|(n, _)| !old.iter().any(|(o, _)| o == n)) {
        push(
            out,
            Compat::Compatible,
            format!("{model}.index.{name}"),
            "new index: entities written before are not in it until it is backfilled",
        );
    }
}
