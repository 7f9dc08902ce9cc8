//! Every attribute mistake is a compile error that points at the token.
//! Bless with `TRYBUILD=overwrite cargo test -p repobox-derive --test compile_fail`.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*.rs");
    t.pass("tests/pass/*.rs");
}
