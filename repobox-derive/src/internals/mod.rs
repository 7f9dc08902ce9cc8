//! The derive's front end, after serde_derive's: parse the input into an IR
//! (`ast`, with `attr` and `symbol` for the attribute grammar and `template`
//! for key templates, `slot` for Redis Cluster hash tags), check the rules that span fields (`check`), and
//! collect every error on the way (`ctxt`). `names` lists what the expansion
//! names, for the check and the emitter both; nothing here imports the emitter.

pub mod ast;
pub mod attr;
pub mod case;
pub mod check;
pub mod ctxt;
pub mod names;
pub mod slot;
pub mod symbol;
pub mod template;
pub mod unraw;
