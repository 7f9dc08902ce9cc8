//! Every mistake in `#[key("...", previous = "...")]`, each in a module of its own.

use repobox_orm::prelude::*;

mod is_the_key {
    use super::*;

    #[derive(RedisEntity)]
    #[key("job:<id>", previous = "job:<id>")]
    pub struct Job {
        pub id: String,
    }
}

mod parts_in_another_order {
    use super::*;

    #[derive(RedisEntity)]
    #[key("repo:<owner>:<name>", previous = "repo:<name>:<owner>")]
    pub struct Repo {
        pub owner: String,
        pub name: String,
    }
}

mod placeholder_not_in_key {
    use super::*;

    #[derive(RedisEntity)]
    #[key("job:{<user_id>}:<id>", previous = "job:<status>:<id>")]
    pub struct Job {
        pub id: String,
        pub user_id: String,
        pub status: String,
    }
}

mod unknown_placeholder {
    use super::*;

    #[derive(RedisEntity)]
    #[key("job:{<user_id>}:<id>", previous = "job:<job_id>")]
    pub struct Job {
        pub id: String,
        pub user_id: String,
    }
}

mod with_encrypted_field {
    use super::*;

    #[derive(RedisEntity)]
    #[key("cred:{<user_id>}:<id>", previous = "cred:<id>")]
    pub struct Credential {
        pub id: String,
        pub user_id: String,
        #[redis(encrypted)]
        pub token: String,
    }
}

mod without_placeholder {
    use super::*;

    #[derive(RedisEntity)]
    #[key("job:<id>", previous = "jobs")]
    pub struct Job {
        pub id: String,
    }
}

fn main() {}
