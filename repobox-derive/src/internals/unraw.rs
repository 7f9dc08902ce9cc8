//! Identifiers as their users write them in strings: `r#type` is `type`.
//! Everything that compares an identifier with a name goes through here.

use syn::Ident;

/// The identifier without its `r#` prefix.
pub fn unraw(ident: &Ident) -> String {
    bare(&ident.to_string()).to_owned()
}

/// A name as written in a string (`r#type` or `type`), without its `r#`.
pub fn bare(name: &str) -> &str {
    name.strip_prefix("r#").unwrap_or(name)
}

/// Whether `name` (a placeholder, say) names `ident`, written raw or not.
pub fn names(name: &str, ident: &Ident) -> bool {
    bare(name) == unraw(ident)
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
