//! Redis Cluster slots, decided at compile time: a template's hash tag, and
//! whether an index lives in its entity's slot.

use super::ast::{Entity, Piece, Template};

/// A piece of a hash tag, to compare tags by their literal text and placeholders.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TagPiece {
    Lit(String),
    Field(usize),
}

impl Template {
    /// The Redis Cluster hash tag: what lies between the first `{` and the
    /// `}` after it, when that is not empty; `None` when the whole key is hashed.
    pub fn hash_tag(&self) -> Option<Vec<TagPiece>> {
        let mut tag: Option<Vec<TagPiece>> = None;
        for piece in &self.pieces {
            match (piece, &mut tag) {
                (Piece::Lit(text), None) => {
                    if let Some(open) = text.find('{') {
                        let rest = &text[open + 1..];
                        if let Some(close) = rest.find('}') {
                            return (close > 0).then(|| vec![TagPiece::Lit(rest[..close].to_owned())]);
                        }
                        tag = Some(if rest.is_empty() {
                            Vec::new()
                        } else {
                            vec![TagPiece::Lit(rest.to_owned())]
                        });
                    }
                }
                (Piece::Lit(text), Some(acc)) => {
                    if let Some(close) = text.find('}') {
                        if close > 0 {
                            acc.push(TagPiece::Lit(text[..close].to_owned()));
                        }
                        return (!acc.is_empty()).then(|| acc.clone());
                    }
                    acc.push(TagPiece::Lit(text.clone()));
                }
                (Piece::Field(i), Some(acc)) => acc.push(TagPiece::Field(*i)),
                (Piece::Field(_), None) => {}
            }
        }
        None
    }
}

impl Entity<'_> {
    /// Whether `template` hashes to the key's slot: both have the same hash tag.
    pub fn shares_slot(&self, template: &Template) -> bool {
        self.key.hash_tag().is_some() && template.hash_tag() == self.key.hash_tag()
    }

    /// Whether every write of the entity touches one slot: every index
    /// template has the key's hash tag.
    pub fn co_located(&self) -> bool {
        self.key.hash_tag().is_some() && self.indexes.iter().all(|ix| self.shares_slot(&ix.template))
    }
}
