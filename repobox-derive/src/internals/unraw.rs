//! Identifiers as their users write them in strings: `r#type` is `type`.
//! Everything that compares an identifier with a name goes through here.

use syn::Ident;

/// The identifier without its `r#` prefix.
pub fn unraw(ident: &Ident) -> String {
    let name = ident.to_string();
    match name.strip_prefix("r#") {
        Some(bare) => bare.to_owned(),
        None => name,
    }
}

/// Whether `name` (a placeholder, say) names `ident`, written raw or not.
pub fn names(name: &str, ident: &Ident) -> bool {
    name.strip_prefix("r#").unwrap_or(name) == unraw(ident)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_and_plain_names_match() {
        let raw: Ident = syn::parse_str("r#type").unwrap();
        assert_eq!(unraw(&raw), "type");
        assert!(names("type", &raw));
        assert!(names("r#type", &raw));
        let plain: Ident = syn::parse_str("user_id").unwrap();
        assert!(names("user_id", &plain));
        assert!(!names("user", &plain));
    }
}
