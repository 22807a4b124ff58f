//! "Who can access the data", assembled: the collector's OS inventory (read from its file),
//! Synapse's server admins (the member directory) and the uses of the supervisor's own admin
//! token (the fixed list beside the code that makes the calls, with the audited calls of the
//! last [`WINDOW_DAYS`] days counted from the audit log).
//!
//! The database part is read by [`run_refresh`], a task of the daemon, into [`SharedDb`];
//! handlers build [`Access`] from that and the inventory file, never from the database.

use super::inventory::{self, Inventory, Loaded};
use crate::accounting::directory::{self, ServerAdmin};
use crate::health::probe::{audited_use_of, Audited, TOKEN_USES};
use chrono::{DateTime, SecondsFormat, Utc};
use rusqlite::Connection;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// The audit log's window the page counts the token's calls over.
pub const WINDOW_DAYS: i64 = 30;

/// An inventory older than this is flagged: the daily timer should have renewed it.
pub const STALE_AFTER_S: i64 = 36 * 3600;

/// How often the daemon rereads the database part.
pub const REFRESH: Duration = Duration::from_secs(60);

/// What the database said at the last refresh.
#[derive(Debug, Clone, PartialEq)]
pub struct FromDb {
    pub read_at: DateTime<Utc>,
    pub admins: Result<Vec<ServerAdmin>, String>,
    /// `(endpoint, calls)` within the window before `read_at`.
    pub calls: Result<Vec<(String, u64)>, String>,
}

/// The database part, `None` until the first refresh.
#[derive(Debug, Clone, Default)]
pub struct SharedDb(Arc<Mutex<Option<FromDb>>>);

impl SharedDb {
    pub fn get(&self) -> Option<FromDb> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn set(&self, v: FromDb) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(v);
    }
}

/// Read the database part now.
pub fn read_db(conn: &Connection, now: DateTime<Utc>) -> FromDb {
    FromDb {
        read_at: now,
        admins: directory::server_admins(conn).map_err(|e| e.to_string()),
        calls: crate::audit::admin_api_calls_since(conn, now - chrono::Duration::days(WINDOW_DAYS))
            .map_err(|e| e.to_string()),
    }
}

/// Reread the database part every [`REFRESH`] until `cancel`, on a connection of its own.
pub async fn run_refresh(db: PathBuf, shared: SharedDb, cancel: CancellationToken) {
    let mut tick = tokio::time::interval(REFRESH);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let conn: Arc<Mutex<Option<Connection>>> = Arc::default();
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tick.tick() => {}
        }
        let (db, conn) = (db.clone(), conn.clone());
        let read = tokio::task::spawn_blocking(move || {
            let mut c = conn.lock().unwrap_or_else(|p| p.into_inner());
            if c.is_none() {
                *c = Some(crate::storage::open_connection(&db).map_err(|e| e.to_string())?);
            }
            let c = c.as_ref().ok_or_else(|| "no connection".to_string())?;
            Ok::<_, String>(read_db(c, crate::clock::utc_now()))
        })
        .await;
        match read {
            Ok(Ok(v)) => shared.set(v),
            Ok(Err(e)) => {
                tracing::warn!("access page: cannot open the database: {e}");
                shared.set(FromDb {
                    read_at: crate::clock::utc_now(),
                    admins: Err(e.clone()),
                    calls: Err(e),
                });
            }
            Err(e) => tracing::warn!("access page: refresh failed: {e}"),
        }
    }
}

/// The whole answer of `/api/v1/access`, and what `/access` shows.
#[derive(Debug, Clone, Serialize)]
pub struct Access {
    pub os: Os,
    pub synapse_admins: Admins,
    pub admin_token: Token,
}

