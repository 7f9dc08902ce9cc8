//! Redis Cluster key slots: CRC16 (XMODEM) of the key, or of its hash tag,
//! modulo 16384, as the cluster specification defines them.

use redis::{Arg, Cmd};

/// The number of hash slots of a Redis Cluster.
const SLOTS: u16 = 16384;

/// The part of `key` that decides its slot: the text between the first `{`
/// and the next `}` when that is not empty, else the whole key.
fn hashed_part(key: &[u8]) -> &[u8] {
    if let Some(open) = key.iter().position(|&b| b == b'{')
        && let Some(len) = key[open + 1..].iter().position(|&b| b == b'}')
        && len > 0
    {
        return &key[open + 1..open + 1 + len];
    }
    key
}

fn crc16(bytes: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &b in bytes {
        crc ^= u16::from(b) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// The cluster slot of `key`.
pub fn key_slot(key: &[u8]) -> u16 {
    crc16(hashed_part(key)) % SLOTS
}

/// The keys of a command whose keys repobox knows how to find: `EVAL`,
/// `EVALSHA` (their `numkeys`), and single-key commands (the first argument).
/// `None` for a command without keys (`PING`, `SCAN`, `SCRIPT`).
pub(crate) fn command_keys(cmd: &Cmd) -> Option<Vec<&[u8]>> {
    let mut args = cmd.args_iter().filter_map(|a| match a {
        Arg::Simple(bytes) => Some(bytes),
        _ => None,
    });
    let name = args.next()?;
    let upper = name.to_ascii_uppercase();
    match upper.as_slice() {
        b"EVAL" | b"EVALSHA" | b"EVAL_RO" | b"EVALSHA_RO" | b"FCALL" | b"FCALL_RO" => {
            let _script = args.next()?;
            let n: usize = std::str::from_utf8(args.next()?).ok()?.parse().ok()?;
            let keys: Vec<&[u8]> = args.take(n).collect();
            (!keys.is_empty()).then_some(keys)
        }
        b"PING" | b"ECHO" | b"INFO" | b"DBSIZE" | b"KEYS" | b"SCAN" | b"TIME" | b"SCRIPT" | b"CLUSTER" | b"MULTI"
        | b"EXEC" | b"DISCARD" | b"FLUSHALL" | b"FLUSHDB" | b"CONFIG" | b"CLIENT" | b"HELLO" => None,
        _ => args.next().map(|k| vec![k]),
    }
}

/// The one slot every key of `cmd` is in; `Err` with the slots when they
/// differ, `Ok(None)` when the command has no keys.
pub(crate) fn command_slot(cmd: &Cmd) -> Result<Option<u16>, (u16, u16)> {
    let Some(keys) = command_keys(cmd) else {
        return Ok(None);
    };
    let mut slots = keys.iter().map(|k| key_slot(k));
    let first = slots.next();
    match slots.find(|s| Some(*s) != first) {
        Some(other) => Err((first.unwrap_or_default(), other)),
        None => Ok(first),
    }
}

/// The first key of `cmd`, when repobox knows where its keys are.
#[cfg(feature = "cluster")]
pub(crate) fn first_key(cmd: &Cmd) -> Option<&[u8]> {
    command_keys(cmd).and_then(|keys| keys.first().copied())
}

/// The slot a pipeline's command goes to: its keys' slot (the first key's
/// when they differ: the server then answers it `CROSSSLOT` on its own).
pub(crate) fn slot_of(cmd: &Cmd) -> Option<u16> {
    match command_slot(cmd) {
        Ok(slot) => slot,
        Err(_) => command_keys(cmd).and_then(|keys| keys.first().map(|k| key_slot(k))),
    }
}

/// The commands grouped by the slot they go to, in order of first
/// appearance; a command without keys goes with the first command's slot.
pub(crate) fn group_by_slot<'c>(cmds: impl IntoIterator<Item = &'c Cmd>) -> Vec<Vec<usize>> {
    let slots: Vec<Option<u16>> = cmds.into_iter().map(slot_of).collect();
    let first = slots.iter().find_map(|s| *s);
    let mut groups: Vec<(Option<u16>, Vec<usize>)> = Vec::new();
    for (i, slot) in slots.into_iter().enumerate() {
        let slot = slot.or(first);
        match groups.iter_mut().find(|(s, _)| *s == slot) {
            Some((_, members)) => members.push(i),
            None => groups.push((slot, vec![i])),
        }
    }
    groups.into_iter().map(|(_, members)| members).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_match_the_cluster_specification() {
        // Values from `CLUSTER KEYSLOT` on Redis 7.0.
        assert_eq!(key_slot(b"foo"), 12182);
        assert_eq!(key_slot(b"bar"), 5061);
        assert_eq!(key_slot(b"123456789"), 12739);
        assert_eq!(key_slot(b"{user1000}.following"), key_slot(b"user1000"));
        assert_eq!(key_slot(b"job:{u7}:1"), key_slot(b"jobs:user:{u7}"));
        // An empty tag does not count: the whole key is hashed.
        assert_eq!(key_slot(b"foo{}{bar}"), crc16(b"foo{}{bar}") % SLOTS);
        assert_eq!(key_slot(b"foo{{bar}}zap"), key_slot(b"{bar"));
    }

    #[test]
    fn the_keys_of_a_script_call_decide_its_slot() {
        let mut same = redis::cmd("EVALSHA");
        same.arg("abc")
            .arg(2)
            .arg("job:{u1}:1")
            .arg("jobs:{u1}")
            .arg("not-a-key");
        assert_eq!(command_slot(&same), Ok(Some(key_slot(b"u1"))));
        let mut cross = redis::cmd("EVALSHA");
        cross.arg("abc").arg(2).arg("user:1").arg("user:email:a@b");
        assert!(command_slot(&cross).is_err());
        assert_eq!(command_slot(&redis::cmd("PING")), Ok(None));
        let mut hget = redis::cmd("HGET");
        hget.arg("foo").arg("f");
        assert_eq!(command_slot(&hget), Ok(Some(12182)));
    }
}
