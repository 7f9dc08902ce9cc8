//! Key templates: `user:<id>`, `repo_cache:{<user_id>}:<provider>`.

use proc_macro2::Span;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    Lit(String),
    Placeholder(String),
}

/// A template parsed at compile time, with the literal it came from for spans.
#[derive(Debug, Clone)]
pub struct KeyTemplate {
    pub source: String,
    pub pieces: Vec<Piece>,
    pub span: Span,
}

impl KeyTemplate {
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
                    if syn::parse_str::<syn::Ident>(&name).is_err() {
                        return Err(err(format!(
                            "`<{name}>` is not a field name in key template `{source}`"
                        )));
                    }
                    if !text.is_empty() {
                        pieces.push(Piece::Lit(std::mem::take(&mut text)));
                    }
                    pieces.push(Piece::Placeholder(name));
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
            pieces.push(Piece::Lit(text));
        }
        Ok(KeyTemplate {
            source,
            pieces,
            span: lit.span(),
        })
    }

    pub fn placeholders(&self) -> impl Iterator<Item = &str> {
        self.pieces.iter().filter_map(|p| match p {
            Piece::Placeholder(name) => Some(name.as_str()),
            Piece::Lit(_) => None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> syn::Result<KeyTemplate> {
        KeyTemplate::parse(&syn::LitStr::new(s, Span::call_site()))
    }

    #[test]
    fn parses_placeholders_and_hash_tags() {
        let t = parse("repo_cache:{<user_id>}:<provider>").unwrap();
        assert_eq!(
            t.pieces,
            vec![
                Piece::Lit("repo_cache:{".into()),
                Piece::Placeholder("user_id".into()),
                Piece::Lit("}:".into()),
                Piece::Placeholder("provider".into()),
            ]
        );
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
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
