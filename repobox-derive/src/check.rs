//! Cross-field rules, one function per rule.

use crate::ast::{Entity, Field, IndexKind, is_option, type_name};
use crate::ctxt::Ctxt;
use crate::template::KeyTemplate;

const INTEGERS: &[&str] = &[
    "i8", "i16", "i32", "i64", "i128", "isize", "u8", "u16", "u32", "u64", "u128", "usize",
];

/// Names the derive generates on the entity; an index may not take one of them.
const GENERATED: &[&str] = &[
    "key_for",
    "key",
    "entity_id",
    "create",
    "save",
    "get",
    "get_many",
    "update",
    "delete",
    "exists",
    "ttl",
    "expire_in",
    "create_many",
    "save_many",
    "delete_many",
];

/// Parameter names the generated functions use besides placeholders.
const PARAMS: &[&str] = &["conn", "page", "patch", "ttl", "entity", "ids", "entities"];

pub fn check(cx: &mut Ctxt, entity: &Entity<'_>) {
    if let Some(key) = &entity.key {
        check_key_has_placeholder(cx, key);
        check_placeholders(cx, entity, key, "key");
    }
    for index in &entity.indexes {
        check_placeholders(cx, entity, &index.template, "index");
        if let IndexKind::Sorted { score } = &index.kind {
            check_score(cx, entity, score);
        }
    }
    check_index_names(cx, entity);
    check_wire_names(cx, entity);
    check_optional_default(cx, entity);
}

fn field<'e, 'a>(entity: &'e Entity<'a>, name: &str) -> Option<&'e Field<'a>> {
    entity
        .fields
        .iter()
        .find(|f| *f.ident == name || f.ident.to_string().trim_start_matches("r#") == name)
}

// A key has at least one placeholder: a constant key would make every entity the same hash.
fn check_key_has_placeholder(cx: &mut Ctxt, key: &KeyTemplate) {
    if key.placeholders().next().is_none() {
        cx.error_at(
            key.span,
            format!("key template `{}` needs at least one `<field>` placeholder", key.source),
        );
    }
}

// A placeholder names a stored field whose value is always present, exact and
// safe as text: not `Option`, not a float, not `bool`, not `skip` or `json`.
fn check_placeholders(cx: &mut Ctxt, entity: &Entity<'_>, template: &KeyTemplate, what: &str) {
    let mut seen = Vec::new();
    for name in template.placeholders() {
        if seen.contains(&name) {
            cx.error_at(
                template.span,
                format!(
                    "placeholder `<{name}>` appears twice in {what} template `{}`",
                    template.source
                ),
            );
            continue;
        }
        seen.push(name);
        if PARAMS.contains(&name) {
            cx.error_at(
                template.span,
                format!("placeholder `<{name}>` clashes with a parameter of the generated functions; rename the field"),
            );
        }
        let Some(f) = field(entity, name) else {
            let known: Vec<String> = entity.fields.iter().map(|f| format!("`{}`", f.ident)).collect();
            cx.error_at(
                template.span,
                format!(
                    "unknown placeholder `<{name}>` in {what} template `{}`, expected one of {}",
                    template.source,
                    known.join(", ")
                ),
            );
            continue;
        };
        let ty = type_name(f.ty).unwrap_or_default();
        let problem = if is_option(f.ty) {
            Some("an `Option` field (a key part must always be present)")
        } else if ty == "f32" || ty == "f64" {
            Some("a float field (a key part must be exact)")
        } else if ty == "bool" {
            Some("a `bool` field")
        } else if f.skip {
            Some("a `skip` field")
        } else if f.json {
            Some("a `json` field")
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
            cx.error_spanned_by(f.ty, format!("`{name}` is used as a key part here"));
        }
    }
}

// The score of a sorted index is a stored, always-present numeric field.
fn check_score(cx: &mut Ctxt, entity: &Entity<'_>, score: &syn::Ident) {
    let Some(f) = field(entity, &score.to_string()) else {
        cx.error_spanned_by(score, format!("unknown score field `{score}`"));
        return;
    };
    let ty = type_name(f.ty).unwrap_or_default();
    let numeric = INTEGERS.contains(&ty.as_str()) || ty == "f32" || ty == "f64" || ty == "DateTime";
    if f.skip || f.json || !numeric {
        cx.error_spanned_by(
            score,
            format!(
                "score field `{score}` must be a stored integer, float or `DateTime` (not `Option`, `skip` or `json`)"
            ),
        );
    }
}

// Two indexes may not generate the same function, nor one the derive already generates.
fn check_index_names(cx: &mut Ctxt, entity: &Entity<'_>) {
    let mut names: Vec<String> = Vec::new();
    for index in &entity.indexes {
        let name = index.name();
        if syn::parse_str::<syn::Ident>(&name).is_err() {
            cx.error_at(index.name_span(), format!("index name `{name}` is not an identifier"));
        } else if names.contains(&name) {
            cx.error_at(
                index.name_span(),
                format!("index name `{name}` collides with another index; give one of them `name = \"...\"`"),
            );
        } else if GENERATED.contains(&name.as_str()) || name.starts_with("count_") {
            cx.error_at(
                index.name_span(),
                format!("index name `{name}` collides with a generated function"),
            );
        }
        names.push(name);
    }
}

// Every stored field has its own hash field name.
fn check_wire_names(cx: &mut Ctxt, entity: &Entity<'_>) {
    let mut seen: Vec<&str> = Vec::new();
    for f in entity.fields.iter().filter(|f| f.is_stored()) {
        if seen.contains(&f.wire.as_str()) {
            cx.error_spanned_by(f.ident, format!("hash field name `{}` is used by two fields", f.wire));
        }
        seen.push(&f.wire);
    }
}

// `default` on an `Option` says nothing: an absent `Option` is already `None`.
fn check_optional_default(cx: &mut Ctxt, entity: &Entity<'_>) {
    for f in &entity.fields {
        if f.default && is_option(f.ty) && !f.json {
            cx.error_spanned_by(f.ident, "`default` on an `Option` field is redundant: absent is `None`");
        }
    }
}
