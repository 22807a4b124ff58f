//! The name table in PostgreSQL, shared by several edges behind DNS.
//!
//! The client is the `postgres` crate (synchronous, no TLS: PostgreSQL belongs on a private
//! network or localhost). It runs a tokio runtime of its own inside every call and panics when
//! called from within another runtime, so its connections live on threads of their own: a
//! small pool of plain threads, each with one connection (made when first needed, made again
//! when it broke), taking closures from a queue. Callers, async ones included, only send a
//! closure and wait on a channel; no `postgres::Client` ever leaves its thread.
//!
//! Enrolment is one READ COMMITTED transaction: the token's row is locked (`FOR UPDATE`), so
//! two edges spending one token take turns; a claim inserts the box's row under the name's
//! primary key with `ON CONFLICT DO NOTHING`, which waits for a concurrent claim of the same name
//! to commit or roll back; then the owner is read again (a new snapshot) and the shared
//! decision (`super::verdict`) taken on what is really there. Of two edges enrolling one name
//! at once, exactly one inserts its row; the other reads the winner's key and answers `Taken`.

use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use postgres::{Client, NoTls};

use super::{one_line, verdict, EnrolError, Ingest, ReportRecord, Verdict};

/// Connections per edge: the API's enrolments and checks, the tunnels' key look-ups.
const POOL: usize = 4;
/// When the URL sets no `connect_timeout`: an unreachable database is an error, not a hang.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The key of the advisory lock that migrations hold: one edge migrates, the others wait.
const MIGRATION_LOCK: i64 = 0x6865_6172_7468_0001; // "hearth", 1

/// The schema, one step a version; `coop_schema.version` says how many have run.
const MIGRATIONS: &[&str] = &[
    "CREATE TABLE tokens (
        hash BYTEA PRIMARY KEY,         -- SHA-256 of the token: the table never holds one
        note TEXT NOT NULL,
        created_at BIGINT NOT NULL,
        used_for TEXT,                  -- the name it enrolled
        used_at BIGINT
    );
    CREATE TABLE boxes (
        name TEXT PRIMARY KEY,          -- full name, label.domain
        public_key BYTEA NOT NULL,      -- Ed25519, 32 bytes
        enrolled_at BIGINT NOT NULL
    );
    CREATE TABLE checks (
        name TEXT PRIMARY KEY,          -- the outside-in check's rate limit, for every edge
        last_at BIGINT NOT NULL         -- unix seconds (the database's clock) of the last one
    );",
    // The anonymous energy reports (collector/). Rows are not clustered by arrival, and no
    // column says which report came with which token.
    "CREATE TABLE reports (
        id TEXT PRIMARY KEY,            -- the box's random idempotency key
        month TEXT NOT NULL,            -- YYYY-MM
        hardware TEXT NOT NULL,
        members TEXT NOT NULL,          -- the bucket
        energy_kwh DOUBLE PRECISION NOT NULL, -- clamped, noised, rounded
        epsilon DOUBLE PRECISION NOT NULL,
        uptime_share DOUBLE PRECISION NOT NULL,
        synapse TEXT NOT NULL,
        supplier TEXT,
        received_day TEXT NOT NULL,     -- YYYY-MM-DD: never the second it came in
        digest BYTEA NOT NULL           -- SHA-256 of the fields: a replay is recognised
    );
    CREATE INDEX reports_month ON reports (month);
    CREATE TABLE spent_tokens (
        hash BYTEA PRIMARY KEY          -- SHA-256 of a token's message: each is accepted once
    );
    CREATE TABLE token_grants (
        name TEXT NOT NULL,             -- the enrolled box that asked
        key_id TEXT NOT NULL,           -- the key period
        count BIGINT NOT NULL,          -- blind signatures given
        PRIMARY KEY (name, key_id)
    );",
];

/// Parses and checks a `postgres://` / `postgresql://` URL; the reason on one line.
pub(super) fn config(url: &str) -> Result<postgres::Config, String> {
    let mut c: postgres::Config = url
        .parse()
        .map_err(|e| format!("not a PostgreSQL URL: {}", describe(&e)))?;
    if c.get_ssl_mode() == postgres::config::SslMode::Require {
        return Err(
            "TLS to PostgreSQL is not supported (sslmode=require): keep the \
                    database on a private network or localhost"
                .into(),
        );
    }
    if c.get_hosts().is_empty() {
        return Err("the URL names no host (a name, an address or a socket directory)".into());
    }
    c.ssl_mode(postgres::config::SslMode::Disable);
    if c.get_connect_timeout().is_none() {
        c.connect_timeout(CONNECT_TIMEOUT);
    }
    if c.get_application_name().is_none() {
        c.application_name("hearth-coop");
    }
    Ok(c)
}

