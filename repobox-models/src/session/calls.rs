//! The calls of the session scripts (`get_session.lua`, `extend_session.lua`),
//! each built by one function, in the order its script reads `ARGV`.

use std::sync::LazyLock;

use repobox_orm::prelude::EntityField;
use repobox_orm::redis::{Cmd, Script};
use repobox_orm::script;

use super::{Session, SessionField, millis};
use crate::Result;

pub(super) static EXTEND: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../scripts/extend_session.lua")));
pub(super) static GET: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("../scripts/get_session.lua")));

/// The call of `get_session.lua` for the session hash `key`: `ARGV` is the
/// longest a session lives (ms) and the `expires_at` field's name.
pub(super) fn get_call(key: &str) -> Result<Cmd> {
    let mut cmd = script::evalsha(&GET, &[key]);
    cmd.arg(millis(Session::LONGEST)?).arg(SessionField::ExpiresAt.name());
    Ok(cmd)
}

/// A call of `extend_session.lua` on `keys` (the session, and its user's set
/// where the two share a slot), with its ARGV in the script's order.
pub(super) fn extend_call(keys: &[&str], by_ms: u64, max_ms: u64, user_id: &str) -> Cmd {
    let mut cmd = script::evalsha(&EXTEND, keys);
    cmd.arg(by_ms)
        .arg(max_ms)
        .arg(user_id)
        .arg(SessionField::CreatedAt.name())
        .arg(SessionField::ExpiresAt.name())
        .arg(SessionField::UserId.name());
    cmd
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_extend_call_is_laid_out_as_the_script_reads_it() {
        let cmd = extend_call(&["session:d", "sessions:user:u1"], 1000, 2000, "u1");
        let sha = EXTEND.get_hash();
        let want = format!(
            "*11\r\n$7\r\nEVALSHA\r\n$40\r\n{sha}\r\n$1\r\n2\r\n$9\r\nsession:d\r\n$16\r\nsessions:user:u1\r\n\
             $4\r\n1000\r\n$4\r\n2000\r\n$2\r\nu1\r\n$10\r\ncreated_at\r\n$10\r\nexpires_at\r\n$7\r\nuser_id\r\n"
        );
        assert_eq!(String::from_utf8(cmd.get_packed_command()).unwrap(), want);
        let lua = include_str!("../scripts/extend_session.lua");
        assert!(lua.contains("local CREATED_AT, EXPIRES_AT, USER_ID = ARGV[4], ARGV[5], ARGV[6]"));
        for tag in ["ok", "missing", "changed", "corrupt", "expired"] {
            assert!(lua.contains(&format!("'{tag}'")), "{tag}");
        }
        let get = include_str!("../scripts/get_session.lua");
        assert!(get.contains("local EXPIRES_AT = ARGV[2]"));
        let sha = GET.get_hash();
        let want = format!(
            "*6\r\n$7\r\nEVALSHA\r\n$40\r\n{sha}\r\n$1\r\n1\r\n$9\r\nsession:d\r\n$13\r\n3153600000000\r\n$10\r\nexpires_at\r\n"
        );
        assert_eq!(
            String::from_utf8(get_call("session:d").unwrap().get_packed_command()).unwrap(),
            want
        );
        for tag in ["ok", "missing", "corrupt", "expired"] {
            assert!(get.contains(&format!("'{tag}'")), "{tag}");
        }
        // No hash field name is spelled in the scripts.
        for lua in [lua, get, include_str!("../scripts/revoke_owned_session.lua")] {
            for field in [SessionField::CreatedAt, SessionField::ExpiresAt, SessionField::UserId] {
                assert!(!lua.contains(&format!("'{}'", field.name())), "{}", field.name());
            }
        }
    }
}
