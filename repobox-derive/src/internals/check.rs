//! Cross-field rules, one function per rule. Type properties (a key part is a
//! `KeyPart`, a score a `Score`) are not checked here but asserted with
//! spanned trait bounds in the expansion, so they hold for any spelling of a type.

use super::ast::{Entity, Index, IndexKind, Template, is_written_as_option};
use super::ctxt::Ctxt;
use super::names;
use super::unraw::unraw;

pub fn check(cx: &Ctxt, entity: &Entity<'_>) {
    check_key_has_placeholder(cx, &entity.key);
    check_placeholders(cx, entity, &entity.key, "key");
    if let Some(previous) = &entity.previous {
        check_previous(cx, entity, previous);
    }
    for index in &entity.indexes {
        check_placeholders(cx, entity, &index.template, "index");
        if let IndexKind::Sorted { score, ident } = &index.kind {
            check_score(cx, entity, *score, ident);
        }
        if let Some(previous) = &index.previous {
            check_index_previous(cx, entity, index, previous);
        }
    }
    check_index_names(cx, entity);
    check_co_located(cx, entity);
    check_wire_names(cx, entity);
    check_aliases(cx, entity);
    check_optional_default(cx, entity);
}

// A key has at least one placeholder: a constant key would make every entity the same hash.
fn check_key_has_placeholder(cx: &Ctxt, key: &Template) {
    if key.placeholders().next().is_none() {
        cx.error_at(
            key.span,
            format!("key template `{}` needs at least one `<field>` placeholder", key.source),
        );
    }
}

// A previous key template is another template whose placeholders are key
// parts of the key: a read or a write builds the previous key from the key's
// parts alone.
fn check_previous(cx: &Ctxt, entity: &Entity<'_>, previous: &Template) {
    check_key_has_placeholder(cx, previous);
    check_placeholders(cx, entity, previous, "previous key");
    if previous.source == entity.key.source {
        cx.error_at(
            previous.span,
            format!("previous key template `{}` is the key template itself", previous.source),
        );
    }
    if let Some(f) = entity.fields.iter().find(|f| f.is_stored() && f.encrypted) {
        cx.error_at(
            previous.span,
            format!(
                "a re-key (`previous`) cannot move `{}`: an encrypted field's seal binds the entity's key, \
                 so a moved hash would no longer open",
                unraw(f.ident)
            ),
        );
    }
    // With as many parts as the key, one id (parts joined by `:`) names a
    // key of each template: only the same parts in the same order name the
    // same entity.
    let (mine, theirs): (Vec<usize>, Vec<usize>) =
        (previous.placeholders().collect(), entity.key.placeholders().collect());
    if mine.len() == theirs.len() && mine != theirs && mine.iter().all(|i| theirs.contains(i)) {
        cx.error_at(
            previous.span,
            format!(
                "previous key template `{}` takes the key's parts in another order: an id would name two entities",
                previous.source
            ),
        );
    }
    for i in previous.placeholders() {
        if !entity.key.placeholders().any(|k| k == i) {
            let name = unraw(entity.fields[i].ident);
            cx.error_at(
                previous.span,
                format!(
                    "placeholder `<{name}>` of previous key template `{}` is not a placeholder of the key `{}`: \
                     the previous key is built from the key's parts",
                    previous.source, entity.key.source
                ),
            );
        }
    }
}

// A placeholder appears once per template, names a stored field that is not
// JSON, and does not shadow a parameter of the generated functions.
fn check_placeholders(cx: &Ctxt, entity: &Entity<'_>, template: &Template, what: &str) {
    let mut seen = Vec::new();
    for i in template.placeholders() {
        let f = &entity.fields[i];
        let name = unraw(f.ident);
        if seen.contains(&i) {
            cx.error_at(
                template.span,
                format!(
                    "placeholder `<{name}>` appears twice in {what} template `{}`",
                    template.source
                ),
            );
            continue;
        }
        seen.push(i);
        if names::PARAMS.contains(&name.as_str()) {
            cx.error_at(
                template.span,
                format!("placeholder `<{name}>` clashes with a parameter of the generated functions; rename the field"),
            );
        }
        let problem = if f.skip {
            Some("a `skip` field")
        } else if f.json {
            Some("a `json` field")
        } else if f.encrypted {
            Some("an `encrypted` field (its stored value differs on every write)")
        } else {
            None
        };
        if let Some(problem) = problem {
            cx.error_at(
                template.span,
                format!(
                    "placeholder `<{name}>` in {what} template `{}` is {problem}",
                    template.source
                ),
            );
            cx.error_spanned_by(f.ident, format!("`{name}` is used as a key part here"));
        }
    }
}

