// A field named with a raw identifier is a placeholder by its plain name or
// its raw one, and the generated functions take it as a parameter.
#![allow(dead_code)]

use repobox_orm::prelude::*;

#[derive(RedisEntity)]
#[key("thing:<r#type>:<id>")]
#[index(set = "things:<type>")]
struct Thing {
    r#type: String,
    id: u32,
    r#match: Option<String>,
}

async fn of_type(conn: &mut Store) -> repobox_orm::Result<Listing<Thing>> {
    Thing::by_type(conn, "box").await
}

fn main() {
    assert_eq!(Thing::key_for("box", 7u32).unwrap(), "thing:box:7");
    let thing = Thing {
        r#type: "box".into(),
        id: 7,
        r#match: None,
    };
    assert_eq!(thing.key().unwrap(), "thing:box:7");
    assert_eq!(thing.entity_id().unwrap(), "box:7");
    assert_eq!(Thing::index_key_by_type("box").unwrap(), "things:box");
    assert!(matches!(
        Thing::index_key_by_type("a:b"),
        Err(repobox_orm::Error::InvalidKeyPart { .. })
    ));
    let _ = ThingField::Type;
    assert_eq!(ThingField::Match.name(), "match");
    let _ = of_type;
}