/// An error and its causes on one line: the crate's own `Display` says only "db error" or
/// "error connecting to server"; what PostgreSQL or the socket said is in `source()`.
fn describe(e: &postgres::Error) -> String {
    let mut text = e.to_string();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    one_line(text)
}

type Job = Box<dyn FnOnce(&mut Worker) + Send>;

#[derive(Clone)]
pub(super) struct Pg {
    jobs: mpsc::Sender<Job>,
}

/// One pool thread's connection.
struct Worker {
    config: postgres::Config,
    client: Option<Client>,
}

impl Worker {
    fn client(&mut self) -> Result<&mut Client, postgres::Error> {
        let client = match self.client.take() {
            Some(c) if !c.is_closed() => c,
            _ => self.config.connect(NoTls)?,
        };
        Ok(self.client.insert(client))
    }

    fn broken(&self, e: &postgres::Error) -> bool {
        e.is_closed() || self.client.as_ref().is_some_and(Client::is_closed)
    }
}

impl Pg {
    /// Starts the pool's threads, connects and brings the schema up to date.
    pub(super) fn open(config: postgres::Config) -> Result<Pg, String> {
        let (jobs, queue) = mpsc::channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        for i in 0..POOL {
            let mut worker = Worker {
                config: config.clone(),
                client: None,
            };
            let queue = queue.clone();
            std::thread::Builder::new()
                .name(format!("coop-pg-{i}"))
                .spawn(move || loop {
                    // One thread waits on the queue at a time; the others wait for the lock.
                    let job = queue.lock().unwrap_or_else(|p| p.into_inner()).recv();
                    match job {
                        Ok(job) => job(&mut worker),
                        // Every `Pg` is gone: the thread ends, its connection with it.
                        Err(_) => return,
                    }
                })
                .map_err(|e| format!("cannot start a thread: {e}"))?;
        }
        let pg = Pg { jobs };
        pg.run(migrate)
            .map_err(|e| format!("PostgreSQL: {e}"))?
            .map_err(|e| format!("PostgreSQL: {e}"))?;
        Ok(pg)
    }

