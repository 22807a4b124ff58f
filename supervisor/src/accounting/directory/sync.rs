//! Reading the accounts from Synapse's admin API (Synapse 1.163), and the periodic sync task.
//!
//! One sync: `whoami` of the supervisor's token (its own account is never a member), every page
//! of `GET /_synapse/admin/v2/users?guests=false&deactivated=true&locked=true` (deactivated
//! accounts are listed so that a member who was deactivated gets `left`; locked accounts are
//! still members), `GET /_synapse/admin/v2/users/<id>` once for each account not classified yet
//! (the list does not say which accounts belong to an appservice; the details do), and every page
//! of `GET /_synapse/admin/v1/statistics/users/media`. Only a complete sync changes the tables:
//! while Synapse is down or answers errors, the last directory stays (logged once).
//!
//! Every admin-API call about one person that Synapse answered is one audit entry: actor
//! `system`, action `admin_api_call`, detail `{"endpoint", "status"}` (the endpoint with
//! `{user_id}` for the account, which is the entry's subject, so that person sees the look-up).
//! The routine reads of the whole directory (the user list, the media statistics) are logged
//! once per UTC day, not at every sync: every ten minutes would bury the entries that matter to
//! a person under 288 identical ones a day. Calls that never reached Synapse read nothing and
//! are not logged. `whoami` is not an admin-API call.

use super::{
    apply, known_accounts, not_a_member, DirectoryError, Snapshot, SynapseAccount, SyncReport,
};
use crate::audit::{self, Action, Actor, NewEntry};
use crate::health::probe::{endpoint, AdminToken};
use crate::storage::off_workers;
use crate::synapse_api::{segment, SynapseApi};
use rusqlite::{Connection, TransactionBehavior};
use serde_json::Value;
use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Accounts per page of the admin API's lists.
const PAGE: u32 = 100;

/// The admin API of one Synapse, with the supervisor's token.
#[derive(Clone)]
pub struct SynapseDirectory {
    api: SynapseApi,
    token: AdminToken,
    page: u32,
}

/// The audit entries of the calls made, and the snapshot if the sync was complete.
pub struct Fetched {
    pub calls: Vec<NewEntry>,
    pub result: Result<Snapshot, DirectoryError>,
}

impl SynapseDirectory {
    pub fn new(base: &str, timeout: Duration, token: AdminToken) -> SynapseDirectory {
        SynapseDirectory {
            api: SynapseApi::new(base, timeout),
            token,
            page: PAGE,
        }
    }

    /// Smaller pages (tests of paging).
    pub fn with_page_size(mut self, page: u32) -> SynapseDirectory {
        self.page = page.max(1);
        self
    }

    /// Read everything one sync needs. `known`: accounts already classified, whose details are
    /// not read again.
    pub async fn fetch(&self, known: &HashSet<String>) -> Fetched {
        let mut calls = Vec::new();
        let result = self.fetch_into(known, &mut calls).await;
        Fetched { calls, result }
    }

