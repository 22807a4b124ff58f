//! The command line on the box is run by root (the only SSH login), but `hearth.db` belongs to
//! user hearth. A command that opens the database first becomes the database's owner: nothing
//! SQLite creates (the database, its `-wal` and `-shm`, a rollback journal) is then root's and
//! locks the daemon out, and the command can do no more than the daemon itself could.
//!
//! The audit log still names who ran the command: [`invoking_uid`] is the uid from before the
//! switch.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::OnceLock;

static INVOKER: OnceLock<u32> = OnceLock::new();

/// Who ran the command (the audit log's `os_uid`), the same before and after
/// [`become_owner_of`].
pub fn invoking_uid() -> u32 {
    *INVOKER.get_or_init(|| rustix::process::getuid().as_raw())
}

/// Run as root, take the uid and gid of `db`'s owner (or of the nearest folder above it while
/// it does not exist yet), with that gid as the only group. Not root, or the owner is root:
/// nothing changes (`None`). The switch is the calling thread's (Linux credentials are per
/// thread; threads started later inherit them), so call it while the process has one thread:
/// before any runtime or thread is started.
pub fn become_owner_of(db: &Path) -> std::io::Result<Option<(u32, u32)>> {
    invoking_uid();
    if !rustix::process::geteuid().is_root() {
        return Ok(None);
    }
    let meta = db
        .ancestors()
        .map(|p| {
            if p.as_os_str().is_empty() {
                Path::new(".")
            } else {
                p
            }
        })
        .find_map(|p| std::fs::metadata(p).ok())
        .ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("{}: no folder above it exists", db.display()),
            )
        })?;
    let (uid, gid) = (meta.uid(), meta.gid());
    if uid == 0 {
        return Ok(None);
    }
    // Groups and gid first: once the uid is not root they cannot change any more.
    let g = rustix::process::Gid::from_raw(gid);
    rustix::thread::set_thread_groups(&[g])?;
    rustix::thread::set_thread_res_gid(g, g, g)?;
    let u = rustix::process::Uid::from_raw(uid);
    rustix::thread::set_thread_res_uid(u, u, u)?;
    Ok(Some((uid, gid)))
}