    /// Runs `f` on a pool thread's connection and waits for its answer. A connection found
    /// broken (PostgreSQL restarted, a network cut) is made again and `f` run once more. That
    /// is safe for every operation here: look-ups and enrolments answer the same again (an
    /// enrolment that did commit is its own retry); in the rare case that the connection broke
    /// after a token's insert or a check slot committed, the repeat says "error" or "ask
    /// again later", which the caller may do.
    fn run<T: Send + 'static>(
        &self,
        f: impl Fn(&mut Client) -> Result<T, postgres::Error> + Send + 'static,
    ) -> Result<T, String> {
        let (tx, rx) = mpsc::sync_channel(1);
        let job: Job = Box::new(move |w: &mut Worker| {
            let mut result = w.client().and_then(&f);
            if let Err(e) = &result {
                if w.broken(e) {
                    w.client = None;
                    result = w.client().and_then(&f);
                }
            }
            let _ = tx.send(result.map_err(|e| describe(&e)));
        });
        self.jobs
            .send(job)
            .map_err(|_| "the database threads have stopped".to_owned())?;
        rx.recv()
            .map_err(|_| "the database thread stopped".to_owned())?
    }

    pub(super) fn insert_token(&self, hash: Vec<u8>, note: &str, now: i64) -> anyhow::Result<()> {
        let note = note.to_owned();
        self.run(move |c| {
            c.execute(
                "INSERT INTO tokens (hash, note, created_at) VALUES ($1, $2, $3)",
                &[&hash, &note, &now],
            )
        })
        .map_err(anyhow::Error::msg)?;
        Ok(())
    }

    pub(super) fn enrol(
        &self,
        hash: Vec<u8>,
        name: String,
        key: Vec<u8>,
        now: i64,
    ) -> Result<String, EnrolError> {
        self.run(move |c| {
            let mut tx = c.transaction()?;
            let used: Option<Option<String>> = tx
                .query_opt(
                    "SELECT used_for FROM tokens WHERE hash = $1 FOR UPDATE",
                    &[&hash],
                )?
                .map(|r| r.try_get(0))
                .transpose()?;
            if used == Some(None) {
                // Waits for a concurrent claim of this name; does nothing if it committed.
                tx.execute(
                    "INSERT INTO boxes (name, public_key, enrolled_at) VALUES ($1, $2, $3)
                     ON CONFLICT (name) DO NOTHING",
                    &[&name, &key, &now],
                )?;
            }
            let owner: Option<Vec<u8>> = tx
                .query_opt("SELECT public_key FROM boxes WHERE name = $1", &[&name])?
                .map(|r| r.try_get(0))
                .transpose()?;
            match verdict(used, owner.as_deref(), &name, &key) {
                // Dropping `tx` rolls back (nothing of ours is in it then).
                Verdict::Refuse(e) => Ok(Err(e)),
                Verdict::AlreadyDone => Ok(Ok(name.clone())),
                Verdict::Claim => {
                    tx.execute(
                        "UPDATE tokens SET used_for = $1, used_at = $2 WHERE hash = $3",
                        &[&name, &now, &hash],
                    )?;
                    tx.commit()?;
                    Ok(Ok(name.clone()))
                }
            }
        })
        .map_err(EnrolError::Db)?
    }

    pub(super) fn key_for(&self, name: &str) -> anyhow::Result<Option<Vec<u8>>> {
        let name = name.to_owned();
        self.run(move |c| {
            c.query_opt("SELECT public_key FROM boxes WHERE name = $1", &[&name])?
                .map(|r| r.try_get(0))
                .transpose()
        })
        .map_err(anyhow::Error::msg)
    }

    pub(super) fn boxes(&self) -> anyhow::Result<Vec<(String, Vec<u8>, i64)>> {
        self.run(|c| {
            // Byte order, as SQLite sorts: not the database's locale.
            c.query(
                "SELECT name, public_key, enrolled_at FROM boxes ORDER BY name COLLATE \"C\"",
                &[],
            )?
            .iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)))
            .collect()
        })
        .map_err(anyhow::Error::msg)
    }

    /// One statement: a new row, or the old one moved to now only when it is old enough. Its
    /// `ON CONFLICT DO UPDATE` locks the row and judges its newest version, so of two edges
    /// asking at once exactly one changes it.
    pub(super) fn take_check_slot(&self, name: &str, interval_s: i64) -> anyhow::Result<bool> {
        let name = name.to_owned();
        let changed = self
            .run(move |c| {
                c.execute(
                    "INSERT INTO checks (name, last_at)
                     VALUES ($1, floor(extract(epoch FROM clock_timestamp()))::bigint)
                     ON CONFLICT (name) DO UPDATE SET last_at = excluded.last_at
                     WHERE excluded.last_at - checks.last_at >= $2",
                    &[&name, &interval_s],
                )
            })
            .map_err(anyhow::Error::msg)?;
        Ok(changed == 1)
    }
}