    async fn fetch_into(
        &self,
        known: &HashSet<String>,
        calls: &mut Vec<NewEntry>,
    ) -> Result<Snapshot, DirectoryError> {
        let token = self.token.get().ok_or(DirectoryError::NoToken)?;
        let me = self.get(&token, endpoint::WHOAMI, None, None).await?;
        let me = me["user_id"]
            .as_str()
            .ok_or_else(|| bad(endpoint::WHOAMI, "no user_id"))?
            .to_string();

        let mut accounts = Vec::new();
        let list = endpoint::USERS;
        let mut from = 0u64;
        loop {
            let q = format!(
                "{list}?from={from}&limit={}&guests=false&deactivated=true&locked=true",
                self.page
            );
            let page = self.get(&token, &q, Some(calls), None).await?;
            let users = page["users"]
                .as_array()
                .ok_or_else(|| bad(list, "no \"users\" list"))?;
            for u in users {
                accounts.push(account(u).ok_or_else(|| bad(list, "a user without \"name\""))?);
            }
            match next_token(&page["next_token"]) {
                None => break,
                Some(next) if next > from && !users.is_empty() => from = next,
                Some(next) => {
                    return Err(bad(
                        list,
                        &format!("next_token {next} does not move past {from}"),
                    ))
                }
            }
        }

        let mut appservice = BTreeMap::new();
        for a in &accounts {
            if known.contains(&a.user_id) || not_a_member(a, &me).is_some() {
                continue;
            }
            let path = format!("{}{}", endpoint::USER, segment(&a.user_id));
            let d = self
                .get(&token, &path, Some(calls), Some(&a.user_id))
                .await?;
            if let Some(app) = d["appservice_id"].as_str() {
                appservice.insert(a.user_id.clone(), app.to_string());
            }
        }

        let mut media = BTreeMap::new();
        let stats = endpoint::MEDIA_STATISTICS;
        let mut from = 0u64;
        loop {
            let q = format!("{stats}?from={from}&limit={}", self.page);
            let page = self.get(&token, &q, Some(calls), None).await?;
            let users = page["users"]
                .as_array()
                .ok_or_else(|| bad(stats, "no \"users\" list"))?;
            for u in users {
                let (Some(id), Some(bytes), Some(count)) = (
                    u["user_id"].as_str(),
                    u["media_length"].as_u64(),
                    u["media_count"].as_u64(),
                ) else {
                    return Err(bad(
                        stats,
                        "an entry without user_id, media_length, media_count",
                    ));
                };
                media.insert(id.to_string(), (bytes, count));
            }
            match next_token(&page["next_token"]) {
                None => break,
                Some(next) if next > from && !users.is_empty() => from = next,
                Some(next) => {
                    return Err(bad(
                        stats,
                        &format!("next_token {next} does not move past {from}"),
                    ))
                }
            }
        }
        Ok(Snapshot {
            me,
            accounts,
            appservice,
            media,
        })
    }

    /// `GET` a JSON object. With `calls`, an answered call is an admin-API call to audit
    /// (about `subject`, whose id the logged endpoint replaces with `{user_id}`).
    async fn get(
        &self,
        token: &str,
        path_and_query: &str,
        calls: Option<&mut Vec<NewEntry>>,
        subject: Option<&str>,
    ) -> Result<Value, DirectoryError> {
        let endpoint = match subject {
            Some(s) => path_and_query.replace(&segment(s), "{user_id}"),
            None => path_and_query.to_string(),
        };
        let err = |reason: String| DirectoryError::Synapse {
            endpoint: endpoint.clone(),
            reason,
        };
        let res = self
            .api
            .get(path_and_query, Some(token))
            .await
            .map_err(|e| err(e.0))?;
        let status = res.status;
        if let Some(calls) = calls {
            let mut e = NewEntry::new(Actor::System, Action::AdminApiCall)
                .detail("endpoint", format!("GET {endpoint}"))
                .detail("status", status);
            if let Some(s) = subject {
                e = e.about(s);
            }
            calls.push(e);
        }
        if matches!(status, 401 | 403) {
            self.token.reject(status);
            return Err(err(format!(
                "HTTP {status}: the admin token was refused (is the account a server admin?)"
            )));
        }
        if !res.ok() {
            return Err(err(format!("HTTP {status}")));
        }
        let v = res.json();
        if v.is_object() {
            Ok(v)
        } else {
            Err(err("the answer is not a JSON object".into()))
        }
    }
}

fn bad(endpoint: &str, reason: &str) -> DirectoryError {
    DirectoryError::Synapse {
        endpoint: endpoint.to_string(),
        reason: format!("unexpected answer: {reason}"),
    }
}

/// One entry of the user list. Flags are booleans since Synapse 1.93 and 0/1 before.
fn account(u: &Value) -> Option<SynapseAccount> {
    let flag = |k: &str| match &u[k] {
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_i64().is_some_and(|n| n != 0),
        _ => false,
    };
    Some(SynapseAccount {
        user_id: u["name"].as_str()?.to_string(),
        deactivated: flag("deactivated"),
        is_guest: flag("is_guest"),
        user_type: u["user_type"].as_str().map(String::from),
        // Milliseconds in the list (Synapse multiplies the stored seconds by 1000).
        created_s: u["creation_ts"].as_i64().map(|ms| ms.div_euclid(1000)),
        admin: flag("admin"),
    })
}

