//! What a plan knows of the hash's guard fields (the fields that decide its
//! index keys) before its script runs: read first (`lookup`), or known from
//! a compare-and-set's conditions.

use redis::{Cmd, Value};

use super::WritePlan;
use crate::error::{Error, Result};

impl WritePlan<'_, '_> {
    /// The `HMGET` that learns the guard fields when the plan knows nothing of
    /// them (a delete, or a patch that moves an index entry): a plain read is
    /// far cheaper for the server than a script run that only reports them.
    pub fn lookup(&self) -> Option<Cmd> {
        if self.guards.is_empty() || self.current.is_some() {
            return None;
        }
        let mut cmd = redis::cmd("HMGET");
        cmd.arg(&self.target.key).arg(&self.guards);
        Some(cmd)
    }

    /// A compare-and-set whose conditions name every guard field already
    /// says what the hash holds there: if the conditions hold, the guards
    /// hold those values, and if they do not, the script refuses the write
    /// anyway. The lookup's round trip is saved.
    pub fn assume_conditions(&mut self) {
        if self.guards.is_empty() || self.current.is_some() {
            return;
        }
        let conditions = self.options.conditions;
        let known: Option<Vec<Option<Vec<u8>>>> = self
            .guards
            .iter()
            .map(|g| {
                conditions
                    .iter()
                    .find(|(f, _)| f == g)
                    .map(|(_, v)| v.map(<[u8]>::to_vec))
            })
            .collect();
        if known.is_some() {
            self.current = known;
        }
    }

    /// Takes in the answer of [`lookup`](Self::lookup).
    pub fn take_lookup(&mut self, reply: Value) -> Result<()> {
        let values = match reply {
            Value::Array(values) if values.len() == self.guards.len() => values,
            // The hash key holds another type: nothing is written.
            Value::ServerError(e) if e.code() == "WRONGTYPE" => {
                return Err(Error::WrongType {
                    key: self.target.shown().into_owned(),
                });
            }
            other => {
                return Err(Error::UnexpectedReply {
                    key: self.target.shown().into_owned(),
                    detail: format!("HMGET answered {other:?}"),
                });
            }
        };
        self.current = Some(
            values
                .into_iter()
                .map(|v| match v {
                    Value::BulkString(b) => Some(b),
                    _ => None,
                })
                .collect(),
        );
        Ok(())
    }
}