impl Pg {
    /// One transaction. Two edges taking one report at once: the second's insert of the same
    /// token waits for the first to commit and then finds it spent; the same id with another
    /// token finds the id taken (`ON CONFLICT DO NOTHING`, then the row read again).
    pub(super) fn ingest(
        &self,
        r: &ReportRecord,
        token_hash: &[u8],
        day: &str,
    ) -> anyhow::Result<Ingest> {
        let (r, token_hash, day) = (r.clone(), token_hash.to_vec(), day.to_owned());
        let digest = r.digest();
        self.run(move |c| {
            let mut tx = c.transaction()?;
            let same = |d: Vec<u8>| {
                if d == digest {
                    Ingest::Replay
                } else {
                    Ingest::IdTaken
                }
            };
            if let Some(row) = tx.query_opt("SELECT digest FROM reports WHERE id = $1", &[&r.id])? {
                return Ok(same(row.try_get(0)?));
            }
            let fresh = tx.execute(
                "INSERT INTO spent_tokens (hash) VALUES ($1) ON CONFLICT (hash) DO NOTHING",
                &[&token_hash],
            )?;
            if fresh == 0 {
                return Ok(Ingest::TokenSpent);
            }
            let inserted = tx.execute(
                "INSERT INTO reports (id, month, hardware, members, energy_kwh, epsilon,
                   uptime_share, synapse, supplier, received_day, digest)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
                 ON CONFLICT (id) DO NOTHING",
                &[
                    &r.id,
                    &r.month,
                    &r.hardware,
                    &r.members,
                    &r.energy_kwh,
                    &r.epsilon,
                    &r.uptime_share,
                    &r.synapse,
                    &r.supplier,
                    &day,
                    &digest,
                ],
            )?;
            if inserted == 0 {
                // Another edge stored this id a moment ago: the token stays unspent.
                tx.rollback()?;
                let row = c.query_one("SELECT digest FROM reports WHERE id = $1", &[&r.id])?;
                return Ok(same(row.try_get(0)?));
            }
            tx.commit()?;
            Ok(Ingest::Stored)
        })
        .map_err(anyhow::Error::msg)
    }

    pub(super) fn reports(&self) -> anyhow::Result<Vec<ReportRecord>> {
        self.run(|c| {
            c.query(
                "SELECT id, month, hardware, members, energy_kwh, epsilon, uptime_share, synapse,
                        supplier FROM reports ORDER BY month COLLATE \"C\", id COLLATE \"C\"",
                &[],
            )?
            .iter()
            .map(|r| {
                Ok(ReportRecord {
                    id: r.try_get(0)?,
                    month: r.try_get(1)?,
                    hardware: r.try_get(2)?,
                    members: r.try_get(3)?,
                    energy_kwh: r.try_get(4)?,
                    epsilon: r.try_get(5)?,
                    uptime_share: r.try_get(6)?,
                    synapse: r.try_get(7)?,
                    supplier: r.try_get(8)?,
                })
            })
            .collect()
        })
        .map_err(anyhow::Error::msg)
    }

    pub(super) fn spent_tokens(&self) -> anyhow::Result<i64> {
        self.run(|c| {
            c.query_one("SELECT count(*) FROM spent_tokens", &[])?
                .try_get(0)
        })
        .map_err(anyhow::Error::msg)
    }

    /// One statement, as the check slot: of two edges granting at once, the row's lock orders
    /// them and the second judges the first's count.
    pub(super) fn grant_tokens(
        &self,
        name: &str,
        key_id: &str,
        n: i64,
        max: i64,
    ) -> anyhow::Result<bool> {
        if n > max {
            return Ok(false);
        }
        let (name, key_id) = (name.to_owned(), key_id.to_owned());
        let changed = self
            .run(move |c| {
                c.execute(
                    "INSERT INTO token_grants (name, key_id, count) VALUES ($1, $2, $3)
                     ON CONFLICT (name, key_id) DO UPDATE
                     SET count = token_grants.count + excluded.count
                     WHERE token_grants.count + excluded.count <= $4",
                    &[&name, &key_id, &n, &max],
                )
            })
            .map_err(anyhow::Error::msg)?;
        Ok(changed == 1)
    }
}

/// Brings the schema up to date under an advisory lock: of edges starting at once, one runs
/// the missing steps and the others then find nothing to do.
fn migrate(c: &mut Client) -> Result<Result<(), String>, postgres::Error> {
    let mut tx = c.transaction()?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS coop_schema (
            one BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (one),
            version INTEGER NOT NULL
        )",
    )?;
    let version: i32 = tx
        .query_opt("SELECT version FROM coop_schema", &[])?
        .map(|r| r.try_get(0))
        .transpose()?
        .unwrap_or(0);
    let known = MIGRATIONS.len() as i32;
    if version > known {
        return Ok(Err(format!(
            "the table's schema is version {version}, this hearth-coop knows up to {known}: \
             update hearth-coop"
        )));
    }
    for step in MIGRATIONS.iter().skip(version.max(0) as usize) {
        tx.batch_execute(step)?;
    }
    tx.execute(
        "INSERT INTO coop_schema (one, version) VALUES (TRUE, $1)
         ON CONFLICT (one) DO UPDATE SET version = excluded.version",
        &[&known],
    )?;
    tx.commit()?;
    Ok(Ok(()))
}
