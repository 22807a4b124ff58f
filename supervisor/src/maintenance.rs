//! The maintenance switch: while its file exists the supervisor restarts nothing
//! (`health::machine`), so an operator can stop Synapse by hand. One module switches it, for
//! both who may: a server admin on the page (`http::member_api::set_maintenance`) and the
//! operator on the command line (`hearth-supervisor maintenance on|off`). Either way the switch
//! is an audit entry (`maintenance`, `{"on": bool}`; actor the admin or `cli`) written before
//! the file changes, and the file is written atomically (`storage::write_atomically`: a power
//! cut leaves it on or off, never empty) or removed (already absent is fine).

use crate::audit::{self, Action, Actor, NewEntry};
use std::path::Path;

/// Whether the switch is on.
pub fn is_on(file: &Path) -> bool {
    file.exists()
}

/// The audit entry of a switch by `actor`.
pub fn entry(actor: Actor, on: bool) -> NewEntry {
    NewEntry::new(actor, Action::Maintenance).detail("on", on)
}

/// Turn the switch on or off (the file alone; the caller has audited it).
pub fn set(file: &Path, on: bool) -> std::io::Result<()> {
    if on {
        crate::storage::write_atomically(file, b"on\n")
    } else {
        match std::fs::remove_file(file) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

/// The command line's switch: audited in the database at `db` as `cli` (with the operator's
/// Unix uid), then set. The database is made or migrated first, as the daemon would.
pub fn switch_from_cli(db: &Path, file: &Path, on: bool, os_uid: u32) -> anyhow::Result<()> {
    use anyhow::Context as _;
    drop(crate::storage::Storage::open(db)?);
    let conn = crate::storage::open_connection(db)?;
    audit::append(&conn, &entry(Actor::Cli, on).detail("os_uid", os_uid))
        .with_context(|| format!("{}: cannot write the audit entry", db.display()))?;
    set(file, on).with_context(|| {
        format!(
            "{}: cannot {}",
            file.display(),
            if on { "write" } else { "remove" }
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn on_writes_atomically_and_off_removes_twice_without_error() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("maintenance");
        assert!(!is_on(&f));
        set(&f, true).unwrap();
        assert!(is_on(&f));
        assert_eq!(std::fs::read_to_string(&f).unwrap(), "on\n");
        assert!(!dir.path().join("maintenance.tmp").exists());
        set(&f, false).unwrap();
        set(&f, false).unwrap();
        assert!(!is_on(&f));
        // A folder that does not exist: a clear error, not a panic.
        assert!(set(&dir.path().join("gone/maintenance"), true).is_err());
    }
}
