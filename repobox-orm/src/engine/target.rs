//! An entity's address: its key, its id and the key parts they are made of.

use std::borrow::Cow;

use crate::entity::{FieldWriter, RedisEntity};
use crate::error::{Error, Result, Shown};
use crate::meta::KeyTemplate;

/// Where an entity lives: the hash key (`job:42`), the id its index entries
/// hold (the key parts joined by `:`), and each key part by hash field.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    pub key: String,
    pub id: String,
    template: &'static KeyTemplate,
    parts: Vec<(&'static str, String)>,
}

impl Target {
    /// The target whose key parts are `parts`, in the key template's placeholder order.
    pub fn from_parts<E: RedisEntity>(parts: &[Cow<'_, str>]) -> Result<Self> {
        let template = &E::META.key;
        let key = template.build(parts)?;
        if parts.len() != template.placeholders().count() {
            return Err(Error::InvalidKeyPart {
                template: template.source,
                placeholder: "",
                value: Shown::new(&parts.join(":")),
                reason: "has the wrong number of key parts",
            });
        }
        Ok(Target {
            template,
            key,
            id: parts.join(":"),
            parts: template
                .placeholders()
                .map(|(_, f)| f)
                .zip(parts.iter().map(|p| p.to_string()))
                .collect(),
        })
    }

    /// The target whose id (key parts joined by `:`) is `id`.
    pub fn from_id<E: RedisEntity>(id: &str) -> Result<Self> {
        let parts: Vec<Cow<'_, str>> = id.split(':').map(Cow::Borrowed).collect();
        Target::from_parts::<E>(&parts)
    }

    /// The target of a whole entity, from its encoded fields.
    pub fn of<E: RedisEntity>(fields: &FieldWriter<'_>) -> Result<Self> {
        let template = &E::META.key;
        let parts = template
            .placeholders()
            .map(|(placeholder, field)| {
                fields
                    .get(field)
                    .and_then(|v| std::str::from_utf8(v).ok())
                    .map(Cow::Borrowed)
                    .ok_or(Error::InvalidKeyPart {
                        template: template.source,
                        placeholder,
                        value: Shown::new(""),
                        reason: "is not valid UTF-8",
                    })
            })
            .collect::<Result<Vec<_>>>()?;
        Target::from_parts::<E>(&parts)
    }

    /// The key as messages and logs show it (a fingerprint for secret keys).
    pub fn shown(&self) -> Cow<'_, str> {
        self.template.shown(&self.key)
    }

    /// The key part that the hash field `field` holds, if it is one of the key's.
    pub fn part(&self, field: &str) -> Option<&str> {
        self.parts.iter().find(|(f, _)| *f == field).map(|(_, v)| v.as_str())
    }
}

/// Fills `template` with the values `value` gives per hash field; a field
/// without a value, or not UTF-8, is an `InvalidKeyPart`.
pub(crate) fn fill<'v>(template: &KeyTemplate, value: impl Fn(&'static str) -> Option<&'v [u8]>) -> Result<String> {
    template.fill(|placeholder, field| {
        value(field)
            .ok_or(Error::InvalidKeyPart {
                template: template.source,
                placeholder,
                value: Shown::new(""),
                reason: "is absent",
            })
            .and_then(|v| {
                std::str::from_utf8(v).map_err(|_| Error::InvalidKeyPart {
                    template: template.source,
                    placeholder,
                    value: Shown::new(&String::from_utf8_lossy(v)),
                    reason: "is not valid UTF-8",
                })
            })
    })
}