/// `next_token`: a string in the user list, a number in the media statistics.
fn next_token(v: &Value) -> Option<u64> {
    match v {
        Value::String(s) => s.parse().ok(),
        Value::Number(n) => n.as_u64(),
        _ => None,
    }
}

/// Append the calls' audit entries in one transaction (they happened, whatever follows).
pub fn record_calls(conn: &mut Connection, calls: &[NewEntry]) -> Result<(), DirectoryError> {
    if calls.is_empty() {
        return Ok(());
    }
    let path = super::db_path(conn);
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(super::sql_at(&path))?;
    for c in calls {
        audit::append(&tx, c)?;
    }
    tx.commit().map_err(super::sql_at(&path))
}

/// One sync against `synapse` at wall-clock time `now_s`: audit the calls, apply a complete
/// snapshot. On any error the directory stays as it was.
///
/// `audit_listing`: whether this sync's reads of the whole directory (no subject) are audited
/// too; the task asks for that once per UTC day. Reads about one person always are.
pub async fn sync_once(
    conn: &mut Connection,
    synapse: &SynapseDirectory,
    now_s: i64,
    audit_listing: bool,
) -> Result<SyncReport, DirectoryError> {
    let known = off_workers(|| known_accounts(conn))?;
    let fetched = synapse.fetch(&known).await;
    let calls: Vec<NewEntry> = fetched
        .calls
        .into_iter()
        .filter(|c| audit_listing || c.subject.is_some())
        .collect();
    off_workers(|| {
        record_calls(conn, &calls)?;
        apply(conn, &fetched.result?, now_s)
    })
}

