//! The `# Errors` sections of the generated calls' documentation: what
//! each call refuses, then what every read or write can fail with.

use proc_macro2::TokenStream;
use quote::quote;

/// What every read can also fail with.
const READ_ERRORS: &str = "`Err(Timeout)`, `Err(Closed)` or `Err(Redis)` when Redis does not answer in time, \
     the store is closed, or the server answers with an error.";

/// What every write can also fail with.
const WRITE_ERRORS: &str = "`Err(WriteOutcomeUnknown)` when the connection failed after the write was sent \
     (it may have been applied: read before trying again); `Err(ReadOnly)`, `Err(OutOfMemory)` or \
     `Err(WrongType)` (a key of another type) when the server refused it, nothing written; `Err(Timeout)`, \
     `Err(Closed)` or `Err(Redis)` otherwise.";

/// Whether a generated call reads or writes, for its `# Errors` section.
#[derive(Clone, Copy)]
pub(crate) enum Calls {
    Read,
    Write,
}

/// The `# Errors` section of a generated call's documentation: `specific`
/// (what the call itself refuses), then what every read or write can fail
/// with.
pub(crate) fn errors(specific: &str, calls: Calls) -> TokenStream {
    let common = match calls {
        Calls::Read => READ_ERRORS,
        Calls::Write => WRITE_ERRORS,
    };
    let text = format!("\n# Errors\n\n{specific}{common}");
    quote!(#[doc = #text])
}

/// The `# Errors` section of each generated call of the entity's API.
pub(super) struct CallErrors {
    pub errs_create: TokenStream,
    pub errs_save: TokenStream,
    pub errs_create_and_append: TokenStream,
    pub errs_create_and_append_many: TokenStream,
    pub errs_create_many: TokenStream,
    pub errs_save_many: TokenStream,
    pub errs_get: TokenStream,
    pub errs_get_with_clock: TokenStream,
    pub errs_exists: TokenStream,
    pub errs_update: TokenStream,
    pub errs_delete: TokenStream,
    pub errs_delete_with: TokenStream,
    pub errs_ttl: TokenStream,
    pub errs_expire: TokenStream,
    pub errs_update_expire: TokenStream,
    pub errs_get_many: TokenStream,
    pub errs_delete_many: TokenStream,
}

impl CallErrors {
    pub(super) fn new() -> Self {
        let errs_create = errors(
            "`Err(AlreadyExists)` when the key exists, `Err(UniqueViolation)` when another entity holds a unique value; nothing is written then. `Err(Contention)` when other writers kept moving its index entries (16 attempts), nothing written. `Err(Encode)` or `Err(InvalidKeyPart)` when a field cannot be stored or a key part is bad, before any I/O. ",
            Calls::Write,
        );
        let errs_save = errors(
            "`Err(UniqueViolation)` when another entity holds a unique value, nothing written; `Err(Contention)` when other writers kept moving its index entries (16 attempts). `Err(Encode)` or `Err(InvalidKeyPart)` when a field cannot be stored or a key part is bad, before any I/O. ",
            Calls::Write,
        );
        let errs_create_and_append = errors(
            "`Err(AlreadyExists)`, `Err(UniqueViolation)` or `Err(Contention)`: nothing written or appended. `Err(Encode)` or `Err(InvalidKeyPart)` when a field cannot be stored or a key part is bad, before any I/O. ",
            Calls::Write,
        );
        let errs_create_and_append_many = errors(
            "`Err(InvalidArgument)` when `entries` and `entities` differ in length, before any I/O. Each entity's own refusal (`AlreadyExists`, `UniqueViolation`, `Contention`, `Encode`, `InvalidKeyPart`) is in its place in the answer, with nothing of it written or appended. ",
            Calls::Write,
        );
        let errs_create_many = errors(
            "Each entity's own refusal (`AlreadyExists`, `UniqueViolation`, `Contention`, `Encode`, `InvalidKeyPart`) is in its place in the answer, nothing of it written; the call itself fails only as every write can. ",
            Calls::Write,
        );
        let errs_save_many = errors(
            "Each entity's own refusal (`UniqueViolation`, `Contention`, `Encode`, `InvalidKeyPart`) is in its place in the answer; the call itself fails only as every write can. ",
            Calls::Write,
        );
        let errs_get = errors(
            "`Err(InvalidKeyPart)` for a bad key part, before any I/O. `Err(Decode)` or `Err(Decrypt)` when the stored hash does not decode (the error names the key and the field). ",
            Calls::Read,
        );
        let errs_get_with_clock = errors(
            "`Err(InvalidKeyPart)` for a bad key part, before any I/O. `Err(Decode)` or `Err(Decrypt)` when the stored hash does not decode (the error names the key and the field). ",
            Calls::Read,
        );
        let errs_exists = errors(
            "`Err(InvalidKeyPart)` for a bad key part, before any I/O. ",
            Calls::Read,
        );
        let errs_update = errors(
            "`Err(NotFound)` when the entity is absent; `Err(UniqueViolation)` when another entity holds a unique value the patch sets; `Err(Contention)` when other writers kept moving its index entries; nothing is written then. `Err(Encode)` or `Err(InvalidKeyPart)` when a field cannot be stored or a key part is bad, before any I/O. ",
            Calls::Write,
        );
        let errs_delete = errors(
            "`Err(Contention)` when other writers kept moving its index entries. `Err(InvalidKeyPart)` for a bad key part, before any I/O. ",
            Calls::Write,
        );
        let errs_delete_with = errors(
            "`Err(Contention)` when other writers kept moving its index entries. `Err(InvalidKeyPart)` for a bad key part, before any I/O. ",
            Calls::Write,
        );
        let errs_ttl = errors(
            "`Err(InvalidKeyPart)` for a bad key part, before any I/O. ",
            Calls::Read,
        );
        let errs_expire = errors(
            "`Err(NotFound)` when the entity is absent; `Err(InvalidArgument)` for a TTL Redis cannot keep. `Err(InvalidKeyPart)` for a bad key part, before any I/O. ",
            Calls::Write,
        );
        let errs_update_expire = errors(
            "`Err(NotFound)` when the entity is absent; `Err(UniqueViolation)` or `Err(Contention)` as `update`; `Err(InvalidArgument)` for a TTL Redis cannot keep. `Err(Encode)` or `Err(InvalidKeyPart)` when a field cannot be stored or a key part is bad, before any I/O. ",
            Calls::Write,
        );
        let errs_get_many = errors(
            "`Err(InvalidKeyPart)` for a bad key part of any id, before any I/O (nothing read). ",
            Calls::Read,
        );
        let errs_delete_many = errors(
            "`Err(InvalidKeyPart)` for a bad key part of any id, before any I/O (nothing deleted). Each entity's own refusal (`WrongType`, `Contention`) is in its place in the answer, nothing of it deleted; the call itself fails only as every write can. ",
            Calls::Write,
        );
        CallErrors {
            errs_create,
            errs_save,
            errs_create_and_append,
            errs_create_and_append_many,
            errs_create_many,
            errs_save_many,
            errs_get,
            errs_get_with_clock,
            errs_exists,
            errs_update,
            errs_delete,
            errs_delete_with,
            errs_ttl,
            errs_expire,
            errs_update_expire,
            errs_get_many,
            errs_delete_many,
        }
    }
}
