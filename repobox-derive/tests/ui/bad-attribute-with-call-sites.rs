// A bad attribute is the only error, even where the generated functions,
// the patch and the field enum are used.
use repobox_orm::prelude::*;

#[derive(RedisEntity)]
#[key("job:<id>")]
#[ttl(weeks = 1)]
#[index(sorted = "jobs:user:<user_id>", score = created_at)]
pub struct Job {
    pub id: String,
    pub user_id: String,
    pub created_at: i64,
    pub note: Option<String>,
}

async fn uses(conn: &mut Store) -> repobox_orm::Result<()> {
    let job = Job::get(conn, "1").await?.unwrap();
    Job::create(conn, &job).await?;
    Job::update(conn, "1", &JobPatch { note: Some(None), ..Default::default() }).await?;
    let _page: Listing<Job> = Job::by_user_id(conn, "u1", Page::newest(10)).await?;
    let _n: u64 = Job::count_by_user_id(conn, "u1").await?;
    let _key: String = Job::key_for("1")?;
    let _field = JobField::CreatedAt;
    Job::delete_with(conn, "1", &[]).await?;
    Ok(())
}

fn main() {
    let _ = uses;
}
