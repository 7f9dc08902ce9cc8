//! The syntax of key templates: `user:<id>`, `repo_cache:{<user_id>}:<provider>`.
//! Which field a placeholder names is decided in `ast`, against the fields.

use proc_macro2::Span;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RawPiece {
    Lit(String),
    /// A `<name>` as written (`r#type` or `type` for a field `r#type`).
    Placeholder(String),
}

/// A template as written, with the literal it came from for spans.
#[derive(Debug, Clone)]
pub struct RawTemplate {
    pub source: String,
    pub pieces: Vec<RawPiece>,
    pub span: Span,
}

/// Whether `name` can be a field name, raw (`r#type`) or not.
fn is_field_name(name: &str) -> bool {
    let bare = super::unraw::bare(name);
    let mut chars = bare.chars();
    chars.next().is_some_and(|c| c.is_alphabetic() || c == '_')
        && chars.all(|c| c.is_alphanumeric() || c == '_')
        && bare != "_"
}

impl RawTemplate {
    pub fn parse(lit: &syn::LitStr) -> syn::Result<Self> {
        let source = lit.value();
        let err = |msg: String| syn::Error::new(lit.span(), msg);
        let mut pieces = Vec::new();
        let mut text = String::new();
        let mut in_tag = false;
        let mut chars = source.chars();
        while let Some(c) = chars.next() {
            match c {
                '<' => {
                    let mut name = String::new();
                    loop {
                        match chars.next() {
                            Some('>') => break,
                            Some('<') => return Err(err(format!("unbalanced `<` in key template `{source}`"))),
                            Some(c) => name.push(c),
                            None => return Err(err(format!("unbalanced `<` in key template `{source}`"))),
                        }
                    }
                    if !is_field_name(&name) {
                        return Err(err(format!(
                            "`<{name}>` is not a field name in key template `{source}`"
                        )));
                    }
                    if !text.is_empty() {
                        pieces.push(RawPiece::Lit(std::mem::take(&mut text)));
                    }
                    pieces.push(RawPiece::Placeholder(name));
                }
                '>' => return Err(err(format!("unbalanced `>` in key template `{source}`"))),
                '{' if in_tag => return Err(err(format!("nested `{{` in key template `{source}`"))),
                '{' => {
                    in_tag = true;
                    text.push(c);
                }
                '}' if !in_tag => return Err(err(format!("unbalanced `}}` in key template `{source}`"))),
                '}' => {
                    in_tag = false;
                    text.push(c);
                }
                c if c.is_whitespace() || c.is_control() => {
                    return Err(err(format!(
                        "whitespace or control character in key template `{source}`"
                    )));
                }
                c => text.push(c),
            }
        }
        if in_tag {
            return Err(err(format!("unbalanced `{{` in key template `{source}`")));
        }
        if !text.is_empty() {
            pieces.push(RawPiece::Lit(text));
        }
        Ok(RawTemplate {
            source,
            pieces,
            span: lit.span(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> syn::Result<RawTemplate> {
        RawTemplate::parse(&syn::LitStr::new(s, Span::call_site()))
    }

    #[test]
    fn parses_placeholders_and_hash_tags() {
        let t = parse("repo_cache:{<user_id>}:<provider>").unwrap();
        assert_eq!(
            t.pieces,
            vec![
                RawPiece::Lit("repo_cache:{".into()),
                RawPiece::Placeholder("user_id".into()),
                RawPiece::Lit("}:".into()),
                RawPiece::Placeholder("provider".into()),
            ]
        );
    }

    #[test]
    fn raw_names_are_field_names() {
        let t = parse("thing:<r#type>:<type>").unwrap();
        assert_eq!(t.pieces[1], RawPiece::Placeholder("r#type".into()));
        assert_eq!(t.pieces[3], RawPiece::Placeholder("type".into()));
    }

    #[test]
    fn refuses_unbalanced_and_bad_names() {
        for bad in [
            "user:<id",
            "user:id>",
            "user:{<id>",
            "user:<id>}",
            "user:{{<id>}}",
            "user:<>",
            "user:<a b>",
            "user :<id>",
            "user:<1id>",
            "user:<_>",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
