//! Expansion snapshots: the prettyplease-formatted output of each attribute combination.

use quote::quote;

fn expand(input: proc_macro2::TokenStream) -> String {
    let input: syn::DeriveInput = syn::parse2(input).expect("test input parses");
    let output = crate::entity::derive(&input);
    let file: syn::File = syn::parse2(output).expect("expansion is valid Rust");
    prettyplease::unparse(&file)
}

fn expand_value(input: proc_macro2::TokenStream) -> String {
    let input: syn::DeriveInput = syn::parse2(input).expect("test input parses");
    let file: syn::File = syn::parse2(crate::value::derive(&input)).expect("valid Rust");
    prettyplease::unparse(&file)
}

#[test]
fn key_only() {
    insta::assert_snapshot!(expand(quote! {
        #[key("user:<id>")]
        pub struct User {
            pub id: String,
            pub name: String,
            pub age: u32,
        }
    }));
}

#[test]
fn key_and_ttl() {
    insta::assert_snapshot!(expand(quote! {
        #[key("session:<id>")]
        #[ttl(days = 7, hours = 1)]
        pub struct Session {
            pub id: String,
            pub expires_at: i64,
        }
    }));
}

#[test]
fn sorted_index() {
    insta::assert_snapshot!(expand(quote! {
        #[key("job:<id>")]
        #[index(sorted = "jobs:user:<user_id>", score = created_at)]
        pub struct Job {
            pub id: String,
            pub user_id: String,
            pub created_at: i64,
        }
    }));
}

#[test]
fn set_index_with_ttl() {
    insta::assert_snapshot!(expand(quote! {
        #[key("session:<id>")]
        #[ttl(minutes = 30)]
        #[index(set = "sessions:user:<user_id>")]
        pub struct Session {
            pub id: String,
            pub user_id: String,
        }
    }));
}

#[test]
fn unique_index_with_name() {
    insta::assert_snapshot!(expand(quote! {
        #[key("user:<id>")]
        #[index(unique = "user:email:<email>", name = "with_email")]
        pub struct User {
            pub id: String,
            pub email: String,
        }
    }));
}

#[test]
fn field_attributes() {
    insta::assert_snapshot!(expand(quote! {
        #[key("job:<id>")]
        pub struct Job {
            pub id: u64,
            #[redis(rename = "exit")]
            pub exit_code: Option<i32>,
            #[redis(skip)]
            pub cached: Vec<u8>,
            #[redis(default)]
            pub retries: u32,
            #[redis(json)]
            pub env: Vec<(String, String)>,
            #[redis(json, default)]
            pub labels: Vec<String>,
            #[redis(encrypted)]
            pub token: String,
        }
    }));
}

#[test]
fn multi_placeholder_hash_tagged_key() {
    insta::assert_snapshot!(expand(quote! {
        #[key("repo_cache:{<user_id>}:<provider>")]
        #[ttl(minutes = 5)]
        pub struct RepoCache {
            pub user_id: String,
            pub provider: Provider,
            pub fetched_at: i64,
        }
    }));
}

#[test]
fn raw_identifier_placeholder_and_crate_override() {
    insta::assert_snapshot!(expand(quote! {
        #[key("thing:<r#type>", max_part_len = 64)]
        #[redis(crate = "::my::repobox")]
        #[index(sorted = "things:<owner>", score = r#ref)]
        pub struct Thing {
            pub r#type: String,
            pub owner: String,
            pub r#ref: u64,
        }
    }));
}

#[test]
fn fallback_stubs_everything_a_caller_can_name() {
    insta::assert_snapshot!(expand(quote! {
        #[key("job:<id>")]
        #[ttl(weeks = 1)]
        #[index(set = "jobs:user:<user_id>")]
        pub struct Job {
            pub id: String,
            pub user_id: String,
        }
    }));
}

#[test]
fn redis_value_enum() {
    insta::assert_snapshot!(expand_value(quote! {
        pub enum Status {
            Queued,
            InProgress,
            #[redis(rename = "done")]
            Succeeded,
        }
    }));
}

#[test]
fn errors_are_collected() {
    // Every bad attribute is reported at once, not just the first.
    let input: syn::DeriveInput = syn::parse2(quote! {
        #[key("user:<nope>")]
        #[ttl(weeks = 1)]
        #[index(sorted = "a:<id>", score = missing)]
        pub struct User {
            pub id: String,
            pub name: String,
            #[redis(renam = "x")]
            pub other: String,
        }
    })
    .unwrap();
    let out = crate::entity::derive(&input).to_string();
    assert_eq!(out.matches("compile_error").count(), 4, "{out}");
}
