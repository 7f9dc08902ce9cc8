//! `meta::compat::compare` on every kind of change, between two versions
//! of real derived entities.

use repobox_orm::meta::compat::{Change, Compat, compare};
use repobox_orm::prelude::*;
use serde_json::{Value, json};

fn schema(models: &[&'static repobox_orm::meta::EntityMeta]) -> Value {
    json!({ "models": models.iter().map(|m| m.schema()).collect::<Vec<_>>(), "streams": [{"key": "jobs:stream"}] })
}

mod v1 {
    use super::*;

    #[derive(RedisValue, Debug, Clone, Copy, PartialEq)]
    pub enum Status {
        Queued,
        Completed,
        Failed,
    }

    #[derive(RedisEntity, Debug)]
    #[key("job:<id>")]
    #[index(sorted = "jobs:user:<user_id>", score = created_at)]
    #[index(set = "jobs:tag:<tag>")]
    pub struct Job {
        pub id: String,
        pub user_id: String,
        pub created_at: i64,
        pub status: Status,
        pub exit: Option<i32>,
        pub note: Option<String>,
        pub tag: String,
        pub size: i64,
        pub gone: Option<String>,
    }

    #[derive(RedisEntity, Debug)]
    #[key("old:<id>")]
    pub struct Old {
        pub id: String,
    }
}

mod v2 {
    use super::*;

    #[derive(RedisValue, Debug, Clone, Copy, PartialEq)]
    pub enum Status {
        Queued,
        #[redis(alias = "completed")]
        Succeeded,
        Cancelled,
    }

    #[derive(RedisEntity, Debug)]
    #[key("job:<id>")]
    #[index(sorted = "jobs:user:<user_id>", score = created_at)]
    #[index(sorted = "jobs:status:<status>", score = created_at)]
    pub struct Job {
        pub id: String,
        pub user_id: String,
        pub created_at: i64,
        pub status: Status,
        #[redis(alias = "exit")]
        pub exit_code: Option<i32>,
        pub note: String,
        pub tag: Option<String>,
        pub size: String,
        pub attempts: Option<u32>,
        pub owner: String,
    }

    #[derive(RedisEntity, Debug)]
    #[key("new:<id>")]
    pub struct New {
        pub id: String,
    }
}

fn find<'a>(changes: &'a [Change], at: &str, words: &str) -> &'a Change {
    changes
        .iter()
        .find(|c| c.at == at && c.change.contains(words))
        .unwrap_or_else(|| panic!("no change at {at} saying {words:?} in {changes:#?}"))
}

#[test]
fn every_kind_of_change_is_classified() {
    let old = schema(&[v1::Job::META, v1::Old::META]);
    let new = schema(&[v2::Job::META, v2::New::META]);
    let changes = compare(&old, &new);
    let breaking = |at: &str, words: &str| assert_eq!(find(&changes, at, words).compat, Compat::Breaking, "{at}");
    let compatible = |at: &str, words: &str| assert_eq!(find(&changes, at, words).compat, Compat::Compatible, "{at}");
    compatible("Job.exit", "renamed to `exit_code`");
    compatible("Job.status", "`completed` renamed to \"succeeded\"");
    breaking("Job.status", "`failed` removed");
    compatible("Job.status", "new enum value `cancelled`");
    breaking("Job.note", "made required");
    compatible("Job.tag", "made optional");
    breaking("Job.size", "type changed");
    breaking("Job.gone", "field removed");
    compatible("Job.attempts", "new optional field");
    breaking("Job.owner", "new required field");
    compatible("Job.index.by_status", "new index");
    breaking("Job.index.by_tag", "index removed");
    breaking("Old", "model removed");
    compatible("New", "new model");
    // Nothing is said twice, and what did not change is not said.
    assert!(
        !changes
            .iter()
            .any(|c| c.at == "Job.user_id" || c.at == "Job.index.by_user_id"),
        "{changes:#?}"
    );
}

