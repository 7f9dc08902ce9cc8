//! The protocol of `checkpoint.lua`: a migration's checkpoint written only
//! by the run that owns it. `KEYS[1]` is the checkpoint hash; `ARGV` the
//! run's token, then field, value pairs. The answer is 1 when written, 0
//! when another run owns the checkpoint now (nothing written).

use redis::{Cmd, Value};

use super::reply::Answer;
use super::{CHECKPOINT, Call};
use crate::error::Result;

/// The `EVALSHA` that writes `fields` to the checkpoint `key` for the run `owner`.
pub(crate) fn command(key: &str, owner: &str, fields: &[(&str, String)]) -> Cmd {
    let mut call = Call::default();
    call.key(key).arg(owner);
    for (field, value) in fields {
        call.arg(*field).arg(value.as_str());
    }
    call.command(&CHECKPOINT)
}

/// Reads the answer for `key`: whether the run still owned it (and wrote).
pub(crate) fn parse(key: &str, reply: Value) -> Result<bool> {
    Answer::count(key, "checkpoint.lua", reply).map(|n| n == 1)
}