/// The periodic sync: at start and every `every`, until `cancel`. Opens its own connection to
/// the database at `db` (WAL: the flusher's writes and these wait for each other briefly).
/// Synapse being down, a missing or refused token, a database error: logged once when it starts
/// and once when it ends; the last directory stays meanwhile.
pub async fn run_directory_sync(
    db: PathBuf,
    synapse: SynapseDirectory,
    every: Duration,
    cancel: CancellationToken,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut conn: Option<Connection> = None;
    let mut failing: Option<String> = None;
    // The UTC day whose whole-directory reads are in the audit log already.
    let mut listing_audited_day: Option<i64> = None;
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tick.tick() => {}
        }
        let result = async {
            let c = match conn.as_mut() {
                Some(c) => c,
                None => conn.insert(crate::storage::open_connection(&db)?),
            };
            // The database steps run off the async workers (`storage::off_workers`).
            let now_s = crate::clock::wall_secs_now();
            let day = now_s.div_euclid(86_400);
            let audit_listing = listing_audited_day != Some(day);
            tokio::select! {
                r = sync_once(c, &synapse, now_s, audit_listing) => r.map(|r| (r, day)),
                _ = cancel.cancelled() => Ok((SyncReport::default(), day - 1)),
            }
        }
        .await;
        match result {
            Ok((r, day)) => {
                listing_audited_day = listing_audited_day.max(Some(day));
                if let Some(why) = failing.take() {
                    tracing::info!(previous = %why, "member directory: sync works again");
                }
                if !r.joined.is_empty() || !r.left.is_empty() {
                    tracing::info!(
                        members = r.members,
                        joined = r.joined.len(),
                        left = r.left.len(),
                        "member directory synced"
                    );
                }
            }
            Err(e) => {
                let why = e.to_string();
                if failing.is_none() {
                    if matches!(e, DirectoryError::NoToken) {
                        // First boot writes the token after Synapse is up: expected for a while.
                        tracing::info!("member directory: not synced yet: {why}");
                    } else {
                        tracing::warn!(
                            "member directory: sync failed, keeping the last directory: {why}"
                        );
                    }
                }
                if matches!(e, DirectoryError::Sql { .. } | DirectoryError::Storage(_)) {
                    // Reopen at the next sync (a replaced or repaired file).
                    conn = None;
                }
                failing = Some(why);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::accounting::directory::{list, members_for};
    use crate::accounting::model::Period;
    use axum::extract::{Path, Query, State};
    use axum::http::{HeaderMap, StatusCode};
    use axum::routing::get;
    use axum::{Json, Router};
    use serde_json::json;
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};

    /// A fake Synapse admin API holding accounts as the list returns them.
    #[derive(Default)]
    struct Fake {
        users: Vec<Value>,
        appservice: HashMap<String, String>,
        media: Vec<Value>,
        /// Answer every admin call with this status instead.
        fail: Option<u16>,
        detail_calls: Vec<String>,
    }

    type Shared = Arc<Mutex<Fake>>;

    fn authorised(h: &HeaderMap) -> bool {
        h.get("authorization").and_then(|v| v.to_str().ok()) == Some("Bearer good")
    }

    fn page(items: &[Value], q: &HashMap<String, String>, token_as_string: bool) -> Value {
        let from: usize = q.get("from").and_then(|f| f.parse().ok()).unwrap_or(0);
        let limit: usize = q.get("limit").and_then(|f| f.parse().ok()).unwrap_or(100);
        let slice: Vec<Value> = items.iter().skip(from).take(limit).cloned().collect();
        let mut v = json!({"users": slice, "total": items.len()});
        if from + limit < items.len() {
            let next = from + slice.len();
            v["next_token"] = if token_as_string {
                json!(next.to_string())
            } else {
                json!(next)
            };
        }
        v
    }

    async fn serve(fake: Shared) -> String {
        let app = Router::new()
            .route(
                "/_matrix/client/v3/account/whoami",
                get(|h: HeaderMap| async move {
                    if authorised(&h) {
                        (StatusCode::OK, Json(json!({"user_id": "@hearth:x.org"})))
                    } else {
                        (StatusCode::UNAUTHORIZED, Json(json!({})))
                    }
                }),
            )
            .route(
                "/_synapse/admin/v2/users",
                get(
                    |State(f): State<Shared>,
                     h: HeaderMap,
                     Query(q): Query<HashMap<String, String>>| async move {
                        let f = f.lock().unwrap();
                        if let Some(s) = f.fail {
                            return (StatusCode::from_u16(s).unwrap(), Json(json!({})));
                        }
                        if !authorised(&h) {
                            return (StatusCode::UNAUTHORIZED, Json(json!({})));
                        }
                        assert_eq!(q.get("deactivated").map(String::as_str), Some("true"));
                        assert_eq!(q.get("guests").map(String::as_str), Some("false"));
                        (StatusCode::OK, Json(page(&f.users, &q, true)))
                    },
                ),
            )
            .route(
                "/_synapse/admin/v2/users/{id}",
                get(
                    |State(f): State<Shared>, Path(id): Path<String>| async move {
                        let mut f = f.lock().unwrap();
                        f.detail_calls.push(id.clone());
                        let app = f.appservice.get(&id).cloned();
                        Json(json!({"name": id, "appservice_id": app}))
                    },
                ),
            )
            .route(
                "/_synapse/admin/v1/statistics/users/media",
                get(
                    |State(f): State<Shared>, Query(q): Query<HashMap<String, String>>| async move {
                        let f = f.lock().unwrap();
                        Json(page(&f.media, &q, false))
                    },
                ),
            )
            .with_state(fake);
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
        format!("http://{addr}")
    }

    fn user(name: &str, created_ms: i64) -> Value {
        json!({"name": name, "user_type": null, "is_guest": false, "admin": false,
               "deactivated": false, "creation_ts": created_ms, "locked": false})
    }

    fn db() -> (tempfile::TempDir, Connection) {
        let dir = tempfile::tempdir().unwrap();
        let conn = crate::storage::open_connection(&dir.path().join("hearth.db")).unwrap();
        (dir, conn)
    }

    fn audit_entries(conn: &Connection) -> Vec<crate::audit::Entry> {
        let mut e =
            crate::audit::entries_visible_to(conn, &crate::audit::Viewer::ServerAdmin, 1000, None)
                .unwrap();
        e.reverse();
        e
    }

    #[tokio::test]
    async fn a_sync_reads_every_page_classifies_accounts_and_audits_each_call() {
        let fake = Shared::default();
        {
            let mut f = fake.lock().unwrap();
            let mut bot = user("@bot:x.org", 1_000_000);
            bot["user_type"] = json!("bot");
            let mut gone = user("@gone:x.org", 1_000_000);
            gone["deactivated"] = json!(1); // older Synapses said 0/1
            let mut locked = user("@locked:x.org", 3_000_000);
            locked["locked"] = json!(true);
            let mut me = user("@hearth:x.org", 5_000);
            me["admin"] = json!(true);
            let mut alice = user("@alice:x.org", 1_700_000_000_123);
            alice["admin"] = json!(1); // older Synapses said 0/1
            f.users = vec![
                alice,
                user("@bob:x.org", 1_700_000_100_000),
                bot,
                gone,
                me,
                locked,
                user("@telegram_42:x.org", 9_000),
            ];
            f.appservice
                .insert("@telegram_42:x.org".into(), "telegram".into());
            f.media = vec![json!({"user_id": "@alice:x.org", "displayname": "Alice",
                                  "media_count": 2, "media_length": 5000})];
        }
        let base = serve(fake.clone()).await;
        let s = SynapseDirectory::new(
            &base,
            Duration::from_secs(2),
            AdminToken::fixed(Some("good".into())),
        )
        .with_page_size(3);
        let (_d, mut conn) = db();
        let r = sync_once(&mut conn, &s, 1_750_000_000, true).await.unwrap();
        assert_eq!(r.members, 3);
        assert_eq!(r.joined, ["@alice:x.org", "@bob:x.org", "@locked:x.org"]);
        let l = list(&conn).unwrap();
        let alice = &l.unassigned[0];
        assert_eq!(alice.joined_s, Some(1_700_000_000));
        assert_eq!(alice.synced_at, 1_750_000_000);
        // Details were read for the candidates only: not for the bot, the deactivated
        // account or the supervisor itself.
        let mut detailed = fake.lock().unwrap().detail_calls.clone();
        detailed.sort();
        assert_eq!(
            detailed,
            [
                "@alice:x.org",
                "@bob:x.org",
                "@locked:x.org",
                "@telegram_42:x.org"
            ]
        );
        // 7 accounts in pages of 3: 3 list calls, 4 detail calls, 1 media call.
        let entries = audit_entries(&conn);
        assert_eq!(entries.len(), 8);
        assert!(entries.iter().all(|e| e.actor == Actor::System
            && e.action == Action::AdminApiCall
            && e.detail["status"] == 200));
        let endpoints: Vec<&str> = entries
            .iter()
            .map(|e| e.detail["endpoint"].as_str().unwrap())
            .collect();
        assert_eq!(
            endpoints[..4],
            [
                "GET /_synapse/admin/v2/users?from=0&limit=3&guests=false&deactivated=true&locked=true",
                "GET /_synapse/admin/v2/users?from=3&limit=3&guests=false&deactivated=true&locked=true",
                "GET /_synapse/admin/v2/users?from=6&limit=3&guests=false&deactivated=true&locked=true",
                "GET /_synapse/admin/v2/users/{user_id}",
            ]
        );
        // Every audited call is one the page lists among the token's uses.
        for e in &endpoints {
            assert!(
                crate::health::probe::audited_use_of(e).is_some(),
                "{e} is not in TOKEN_USES"
            );
        }
        // A look-up of one person is about that person, and names them nowhere else.
        assert_eq!(entries[3].subject.as_deref(), Some("@alice:x.org"));
        assert!(!entries[3]
            .detail
            .values()
            .any(|v| v.to_string().contains("alice")));

        // The second sync the same day reads no details again; nothing changed, nothing
        // joined; its whole-directory reads are not logged again that day.
        let r2 = sync_once(&mut conn, &s, 1_750_000_600, false)
            .await
            .unwrap();
        assert!(r2.joined.is_empty() && r2.left.is_empty());
        assert_eq!(fake.lock().unwrap().detail_calls.len(), 4);
        assert_eq!(audit_entries(&conn).len(), 8);

        // Synapse's admin flag: alice (a member) and the supervisor's own account.
        let admins: Vec<(String, Option<String>)> =
            crate::accounting::directory::server_admins(&conn)
                .unwrap()
                .into_iter()
                .map(|a| (a.user_id, a.not_member))
                .collect();
        assert_eq!(
            admins,
            [
                ("@alice:x.org".to_string(), None),
                (
                    "@hearth:x.org".into(),
                    Some(crate::accounting::directory::SUPERVISOR_ACCOUNT.into())
                )
            ]
        );

        let period = Period::range(1_740_000_000, 1_760_000_000).unwrap();
        let m = members_for(&conn, &period).unwrap();
        assert_eq!(m.members().len(), 3);
        assert!(m.index("@telegram_42:x.org").is_none());
    }

    #[tokio::test]
    async fn synapse_down_or_refusing_keeps_the_last_directory() {
        let fake = Shared::default();
        fake.lock().unwrap().users = vec![user("@alice:x.org", 1_000)];
        let base = serve(fake.clone()).await;
        let token = AdminToken::fixed(Some("good".into()));
        let s = SynapseDirectory::new(&base, Duration::from_secs(2), token.clone());
        let (_d, mut conn) = db();
        sync_once(&mut conn, &s, 100_000, true).await.unwrap();
        let before = list(&conn).unwrap();

        // Answers 500: audited (Synapse answered), nothing changes, nobody leaves.
        fake.lock().unwrap().fail = Some(500);
        let e = sync_once(&mut conn, &s, 100_600, true).await.unwrap_err();
        assert!(e.to_string().contains("HTTP 500"), "{e}");
        assert_eq!(list(&conn).unwrap(), before);
        let last = audit_entries(&conn).pop().unwrap();
        assert_eq!(last.detail["status"], 500);

        // Nothing listening: an error naming the endpoint, no audit entry, nothing changes.
        let n = audit_entries(&conn).len();
        let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let dead = format!("http://{}", free.local_addr().unwrap());
        drop(free);
        let down = SynapseDirectory::new(&dead, Duration::from_secs(2), token.clone());
        let e = sync_once(&mut conn, &down, 101_200, true)
            .await
            .unwrap_err();
        assert!(e.to_string().contains("connection refused"), "{e}");
        assert_eq!(audit_entries(&conn).len(), n);
        assert_eq!(list(&conn).unwrap(), before);

        // A refused token turns the sync off (no further calls) until the token changes.
        fake.lock().unwrap().fail = Some(403);
        assert!(sync_once(&mut conn, &s, 101_800, true).await.is_err());
        assert!(matches!(
            sync_once(&mut conn, &s, 102_400, true).await,
            Err(DirectoryError::NoToken)
        ));
        assert_eq!(list(&conn).unwrap(), before);

        // No token at all: no calls.
        let none = SynapseDirectory::new(&base, Duration::from_secs(2), AdminToken::none());
        assert!(matches!(
            sync_once(&mut conn, &none, 103_000, true).await,
            Err(DirectoryError::NoToken)
        ));
    }

    #[tokio::test]
    async fn the_task_syncs_at_start_and_stops_when_cancelled() {
        let fake = Shared::default();
        fake.lock().unwrap().users = vec![user("@alice:x.org", 1_000)];
        let base = serve(fake.clone()).await;
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("hearth.db");
        let s = SynapseDirectory::new(
            &base,
            Duration::from_secs(2),
            AdminToken::fixed(Some("good".into())),
        );
        let cancel = CancellationToken::new();
        let task = tokio::spawn(run_directory_sync(
            db.clone(),
            s,
            Duration::from_secs(600),
            cancel.clone(),
        ));
        // The first sync runs at once.
        let conn = crate::storage::open_connection(&db).unwrap();
        for _ in 0..200 {
            if !list(&conn).unwrap().unassigned.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(list(&conn).unwrap().unassigned.len(), 1);
        cancel.cancel();
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("the task ends when cancelled")
            .unwrap();
    }
}
