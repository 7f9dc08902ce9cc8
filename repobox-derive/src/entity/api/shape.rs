//! What the generated functions are built from.

use crate::internals::ast::{Entity, IndexKind};
use crate::internals::unraw::unraw;

/// What the generated functions are built from: the entity, or as much of it
/// as the fallback could read.
pub struct Shape<'e> {
    pub ident: &'e syn::Ident,
    pub krate: &'e syn::Path,
    /// The key template and its placeholder fields; `None` when the key is unusable.
    pub key: Option<(String, Vec<&'e syn::Ident>)>,
    /// The `#[ttl]` in ms, if the entity has one.
    pub ttl: Option<u64>,
    /// Whether every write touches one Redis Cluster slot.
    pub co_located: bool,
    pub indexes: Vec<IndexShape<'e>>,
}

pub struct IndexShape<'e> {
    /// Its position in the metadata.
    pub pos: usize,
    pub name: String,
    pub kind: ShapeKind,
    pub params: Vec<&'e syn::Ident>,
    pub source: String,
}

pub enum ShapeKind {
    Sorted { score: String },
    Set,
    Unique,
}

impl<'e> Shape<'e> {
    pub fn of(entity: &'e Entity<'e>) -> Self {
        Shape {
            ident: &entity.input.ident,
            krate: &entity.krate,
            key: Some((
                entity.key.source.clone(),
                entity.placeholder_fields(&entity.key).map(|f| f.ident).collect(),
            )),
            ttl: entity.ttl.as_ref().map(|t| t.millis),
            co_located: entity.co_located(),
            indexes: entity
                .indexes
                .iter()
                .enumerate()
                .map(|(pos, ix)| IndexShape {
                    pos,
                    name: ix.name(entity),
                    kind: match &ix.kind {
                        IndexKind::Sorted { score, .. } => ShapeKind::Sorted {
                            score: unraw(entity.fields[*score].ident),
                        },
                        IndexKind::Set => ShapeKind::Set,
                        IndexKind::Unique => ShapeKind::Unique,
                    },
                    params: entity.placeholder_fields(&ix.template).map(|f| f.ident).collect(),
                    source: ix.template.source.clone(),
                })
                .collect(),
        }
    }
}
