//! Transparency: who can technically access the data, and what members are getting into
//! (PRODUCT §1, §6; the seed: "welche Personen technisch Zugriff auf die Daten haben",
//! "erklären, worauf man sich einlässt").
//!
//! - [`inventory`]: the OS side, gathered by a root-run collector into a JSON file the daemon
//!   reads (`hearth-supervisor access inventory`; units `hearth-access-inventory.*`).
//! - [`access`]: the page's model of "who can access the data": that file, Synapse's server
//!   admins from the member directory, and the uses of the supervisor's own admin token
//!   counted from the audit log; a task refreshes the database part into memory, so handlers
//!   never touch the database.
//! - [`about`]: the operator-editable Markdown pages ("what you are getting into"), templates
//!   in German and English shipped in the binary, rendered with raw HTML escaped.

pub mod about;
pub mod access;
pub mod inventory;

use std::path::PathBuf;

/// What the pages need: where the operator's pages and the collector's file are, and the
/// database part the daemon keeps fresh.
#[derive(Debug, Clone)]
pub struct Transparency {
    pub pages_dir: PathBuf,
    pub access_file: PathBuf,
    pub db: access::SharedDb,
}

impl Transparency {
    pub fn new(c: &crate::config::TransparencyConfig) -> Transparency {
        Transparency {
            pages_dir: c.pages_dir.clone(),
            access_file: c.access_file.clone(),
            db: access::SharedDb::default(),
        }
    }
}

impl Default for Transparency {
    /// The appliance's paths, nothing read from the database yet.
    fn default() -> Transparency {
        Transparency {
            pages_dir: PathBuf::from(about::DEFAULT_DIR),
            access_file: PathBuf::from(inventory::DEFAULT_OUT),
            db: access::SharedDb::default(),
        }
    }
}
