//! The protocol of `slots.lua`: a tenant's running set and parked set (one
//! hash tag, one slot), and the operations on them. `KEYS` are the two sets;
//! `ARGV` the operation and its arguments; the answer a number.

use redis::{Cmd, Value};

use super::reply::Answer;
use super::{Call, SLOTS};
use crate::error::Result;

/// The operations (`slots.lua` declares the same).
pub(crate) const ACQUIRE: &str = "acquire";
pub(crate) const RENEW: &str = "renew";
pub(crate) const RELEASE: &str = "release";
pub(crate) const FREE: &str = "free";

/// One operation on a tenant's slots.
pub(crate) enum SlotOp<'a> {
    /// Take a slot for `member` for `lease_ms`, or park it: answers 1 / 0.
    Acquire { member: &'a str, lease_ms: u64, limit: u32 },
    /// Lengthen `member`'s slot: answers 1 if it held one.
    Renew { member: &'a str, lease_ms: u64 },
    /// Give `member`'s slot back: answers 1 if it held one.
    Release { member: &'a str },
    /// How many slots are free under `limit`.
    Free { limit: u32 },
}

impl SlotOp<'_> {
    /// The `EVALSHA` of this operation on the sets `running` and `parked`.
    pub(crate) fn command(&self, running: &str, parked: &str) -> Cmd {
        let mut call = Call::default();
        call.key(running).key(parked);
        match self {
            SlotOp::Acquire {
                member,
                lease_ms,
                limit,
            } => call.arg(ACQUIRE).arg(*member).arg(*lease_ms).arg(*limit),
            SlotOp::Renew { member, lease_ms } => call.arg(RENEW).arg(*member).arg(*lease_ms),
            SlotOp::Release { member } => call.arg(RELEASE).arg(*member),
            SlotOp::Free { limit } => call.arg(FREE).arg(*limit),
        };
        call.command(&SLOTS)
    }

    /// Reads the answer for the sets of `running`.
    pub(crate) fn parse(running: &str, reply: Value) -> Result<u64> {
        Answer::count(running, "slots.lua", reply)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_script_declares_the_same_operations() {
        let lua = include_str!("slots.lua");
        assert!(lua.contains(&format!(
            "local ACQUIRE, RENEW, RELEASE, FREE = '{ACQUIRE}', '{RENEW}', '{RELEASE}', '{FREE}'"
        )));
        let packed = SlotOp::Free { limit: 3 }.command("r", "p").get_packed_command();
        assert!(
            String::from_utf8(packed)
                .unwrap()
                .ends_with("$1\r\nr\r\n$1\r\np\r\n$4\r\nfree\r\n$1\r\n3\r\n")
        );
    }
}