#[derive(Debug, Clone, Serialize)]
pub struct Os {
    /// `ok`, `missing` (the collector has not run since boot) or `bad`.
    pub state: &'static str,
    pub message: Option<String>,
    /// The inventory is older than [`STALE_AFTER_S`].
    pub stale: bool,
    pub inventory: Option<Inventory>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Admins {
    /// `ok`, `not_read` (the daemon has just started) or `error`.
    pub state: &'static str,
    pub message: Option<String>,
    pub admins: Vec<ServerAdmin>,
    /// The latest directory sync that saw an admin (RFC 3339).
    pub synced_at: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Token {
    pub window_days: i64,
    pub uses: Vec<TokenUseCount>,
    /// Audited calls whose endpoint is in no use (none, unless the code drifted).
    pub other_calls: Vec<(String, u64)>,
    /// Why the counts are missing, if they are.
    pub message: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct TokenUseCount {
    pub id: &'static str,
    pub method: &'static str,
    pub path: &'static str,
    pub audited: Audited,
    /// Audited calls within the window; `None` for uses that are not audited.
    pub calls: Option<u64>,
}

/// Assemble the page's model from the inventory file and the last database read.
pub fn access(inventory_file: &Path, db: Option<&FromDb>, now: DateTime<Utc>) -> Access {
    let os = match inventory::load(inventory_file) {
        Loaded::Missing => Os {
            state: "missing",
            message: Some(format!("{} does not exist", inventory_file.display())),
            stale: false,
            inventory: None,
        },
        Loaded::Bad(m) => Os {
            state: "bad",
            message: Some(m),
            stale: false,
            inventory: None,
        },
        Loaded::Ok(inv) => Os {
            state: "ok",
            message: None,
            stale: DateTime::parse_from_rfc3339(&inv.gathered_at).map_or(true, |t| {
                (now - t.with_timezone(&Utc)).num_seconds() > STALE_AFTER_S
            }),
            inventory: Some(*inv),
        },
    };
    let synapse_admins = match db.map(|d| &d.admins) {
        None => Admins {
            state: "not_read",
            message: None,
            admins: Vec::new(),
            synced_at: None,
        },
        Some(Err(e)) => Admins {
            state: "error",
            message: Some(e.clone()),
            admins: Vec::new(),
            synced_at: None,
        },
        Some(Ok(a)) => Admins {
            state: "ok",
            message: None,
            synced_at: a
                .iter()
                .map(|a| a.synced_at)
                .max()
                .and_then(|s| DateTime::from_timestamp(s, 0))
                .map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true)),
            admins: a.clone(),
        },
    };
    let (counts, message) = match db.map(|d| &d.calls) {
        None => (None, None),
        Some(Err(e)) => (None, Some(e.clone())),
        Some(Ok(c)) => (Some(c.as_slice()), None),
    };
    let mut other_calls = Vec::new();
    let mut per_use: Vec<u64> = vec![0; TOKEN_USES.len()];
    for (endpoint, n) in counts.unwrap_or_default() {
        match audited_use_of(endpoint).and_then(|u| TOKEN_USES.iter().position(|x| x.id == u.id)) {
            Some(i) => per_use[i] += n,
            None => other_calls.push((endpoint.clone(), *n)),
        }
    }
    let uses = TOKEN_USES
        .iter()
        .zip(per_use)
        .map(|(u, n)| TokenUseCount {
            id: u.id,
            method: u.method,
            path: u.path,
            audited: u.audited,
            calls: (u.audited != Audited::No && counts.is_some()).then_some(n),
        })
        .collect();
    Access {
        os,
        synapse_admins,
        admin_token: Token {
            window_days: WINDOW_DAYS,
            uses,
            other_calls,
            message,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{append, Action, Actor, NewEntry};

    #[test]
    fn the_model_says_what_is_missing_and_counts_calls_per_use() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("access.json");
        let now = DateTime::from_timestamp(1_795_651_200, 0).unwrap();

        // Nothing yet: the collector has not run, the database not been read.
        let a = access(&file, None, now);
        assert_eq!(a.os.state, "missing");
        assert_eq!(a.synapse_admins.state, "not_read");
        assert!(a.admin_token.uses.iter().all(|u| u.calls.is_none()));
        assert_eq!(a.admin_token.uses.len(), TOKEN_USES.len());

        let conn = crate::storage::open_connection(&dir.path().join("hearth.db")).unwrap();
        for (endpoint, days_ago) in [
            (
                "GET /_synapse/admin/v2/users?from=0&limit=100&guests=false",
                1,
            ),
            ("GET /_synapse/admin/v2/users/{user_id}", 2),
            ("GET /_synapse/admin/v2/users/{user_id}", 3),
            (
                "GET /_synapse/admin/v1/statistics/users/media?from=0&limit=100",
                40,
            ),
            ("GET /_synapse/admin/v1/rooms", 4),
        ] {
            append(
                &conn,
                &NewEntry::new(Actor::System, Action::AdminApiCall)
                    .at(now - chrono::Duration::days(days_ago))
                    .detail("endpoint", endpoint),
            )
            .unwrap();
        }
        let db = read_db(&conn, now);
        let a = access(&file, Some(&db), now);
        let calls = |id: &str| {
            a.admin_token
                .uses
                .iter()
                .find(|u| u.id == id)
                .unwrap()
                .calls
        };
        assert_eq!(calls("directory_list"), Some(1));
        assert_eq!(calls("account_details"), Some(2));
        assert_eq!(calls("media_statistics"), Some(0), "40 days ago");
        assert_eq!(calls("database_probe"), None, "not audited");
        // A call no use explains is shown, not dropped.
        assert_eq!(
            a.admin_token.other_calls,
            [("GET /_synapse/admin/v1/rooms".to_string(), 1)]
        );
        assert_eq!(a.synapse_admins.state, "ok");
        assert!(a.synapse_admins.admins.is_empty());

        // A malformed file is said to be one; an old one is stale.
        std::fs::write(&file, "not json").unwrap();
        let a = access(&file, Some(&db), now);
        assert_eq!(a.os.state, "bad");
        assert!(a.os.message.unwrap().contains("access.json"));
        let root = dir.path().join("root");
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::write(root.join("etc/passwd"), "root:x:0:0::/root:/bin/sh\n").unwrap();
        let inv = inventory::gather(&root, now - chrono::Duration::days(2)).unwrap();
        inventory::write(&inv, &file).unwrap();
        let a = access(&file, Some(&db), now);
        assert_eq!((a.os.state, a.os.stale), ("ok", true));
        let a = access(&file, Some(&db), now - chrono::Duration::days(1));
        assert!(!a.os.stale);
    }
}
