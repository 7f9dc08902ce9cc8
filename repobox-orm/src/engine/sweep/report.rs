//! What a sweep of one index reports.

/// What a check or repair of one index found.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct IndexReport {
    /// The index's kind: `sorted`, `set` or `unique`.
    pub kind: &'static str,
    /// The index's name (`by_user_id`).
    pub index: &'static str,
    /// The index's key template.
    pub template: &'static str,
    /// Whether what needed a repair was repaired (`repair_indexes`) or only counted (`check_indexes`).
    pub repaired: bool,
    /// Index keys scanned: keys of the template's shape and Redis type.
    pub keys: u64,
    /// Members looked at.
    pub members: u64,
    /// Members whose entity is gone.
    pub gone: u64,
    /// Members whose entity no longer belongs under the key.
    pub mismatched: u64,
    /// Sorted members whose score was not their entity's.
    pub rescored: u64,
    /// Entities missing from the index key their fields give (an entity
    /// changed by a client that does not maintain the index): a repair
    /// creates their entries.
    pub missing: u64,
    /// Unique values claimed by more than one entity (another client wrote
    /// a second entity with a value the first holds): never repaired, the
    /// value's owner is left as it is and each other claimant reported in
    /// `problems`, for a person to decide.
    pub conflicts: u64,
    /// Members that are not ids, or whose entity does not decode: left alone.
    pub bad: u64,
    /// Keys that matched the scan pattern but are not index keys (another
    /// shape, or another Redis type): left alone.
    pub skipped: u64,
    /// What was wrong with the bad members (at most 100 messages).
    pub problems: Vec<String>,
}

impl IndexReport {
    /// Members and entries that a repair changes: entries to remove (`gone`,
    /// `mismatched`), to re-score and to create (`missing`).
    pub fn needs_repair(&self) -> u64 {
        self.gone
            .saturating_add(self.mismatched)
            .saturating_add(self.rescored)
            .saturating_add(self.missing)
    }
}
