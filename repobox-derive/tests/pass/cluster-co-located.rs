// Entities whose key and index templates share one hash tag are co-located;
// `#[cluster(co_located)]` holds them to it.
#![allow(dead_code)]

use repobox_orm::prelude::*;

#[derive(RedisEntity)]
#[key("job:{<user_id>}:<id>")]
#[cluster(co_located)]
#[index(sorted = "jobs:{<user_id>}:by_time", score = created_at)]
#[index(unique = "job:{<user_id>}:slug:<slug>")]
struct Job {
    user_id: String,
    id: String,
    slug: String,
    created_at: i64,
}

#[derive(RedisEntity)]
#[key("hot:{jobs}:<id>")]
#[index(set = "hot:{jobs}:all", name = "all")]
struct Hot {
    id: String,
}

#[derive(RedisEntity)]
#[key("user:<id>")]
#[index(unique = "user:email:<email>")]
struct User {
    id: String,
    email: String,
}

fn main() {
    assert!(Job::CO_LOCATED);
    assert!(Hot::CO_LOCATED, "a constant tag co-locates too, in one hot slot");
    assert!(!User::CO_LOCATED);
    let meta = <Job as RedisEntity>::META;
    assert!(meta.co_located && meta.indexes.iter().all(|ix| ix.co_located));
    // An index key is built around its hash tag, a constant one too.
    assert_eq!(Job::index_key_by_user_id("u1").unwrap(), "jobs:{u1}:by_time");
    assert_eq!(
        Job::index_key_by_user_id_and_slug("u1", "s").unwrap(),
        "job:{u1}:slug:s"
    );
    assert_eq!(Hot::index_key_all().unwrap(), "hot:{jobs}:all");
}