#[test]
fn keys_aliases_and_other_sections() {
    let job = v2::Job::META.schema();
    let base =
        json!({ "models": [job.clone()], "streams": [{"key": "jobs:stream"}], "events": {"key": "jobs:events"} });
    assert!(compare(&base, &base).is_empty(), "the same schema has no changes");

    let mut moved = base.clone();
    moved["models"][0]["key"] = json!("job:{<user_id>}:<id>");
    let changes = compare(&base, &moved);
    assert_eq!(find(&changes, "Job", "key template").compat, Compat::Breaking);

    // An index re-keyed with `previous` names the re-key; one whose key
    // is the same but for the `previous_key` it keeps is no change.
    let mut rekeyed = base.clone();
    rekeyed["models"][0]["indexes"][0]["key"] = json!("jobs:user:{<user_id>}");
    rekeyed["models"][0]["indexes"][0]["previous_key"] = json!("jobs:user:<user_id>");
    let changes = compare(&base, &rekeyed);
    let change = find(&changes, "Job.index.by_user_id", "re-key migration");
    assert_eq!(change.compat, Compat::Breaking);
    let mut done = rekeyed.clone();
    done["models"][0]["indexes"][0]
        .as_object_mut()
        .unwrap()
        .remove("previous_key");
    assert!(compare(&rekeyed, &done).is_empty(), "{:#?}", compare(&rekeyed, &done));

    // An alias dropped breaks the hashes that still hold it; one added does not.
    let mut dropped = base.clone();
    let fields = dropped["models"][0]["fields"].as_array_mut().unwrap();
    let exit = fields.iter_mut().find(|f| f["name"] == "exit_code").unwrap();
    exit.as_object_mut().unwrap().remove("aliases");
    let changes = compare(&base, &dropped);
    assert_eq!(
        find(&changes, "Job.exit_code", "alias `exit` removed").compat,
        Compat::Breaking
    );
    let changes = compare(&dropped, &base);
    assert_eq!(
        find(&changes, "Job.exit_code", "new alias `exit`").compat,
        Compat::Compatible
    );
    // An enum alias dropped breaks too.
    let mut no_enum_alias = base.clone();
    let fields = no_enum_alias["models"][0]["fields"].as_array_mut().unwrap();
    let status = fields.iter_mut().find(|f| f["name"] == "status").unwrap();
    status.as_object_mut().unwrap().remove("value_aliases");
    let changes = compare(&base, &no_enum_alias);
    assert_eq!(
        find(&changes, "Job.status", "enum alias `completed` removed").compat,
        Compat::Breaking
    );

    // Other sections: an addition is compatible, a removal or a change breaking.
    let mut other = base.clone();
    other["events"]["kept"] = json!(10000);
    other["streams"] = json!([{"key": "jobs:stream2"}]);
    other.as_object_mut().unwrap().remove("events");
    other["lists"] = json!([]);
    let changes = compare(&base, &other);
    assert_eq!(find(&changes, "events", "removed").compat, Compat::Breaking);
    assert_eq!(find(&changes, "streams", "changed").compat, Compat::Breaking);
    assert_eq!(find(&changes, "lists", "added").compat, Compat::Compatible);
}

#[test]
fn a_name_that_was_a_field_of_its_own_is_no_rename_and_shapes_are_checked() {
    use repobox_orm::meta::compat::validate;
    let job = v2::Job::META.schema();
    let base = json!({ "models": [job.clone()], "events": {"fields": ["job_id"]} });
    // The old schema had `exit` besides `exit_code`: `exit`'s values would
    // be lost (every write of `exit_code` deletes its alias), not renamed.
    let mut both = base.clone();
    both["models"][0]["fields"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "exit", "type": "integer", "optional": true}));
    let changes = compare(&both, &base);
    assert_eq!(find(&changes, "Job.exit", "field removed").compat, Compat::Breaking);
    // No longer co-located: breaking; a list that only gained items: compatible.
    let mut split = base.clone();
    split["models"][0]["co_located"] = json!(true);
    split["events"]["fields"] = json!(["job_id", "kind"]);
    let changes = compare(&split, &base);
    assert_eq!(find(&changes, "Job", "no longer co-located").compat, Compat::Breaking);
    let changes = compare(&base, &split);
    assert_eq!(
        find(&changes, "events.fields", "added \"kind\"").compat,
        Compat::Compatible
    );
    // Shapes that are not a schema's are refused, not read as fewer fields.
    assert!(validate(&base).is_ok());
    for (path, bad) in [
        ("fields", json!([{"type": "string", "optional": true}])),
        ("fields", json!([{"name": 7, "type": "string", "optional": true}])),
        ("fields", json!([{"name": "x", "type": "string", "optional": "true"}])),
        (
            "fields",
            json!([{"name": "x", "type": "enum", "optional": true, "values": "a"}]),
        ),
        ("indexes", json!({"by_x": {}})),
        ("indexes", json!([{"kind": "set"}])),
    ] {
        let mut broken = base.clone();
        broken["models"][0][path] = bad.clone();
        assert!(validate(&broken).is_err(), "{path}: {bad}");
    }
    assert!(validate(&json!({"models": [{"key": "x:<id>", "fields": [], "indexes": []}]})).is_err());
}
