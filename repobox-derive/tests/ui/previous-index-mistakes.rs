//! Every mistake in `#[index(..., previous = "...")]`, each in a module of its own.

use repobox_orm::prelude::*;

mod is_the_template {
    use super::*;

    #[derive(RedisEntity)]
    #[key("job:<id>")]
    #[index(sorted = "jobs:<user_id>", score = created_at, previous = "jobs:<user_id>")]
    pub struct Job {
        pub id: String,
        pub user_id: String,
        pub created_at: i64,
    }
}

mod fewer_placeholders {
    use super::*;

    #[derive(RedisEntity)]
    #[key("job:<id>")]
    #[index(set = "jobs:{<user_id>}:<status>", previous = "jobs:<status>")]
    pub struct Job {
        pub id: String,
        pub user_id: String,
        pub status: String,
    }
}

mod more_placeholders {
    use super::*;

    #[derive(RedisEntity)]
    #[key("job:<id>")]
    #[index(set = "jobs:{<user_id>}", previous = "jobs:<user_id>:<status>")]
    pub struct Job {
        pub id: String,
        pub user_id: String,
        pub status: String,
    }
}

mod on_a_unique_index {
    use super::*;

    #[derive(RedisEntity)]
    #[key("user:<id>")]
    #[index(unique = "user:email:{<email>}", previous = "user:email:<email>")]
    pub struct User {
        pub id: String,
        pub email: String,
    }
}

mod unknown_placeholder {
    use super::*;

    #[derive(RedisEntity)]
    #[key("job:<id>")]
    #[index(set = "jobs:{<user_id>}", previous = "jobs:<owner>")]
    pub struct Job {
        pub id: String,
        pub user_id: String,
    }
}

mod given_twice {
    use super::*;

    #[derive(RedisEntity)]
    #[key("job:<id>")]
    #[index(set = "jobs:{<user_id>}", previous = "jobs:<user_id>", previous = "j:<user_id>")]
    pub struct Job {
        pub id: String,
        pub user_id: String,
    }
}

fn main() {}
