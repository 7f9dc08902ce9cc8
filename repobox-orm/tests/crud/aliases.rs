//! `#[redis(alias = "...")]`: a field read under its old name while its own
//! is absent, and every write of it leaving it under its own name only; an
//! enum value read under its old wire string.

use redis::AsyncCommands;
use repobox_orm::prelude::*;

#[derive(RedisValue, Debug, Clone, Copy, PartialEq)]
enum Outcome {
    #[redis(alias = "completed", alias = "ok")]
    Succeeded,
    Failed,
}

#[derive(RedisEntity, Debug, Clone, PartialEq)]
#[key("run:<id>")]
#[index(sorted = "runs:user:<user_id>", score = created_at)]
struct Run {
    id: String,
    user_id: String,
    created_at: i64,
    #[redis(alias = "exit")]
    exit_code: Option<i32>,
    #[redis(alias = "result")]
    outcome: Option<Outcome>,
    note: Option<String>,
}

repobox_orm::on_both_backends!(
    an_old_name_is_read_and_every_write_of_the_field_removes_it,
    an_old_enum_value_is_read_and_written_anew
);

async fn fields(conn: &mut Store, key: &str) -> Vec<String> {
    let mut names: Vec<String> = conn.hkeys(key).await.unwrap();
    names.sort();
    names
}

async fn an_old_name_is_read_and_every_write_of_the_field_removes_it(mut conn: Store) {
    // Written by a client that still says `exit`.
    let _: () = redis::cmd("HSET")
        .arg("run:a")
        .arg(&["id", "a", "user_id", "u", "created_at", "1", "exit", "3"])
        .query_async(&mut conn)
        .await
        .unwrap();
    let got = Run::get(&mut conn, "a").await.unwrap().unwrap();
    assert_eq!(got.exit_code, Some(3), "read under its old name");
    // Both present: its own name wins, whatever the hash's order.
    let _: () = conn.hset("run:a", "exit_code", "4").await.unwrap();
    assert_eq!(Run::get(&mut conn, "a").await.unwrap().unwrap().exit_code, Some(4));
    let _: () = conn.hdel("run:a", "exit_code").await.unwrap();

    // A write that does not touch the field leaves the old name alone.
    let note = RunPatch {
        note: Some(Some("n".into())),
        ..Default::default()
    };
    Run::update(&mut conn, "a", &note).await.unwrap();
    assert!(fields(&mut conn, "run:a").await.contains(&"exit".to_owned()));
    // A write of the field stores its own name and removes the old one.
    let exit = RunPatch {
        exit_code: Some(Some(5)),
        ..Default::default()
    };
    Run::update(&mut conn, "a", &exit).await.unwrap();
    let names = fields(&mut conn, "run:a").await;
    assert!(
        names.contains(&"exit_code".to_owned()) && !names.contains(&"exit".to_owned()),
        "{names:?}"
    );
    assert_eq!(Run::get(&mut conn, "a").await.unwrap().unwrap().exit_code, Some(5));

    // A conditional update, a removal, and a save do the same.
    let _: () = conn.hset("run:a", "exit", "9").await.unwrap();
    let cleared = RunPatch {
        exit_code: Some(None),
        ..Default::default()
    };
    let held = RunPatch {
        note: Some(Some("n".into())),
        ..Default::default()
    };
    Run::update_if(&mut conn, "a", &cleared, &held).await.unwrap();
    let names = fields(&mut conn, "run:a").await;
    assert!(
        !names.contains(&"exit".to_owned()) && !names.contains(&"exit_code".to_owned()),
        "{names:?}"
    );
    assert_eq!(
        Run::get(&mut conn, "a").await.unwrap().unwrap().exit_code,
        None,
        "not the old value"
    );
    let _: () = conn.hset("run:a", "exit", "9").await.unwrap();
    let mut run = Run::get(&mut conn, "a").await.unwrap().unwrap();
    run.exit_code = Some(1);
    Run::save(&mut conn, &run).await.unwrap();
    let names = fields(&mut conn, "run:a").await;
    assert!(!names.contains(&"exit".to_owned()), "{names:?}");
    // Its index entries are where they were.
    let listed = Run::by_user_id(&mut conn, "u", Page::newest(10)).await.unwrap();
    assert_eq!(listed.items, [run]);
}

async fn an_old_enum_value_is_read_and_written_anew(mut conn: Store) {
    for (id, old) in [("b", "completed"), ("c", "ok")] {
        let _: () = redis::cmd("HSET")
            .arg(format!("run:{id}"))
            .arg(&["id", id, "user_id", "u", "created_at", "1", "result", old])
            .query_async(&mut conn)
            .await
            .unwrap();
        let run = Run::get(&mut conn, id).await.unwrap().unwrap();
        assert_eq!(run.outcome, Some(Outcome::Succeeded), "{old} under an old field name");
        Run::save(&mut conn, &run).await.unwrap();
        let stored: Option<String> = conn.hget(format!("run:{id}"), "outcome").await.unwrap();
        assert_eq!(stored.as_deref(), Some("succeeded"), "written as it is called now");
        let gone: Option<String> = conn.hget(format!("run:{id}"), "result").await.unwrap();
        assert_eq!(gone, None);
    }
    // An unknown value is still an error that names it.
    let _: () = conn.hset("run:b", "outcome", "finished").await.unwrap();
    let err = Run::get(&mut conn, "b").await.unwrap_err();
    assert!(err.to_string().contains("outcome"), "{err}");
    // The schema says what it still reads.
    let schema = Run::META.schema();
    let outcome = schema["fields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "outcome")
        .unwrap();
    assert_eq!(outcome["aliases"], serde_json::json!(["result"]));
    assert_eq!(
        outcome["value_aliases"],
        serde_json::json!({"completed": "succeeded", "ok": "succeeded"})
    );
}
