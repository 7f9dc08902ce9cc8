//! `E::delete_if`: a delete that is also a compare-and-set.

use redis::AsyncCommands;
use repobox_orm::prelude::*;

#[derive(RedisEntity, Debug, Clone, PartialEq)]
#[key("doc:<id>")]
#[index(sorted = "docs:owner:<owner>", score = at)]
#[index(set = "docs:state:<state>")]
struct Doc {
    id: String,
    owner: String,
    state: String,
    at: i64,
}

repobox_orm::on_both_backends!(delete_if_deletes_only_while_its_conditions_hold);

async fn delete_if_deletes_only_while_its_conditions_hold(mut conn: Store) {
    let doc = Doc {
        id: "a".into(),
        owner: "o".into(),
        state: "failed".into(),
        at: 1,
    };
    Doc::create(&mut conn, &doc).await.unwrap();
    let _: () = conn.set("doc:a:body", "x").await.unwrap();
    let also = ["doc:a:body".to_owned()];
    let was_failed = DocPatch {
        state: Some("failed".into()),
        ..Default::default()
    };
    // Someone moved it on since it was read: nothing is deleted.
    let queued = DocPatch {
        state: Some("queued".into()),
        ..Default::default()
    };
    Doc::update(&mut conn, "a", &queued).await.unwrap();
    let err = Doc::delete_if(&mut conn, "a", &also, &was_failed).await.unwrap_err();
    assert!(
        matches!(&err, Error::Conflict { field, .. } if field == "state"),
        "{err}"
    );
    assert!(Doc::exists(&mut conn, "a").await.unwrap());
    let body: Option<String> = conn.get("doc:a:body").await.unwrap();
    assert_eq!(body.as_deref(), Some("x"), "the keys that go with it stay");
    let listed = Doc::by_owner(&mut conn, "o", Page::newest(10)).await.unwrap();
    assert_eq!(listed.items.len(), 1, "its index entries stay");
    let queued_set: Vec<String> = conn.smembers("docs:state:queued").await.unwrap();
    assert_eq!(queued_set, ["a"]);
    // While they hold: the entity, its entries and its keys go together.
    let is_queued = DocPatch {
        state: Some("queued".into()),
        owner: Some("o".into()),
        ..Default::default()
    };
    assert!(Doc::delete_if(&mut conn, "a", &also, &is_queued).await.unwrap());
    assert!(!Doc::exists(&mut conn, "a").await.unwrap());
    let gone: Option<String> = conn.get("doc:a:body").await.unwrap();
    assert_eq!(gone, None);
    let owner: u64 = conn.zcard("docs:owner:o").await.unwrap();
    let state: u64 = conn.scard("docs:state:queued").await.unwrap();
    assert_eq!((owner, state), (0, 0));
    // An entity that is not there: `false`.
    assert!(!Doc::delete_if(&mut conn, "a", &[], &is_queued).await.unwrap());
}

/// An index key that holds another type cannot hold the entities that
/// belong in it: the check says so (a finding for a person), and a repair
/// leaves it alone and says so again.
#[tokio::test]
async fn an_index_key_of_another_type_is_a_finding_not_a_pass() {
    let server = repobox_orm::testing::RedisServer::start();
    let mut conn = Store::open(server.url()).unwrap();
    for id in ["a", "b", "c"] {
        let doc = Doc {
            id: id.into(),
            owner: "o".into(),
            state: "failed".into(),
            at: 1,
        };
        Doc::create(&mut conn, &doc).await.unwrap();
    }
    let _: () = conn.del("docs:state:failed").await.unwrap();
    let _: () = conn.set("docs:state:failed", "hello").await.unwrap();
    for reports in [
        repobox_orm::check_indexes::<Doc, _>(&mut conn).await.unwrap(),
        repobox_orm::repair_indexes::<Doc, _>(&mut conn).await.unwrap(),
    ] {
        let state = reports.iter().find(|r| r.index == "by_state").unwrap();
        assert_eq!(state.bad, 3, "{state:?}");
        assert!(
            state
                .problems
                .iter()
                .any(|p| p.contains("docs:state:failed") && p.contains("another type")),
            "{state:?}"
        );
        let owner = reports.iter().find(|r| r.index == "by_owner").unwrap();
        assert_eq!((owner.bad, owner.missing), (0, 0), "{owner:?}");
    }
    let left: String = conn.get("docs:state:failed").await.unwrap();
    assert_eq!(left, "hello", "not ours to remove");
}