// A previous index template takes the same placeholders as the index's (a
// query builds both keys from its arguments, and an entity is listed under
// the previous key only for the values it is asked for), and is another
// template. A unique index has none: its claim must be taken under one key.
fn check_index_previous(cx: &Ctxt, entity: &Entity<'_>, index: &Index, previous: &Template) {
    if matches!(index.kind, IndexKind::Unique) {
        cx.error_at(
            previous.span,
            "a unique index cannot take `previous`: a value is claimed under one key only; \
             declare the unique index under its new template with another `name`, backfill it \
             (`Step::backfill_index`), then drop the old one (`Step::drop_index`)",
        );
        return;
    }
    check_placeholders(cx, entity, previous, "previous index");
    if previous.source == index.template.source {
        cx.error_at(
            previous.span,
            format!(
                "previous index template `{}` is the index template itself",
                previous.source
            ),
        );
    }
    let mut mine: Vec<usize> = previous.placeholders().collect();
    let mut theirs: Vec<usize> = index.template.placeholders().collect();
    mine.sort_unstable();
    theirs.sort_unstable();
    if mine != theirs {
        cx.error_at(
            previous.span,
            format!(
                "previous index template `{}` must take the placeholders of `{}`, no more and no fewer: \
                 a query reads both keys with the same arguments",
                previous.source, index.template.source
            ),
        );
    }
}

// The score of a sorted index is a stored field, not JSON.
fn check_score(cx: &Ctxt, entity: &Entity<'_>, score: usize, ident: &syn::Ident) {
    let f = &entity.fields[score];
    if f.skip || f.json || f.encrypted {
        cx.error_spanned_by(
            ident,
            format!("score field `{ident}` must be stored as a number (not `skip`, `json` or `encrypted`)"),
        );
    }
}

// Two indexes may not generate the same function, nor one the derive already generates.
fn check_index_names(cx: &Ctxt, entity: &Entity<'_>) {
    let mut seen: Vec<String> = Vec::new();
    for index in &entity.indexes {
        let name = index.name(entity);
        if syn::parse_str::<syn::Ident>(&name).is_err() {
            cx.error_at(index.name_span(), format!("index name `{name}` is not an identifier"));
        } else if seen.contains(&name) {
            cx.error_at(
                index.name_span(),
                format!("index name `{name}` collides with another index; give one of them `name = \"...\"`"),
            );
        } else if let Some(clash) = names::index_name_clash(&name) {
            cx.error_at(index.name_span(), clash);
        }
        seen.push(name);
    }
}

// With `#[cluster(co_located)]`, the key has a hash tag and every index
// template has the same one, so that every write touches one slot.
fn check_co_located(cx: &Ctxt, entity: &Entity<'_>) {
    if !entity.require_co_located {
        return;
    }
    if entity.key.hash_tag().is_none() {
        cx.error_at(
            entity.key.span,
            format!(
                "`#[cluster(co_located)]` needs a hash tag in the key template `{}`, e.g. `job:{{<user_id>}}:<id>`",
                entity.key.source
            ),
        );
        return;
    }
    for index in entity.indexes.iter().filter(|ix| !entity.shares_slot(&ix.template)) {
        cx.error_at(
            index.template.span,
            format!(
                "index template `{}` is not in the key's slot: `#[cluster(co_located)]` needs the same hash tag as `{}`",
                index.template.source, entity.key.source
            ),
        );
    }
}

// Every stored field has its own hash field name.
fn check_wire_names(cx: &Ctxt, entity: &Entity<'_>) {
    let mut seen: Vec<&str> = Vec::new();
    for f in entity.fields.iter().filter(|f| f.is_stored()) {
        if seen.contains(&f.wire.as_str()) {
            cx.error_spanned_by(f.ident, format!("hash field name `{}` is used by two fields", f.wire));
        }
        seen.push(&f.wire);
    }
}

// An alias names no other stored field and no other alias, and is not on
// a field that decides a key or an index entry: an entity's index entries
// are found by the field's own name.
fn check_aliases(cx: &Ctxt, entity: &Entity<'_>) {
    let mut seen: Vec<String> = Vec::new();
    for (i, f) in entity.fields.iter().enumerate().filter(|(_, f)| f.is_stored()) {
        for alias in &f.aliases {
            let name = alias.value();
            if let Some(other) = entity.fields.iter().find(|o| o.is_stored() && o.wire == name) {
                cx.error_spanned_by(
                    alias,
                    format!("alias `{name}` is the hash field name of `{}`", unraw(other.ident)),
                );
            } else if seen.contains(&name) {
                cx.error_spanned_by(alias, format!("alias `{name}` is used twice"));
            }
            seen.push(name);
        }
        if let Some(alias) = f.aliases.first()
            && f.encrypted
        {
            cx.error_spanned_by(
                alias,
                format!(
                    "`{}` is encrypted under its own name: it cannot have an alias",
                    unraw(f.ident)
                ),
            );
        }
        if let Some(alias) = f.aliases.first()
            && entity.uses_field(i)
        {
            cx.error_spanned_by(
                alias,
                format!(
                    "`{}` decides a key or an index entry, which are found by its own name: it cannot have an alias",
                    unraw(f.ident)
                ),
            );
        }
    }
}

// `default` on an `Option` says nothing: an absent `Option` is already `None`.
fn check_optional_default(cx: &Ctxt, entity: &Entity<'_>) {
    for f in &entity.fields {
        if f.default && is_written_as_option(f.ty) && !f.json {
            cx.error_spanned_by(f.ident, "`default` on an `Option` field is redundant: absent is `None`");
        }
    }
}
