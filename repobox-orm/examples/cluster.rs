//! A Redis Cluster: an entity whose key and index share a hash tag is
//! written atomically in one slot (`#[cluster(co_located)]` makes that a
//! compile-time promise), and `Store` routes, splits and follows redirects.
//!
//! ```sh
//! REDIS_URL=redis+cluster://127.0.0.1:7000,127.0.0.1:7001 cargo run -p repobox-orm --example cluster
//! ```

use repobox_orm::prelude::*;

#[derive(RedisEntity, Debug, Clone, PartialEq)]
#[key("example:repo:{<owner>}:<name>")]
#[index(sorted = "example:repos:{<owner>}", score = stars)]
#[cluster(co_located)]
struct Repo {
    owner: String,
    name: String,
    stars: i64,
}

#[tokio::main]
async fn main() -> repobox_orm::Result<()> {
    let mut store = Store::from_env()?;
    println!("a cluster: {}", store.is_cluster());
    let owners = ["ann", "bob", "cy"];
    let repos: Vec<Repo> = owners
        .iter()
        .flat_map(|owner| {
            (0..5).map(move |i| Repo {
                owner: owner.to_string(),
                name: format!("repo-{i}"),
                stars: i * 10,
            })
        })
        .collect();
    // One pipeline, split per slot by the store; each repo atomic with its entry.
    for saved in Repo::save_many(&mut store, &repos).await? {
        saved?;
    }
    for owner in owners {
        let top = Repo::by_owner(&mut store, owner, Page::newest(2)).await?;
        let names: Vec<&str> = top.items.iter().map(|r| r.name.as_str()).collect();
        println!("{owner}: {names:?}");
    }
    // Typed ids, one tuple of key parts per entity, across slots.
    let ids: Vec<(&str, &str)> = repos.iter().map(|r| (r.owner.as_str(), r.name.as_str())).collect();
    let read = Repo::get_many(&mut store, &ids).await?;
    println!("read back {} of {}", read.items.iter().flatten().count(), repos.len());
    let deleted = Repo::delete_many(&mut store, &ids).await?;
    println!("deleted {}", deleted.iter().filter(|d| matches!(d, Ok(true))).count());
    store.close().await;
    Ok(())
}
