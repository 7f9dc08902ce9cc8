//! Expansion snapshots: the prettyplease-formatted output of each attribute
//! combination; and the names an expansion gives its items, held to
//! `internals::names`.

use std::collections::BTreeSet;

use quote::quote;

use crate::internals::names;

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
            #[redis(alias = "sig", alias = "signal_no")]
            pub signal: Option<i32>,
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
fn previous_key() {
    insta::assert_snapshot!(expand(quote! {
        #[key("job:{<user_id>}:<id>", previous = "job:<id>")]
        #[index(sorted = "jobs:{<user_id>}", score = created_at)]
        struct Job {
            id: String,
            user_id: String,
            created_at: i64,
        }
    }));
}

#[test]
fn previous_index_template() {
    insta::assert_snapshot!(expand(quote! {
        #[key("job:{<user_id>}:<id>", previous = "job:<id>")]
        #[index(sorted = "jobs:user:{<user_id>}", score = created_at, previous = "jobs:user:<user_id>")]
        #[index(set = "jobs:{<user_id>}:status:<status>", previous = "jobs:status:<status>:<user_id>")]
        struct Job {
            id: String,
            user_id: String,
            status: String,
            created_at: i64,
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
            #[redis(rename = "done", alias = "completed")]
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

/// The items of the expansion's inherent `impl` blocks on the entity
/// `entity`: each name, and a function's parameter names.
fn inherent_items(input: proc_macro2::TokenStream, entity: &str) -> Vec<(String, Vec<String>)> {
    let input: syn::DeriveInput = syn::parse2(input).expect("test input parses");
    let file: syn::File = syn::parse2(crate::entity::derive(&input)).expect("expansion is valid Rust");
    let blocks = file.items.into_iter().filter_map(|item| match item {
        syn::Item::Const(c) => match *c.expr {
            syn::Expr::Block(b) => Some(b.block.stmts),
            _ => None,
        },
        _ => None,
    });
    let impls = blocks.flatten().filter_map(|stmt| match stmt {
        syn::Stmt::Item(syn::Item::Impl(i)) if i.trait_.is_none() => Some(i),
        _ => None,
    });
    let on_entity = impls.filter(|i| matches!(&*i.self_ty, syn::Type::Path(t) if t.path.is_ident(entity)));
    on_entity
        .flat_map(|i| i.items)
        .map(|item| match item {
            syn::ImplItem::Const(c) => (c.ident.to_string(), Vec::new()),
            syn::ImplItem::Fn(f) => {
                let params = f.sig.inputs.iter().filter_map(|arg| match arg {
                    syn::FnArg::Typed(t) => match &*t.pat {
                        syn::Pat::Ident(p) => Some(p.ident.to_string()),
                        other => panic!("unexpected parameter pattern {}", quote!(#other)),
                    },
                    syn::FnArg::Receiver(_) => None,
                });
                (f.sig.ident.to_string(), params.collect())
            }
            other => panic!("unexpected item {}", quote!(#other)),
        })
        .collect()
}

#[test]
fn the_expansion_and_its_stubs_name_exactly_the_listed_items() {
    // Every kind of index and a TTL, so that every listed name is generated;
    // `weeks` is an unknown unit, which makes the fallback stub the same items.
    let entity = |ttl: proc_macro2::TokenStream| {
        quote! {
            #[key("job:<id>")]
            #ttl
            #[index(sorted = "jobs:user:<user_id>", score = created_at)]
            #[index(set = "jobs:repo:<repo>")]
            #[index(unique = "job:slug:<slug>", name = "with_slug")]
            pub struct Job {
                pub id: String,
                pub user_id: String,
                pub repo: String,
                pub slug: String,
                pub created_at: i64,
            }
        }
    };
    let placeholders = ["id", "user_id", "repo", "slug"];
    let mut want: BTreeSet<String> = names::ENTITY_ITEMS.iter().map(|n| n.to_string()).collect();
    for index in ["by_user_id", "by_repo"] {
        want.extend([index.to_owned(), names::count_fn(index), names::index_key_fn(index)]);
    }
    want.extend(["with_slug".to_owned(), names::index_key_fn("with_slug")]);
    let params: BTreeSet<String> = names::PARAMS.iter().map(|n| n.to_string()).collect();
    for (what, ttl) in [
        ("expansion", quote!(#[ttl(days = 1)])),
        ("fallback", quote!(#[ttl(weeks = 1)])),
    ] {
        let items = inherent_items(entity(ttl), "Job");
        let named: Vec<&String> = items.iter().map(|(name, _)| name).collect();
        assert_eq!(named.iter().copied().cloned().collect::<BTreeSet<_>>(), want, "{what}");
        assert_eq!(named.len(), want.len(), "{what}: an item is generated twice");
        let used: BTreeSet<String> = items
            .into_iter()
            .flat_map(|(_, params)| params)
            .filter(|p| !placeholders.contains(&p.as_str()))
            .collect();
        assert_eq!(used, params, "{what}: parameters besides placeholders");
    }
}
