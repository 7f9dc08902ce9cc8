//! Stream replies read with redis-rs's typed stream replies, turned into
//! repobox's text entries. An entry whose values are not text is not dropped:
//! it is returned with what could be read and a note of what could not, and
//! logged, so that a consumer can dead-letter it instead of never seeing it.

use std::collections::HashMap;

use redis::Value;
use redis::streams::StreamId;

use super::LogLimit;

static MALFORMED: LogLimit = LogLimit::warn("malformed stream entry");

/// The text fields of a stream entry, and what was wrong with the others.
pub(super) struct Fields {
    pub fields: HashMap<String, String>,
    pub malformed: Option<String>,
}

/// Reads the fields of `entry` of `stream` as text.
pub(super) fn fields(stream: &str, entry: StreamId) -> (String, Fields) {
    let mut fields = HashMap::with_capacity(entry.map.len());
    let mut bad = Vec::new();
    for (name, value) in entry.map {
        match text(&value) {
            Some(v) => {
                fields.insert(name, v);
            }
            None => bad.push(name),
        }
    }
    let malformed = (!bad.is_empty()).then(|| {
        bad.sort();
        let why = format!("field(s) {} are not UTF-8 text", bad.join(", "));
        if let Some(held_back) = MALFORMED.admit() {
            tracing::warn!(stream = %stream, entry = %entry.id, problem = %why, "malformed stream entry{held_back}");
        }
        why
    });
    (entry.id, Fields { fields, malformed })
}

/// A stream value as text, if it is text.
fn text(value: &Value) -> Option<String> {
    match value {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        Value::VerbatimString { text, .. } => Some(text.clone()),
        Value::Int(i) => Some(i.to_string()),
        _ => None,
    }
}

/// Compares stream ids (`ms-seq`) numerically.
pub fn cmp_ids(a: &str, b: &str) -> std::cmp::Ordering {
    let parse = |s: &str| {
        let (ms, seq) = s.split_once('-').unwrap_or((s, "0"));
        (ms.parse::<u64>().unwrap_or(0), seq.parse::<u64>().unwrap_or(0))
    };
    parse(a).cmp(&parse(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_that_is_not_text_is_reported_not_dropped() {
        let entry = StreamId {
            id: "1-0".into(),
            map: HashMap::from([
                ("job_id".to_owned(), Value::BulkString(b"42".to_vec())),
                ("blob".to_owned(), Value::BulkString(vec![0xff, 0xfe])),
            ]),
            ..StreamId::default()
        };
        let (id, f) = fields("jobs:stream", entry);
        assert_eq!(id, "1-0");
        assert_eq!(f.fields.get("job_id").map(String::as_str), Some("42"));
        assert!(f.malformed.unwrap().contains("blob"));
    }

    #[test]
    fn ids_compare_as_numbers() {
        assert_eq!(cmp_ids("9-0", "10-0"), std::cmp::Ordering::Less);
        assert_eq!(cmp_ids("10-2", "10-10"), std::cmp::Ordering::Less);
    }
}
