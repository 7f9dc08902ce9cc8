//! The derive's front end, after serde_derive's: parse the input into an IR
//! (`ast`, with `attr` and `symbol` for the attribute grammar and `template`
//! for key templates, `slot` for Redis Cluster hash tags), check the rules that span fields (`check`), and
//! collect every error on the way (`ctxt`).

pub mod ast;
pub mod attr;
pub mod case;
pub mod check;
pub mod ctxt;
pub mod slot;
pub mod symbol;
pub mod template;
pub mod unraw;
