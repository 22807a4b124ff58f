//! Who the members of a period are: [`MemberSource`], the boundary between the accounting and
//! wherever the member directory lives.
//!
//! [`MembersFile`] reads a Members file (PRODUCT §4; the `account` command, tests, and a daemon
//! configured with `[accounting] members_file`). [`Directory`] reads the member directory (the
//! Synapse admin-API sync into SQLite, `accounting::directory`): the daemon's default.

use crate::accounting::members::Members;
use crate::accounting::model::Period;
use crate::config::ConfigError;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MemberSourceError {
    /// A Members file that cannot be read or is malformed: `file:line: key: message`.
    #[error(transparent)]
    File(#[from] ConfigError),
    /// Any other source (the member directory), with its own description.
    #[error("member directory: {0}")]
    Directory(String),
}

/// The members (with their households, joined/left times) that a period's statement splits
/// energy and costs over.
pub trait MemberSource: Send + Sync {
    /// Every member whose membership overlaps `period`, with their households.
    fn members(&self, period: &Period) -> Result<Members, MemberSourceError>;

    /// Media bytes stored per member (`cost_m`'s storage part). None by default.
    fn media_bytes(&self, _period: &Period) -> Result<BTreeMap<String, u64>, MemberSourceError> {
        Ok(BTreeMap::new())
    }
}

/// A Members file, read afresh for each period (an edit takes effect at the next statement).
#[derive(Debug, Clone)]
pub struct MembersFile {
    path: PathBuf,
}

impl MembersFile {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl MemberSource for MembersFile {
    fn members(&self, _period: &Period) -> Result<Members, MemberSourceError> {
        Ok(Members::load(&self.path)?)
    }
}

/// A fixed set of members (tests, and callers that already hold them).
impl MemberSource for Members {
    fn members(&self, _period: &Period) -> Result<Members, MemberSourceError> {
        Ok(self.clone())
    }
}

/// The member directory in the supervisor's database (`accounting::directory`): members and
/// households as synced from Synapse and managed with `hearth-supervisor household`, media bytes
/// as the time-weighted mean over the period. Opens its own read connection per call (a monthly
/// close, or a page asking for the month so far).
#[derive(Debug, Clone)]
pub struct Directory {
    db: PathBuf,
}

impl Directory {
    pub fn new(db: impl Into<PathBuf>) -> Self {
        Self { db: db.into() }
    }

    fn conn(&self) -> Result<rusqlite::Connection, MemberSourceError> {
        crate::storage::open_connection(&self.db)
            .map_err(|e| MemberSourceError::Directory(e.to_string()))
    }
}

impl MemberSource for Directory {
    fn members(&self, period: &Period) -> Result<Members, MemberSourceError> {
        crate::accounting::directory::members_for(&self.conn()?, period)
            .map_err(|e| MemberSourceError::Directory(e.to_string()))
    }

    fn media_bytes(&self, period: &Period) -> Result<BTreeMap<String, u64>, MemberSourceError> {
        crate::accounting::directory::media_bytes_for(&self.conn()?, period)
            .map_err(|e| MemberSourceError::Directory(e.to_string()))
    }
}
