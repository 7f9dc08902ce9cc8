//! `rename_all` rules, as serde names them: how a Rust field (snake_case) or
//! variant (PascalCase) name becomes its wire name.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RenameRule {
    Lower,
    Upper,
    Pascal,
    Camel,
    Snake,
    ScreamingSnake,
    Kebab,
    ScreamingKebab,
}

/// The rule names `rename_all` accepts, as serde spells them.
pub const RULES: &[(&str, RenameRule)] = &[
    ("lowercase", RenameRule::Lower),
    ("UPPERCASE", RenameRule::Upper),
    ("PascalCase", RenameRule::Pascal),
    ("camelCase", RenameRule::Camel),
    ("snake_case", RenameRule::Snake),
    ("SCREAMING_SNAKE_CASE", RenameRule::ScreamingSnake),
    ("kebab-case", RenameRule::Kebab),
    ("SCREAMING-KEBAB-CASE", RenameRule::ScreamingKebab),
];

impl RenameRule {
    pub fn parse(name: &str) -> Option<Self> {
        RULES.iter().find(|(n, _)| *n == name).map(|(_, r)| *r)
    }

    /// The wire name of a snake_case field name.
    pub fn apply_to_field(self, field: &str) -> String {
        let words: Vec<&str> = field.split('_').filter(|w| !w.is_empty()).collect();
        self.join(&words)
    }

    /// The wire name of a PascalCase variant name.
    pub fn apply_to_variant(self, variant: &str) -> String {
        let snake = snake_case(variant);
        let words: Vec<&str> = snake.split('_').filter(|w| !w.is_empty()).collect();
        self.join(&words)
    }

    fn join(self, words: &[&str]) -> String {
        let capitalized = |w: &str| {
            let mut c = w.chars();
            c.next().map_or(String::new(), |f| f.to_uppercase().chain(c).collect())
        };
        match self {
            RenameRule::Lower => words.concat().to_lowercase(),
            RenameRule::Upper => words.concat().to_uppercase(),
            RenameRule::Pascal => words.iter().map(|w| capitalized(w)).collect(),
            RenameRule::Camel => words
                .iter()
                .enumerate()
                .map(|(i, w)| if i == 0 { w.to_lowercase() } else { capitalized(w) })
                .collect(),
            RenameRule::Snake => words.join("_").to_lowercase(),
            RenameRule::ScreamingSnake => words.join("_").to_uppercase(),
            RenameRule::Kebab => words.join("-").to_lowercase(),
            RenameRule::ScreamingKebab => words.join("-").to_uppercase(),
        }
    }
}

/// `InProgress` -> `in_progress`, `HTTPError` -> `http_error`.
pub fn snake_case(name: &str) -> String {
    let chars: Vec<char> = name.chars().collect();
    let mut out = String::new();
    for (i, &c) in chars.iter().enumerate() {
        if c.is_uppercase() {
            let prev_lower = i > 0 && (chars[i - 1].is_lowercase() || chars[i - 1].is_ascii_digit());
            let next_lower = chars.get(i + 1).is_some_and(|n| n.is_lowercase());
            if i > 0 && (prev_lower || (next_lower && chars[i - 1].is_uppercase())) {
                out.push('_');
            }
            out.extend(c.to_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_and_variants_follow_serde_rules() {
        assert_eq!(RenameRule::Camel.apply_to_field("exit_code"), "exitCode");
        assert_eq!(RenameRule::Pascal.apply_to_field("exit_code"), "ExitCode");
        assert_eq!(RenameRule::ScreamingSnake.apply_to_field("exit_code"), "EXIT_CODE");
        assert_eq!(RenameRule::Kebab.apply_to_field("exit_code"), "exit-code");
        assert_eq!(RenameRule::Snake.apply_to_field("exit_code"), "exit_code");
        assert_eq!(RenameRule::Lower.apply_to_variant("InProgress"), "inprogress");
        assert_eq!(RenameRule::Camel.apply_to_variant("InProgress"), "inProgress");
        assert_eq!(RenameRule::Snake.apply_to_variant("HTTPError"), "http_error");
        assert_eq!(RenameRule::ScreamingKebab.apply_to_variant("InProgress"), "IN-PROGRESS");
        assert_eq!(snake_case("GitHub2Fa"), "git_hub2_fa");
        assert_eq!(RenameRule::parse("camelCase"), Some(RenameRule::Camel));
        assert_eq!(RenameRule::parse("Camel"), None);
    }
}
