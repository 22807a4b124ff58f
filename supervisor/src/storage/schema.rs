//! The database's schema: every table, index and trigger of the supervisor's SQLite file, as
//! versioned migrations ([`MIGRATIONS`]). The modules that write a table own its SQL (audit/,
//! accounting/directory/, invite/, report/outbox.rs, storage/ itself); its definition lives here,
//! so storage imports nothing from them and the whole schema reads in one place.
//!
//! A released migration is never edited (an existing database has run it: `rusqlite_migration`
//! counts them in `user_version`); a change is a new migration at the end.

use rusqlite_migration::M;

/// Versioned migrations; never edit a released one, add a new one.
pub(crate) const MIGRATIONS: &[M<'static>] = &[
    // 1: power minutes and hours, sensor gaps (storage/).
    M::up(POWER),
    // 2: the audit log (audit/ writes it).
    M::up(AUDIT_LOG),
    // 3: the member directory and households (accounting/directory/ writes them).
    M::up(DIRECTORY),
    // 4: accounting inputs per minute, the journal cursor, frozen monthly statements (storage/).
    M::up(ACCOUNTING),
    // 5: roles for the page: Synapse server admins (kept by the directory sync) and household admins.
    M::up(ROLES),
    // 6: Synapse admin accounts that are not members (the supervisor's own, bots, bridges).
    M::up(NONMEMBER_ADMIN),
    // 7: invitations (invite/ writes the table).
    M::up(INVITATION),
    // 8: the anonymous reports' outbox, schedule, tokens and opt-in (report/outbox.rs writes them).
    M::up(REPORT),
    // 9: budgets, prepaid top-ups, the costs set on the page, the budgets' notices and
    // throttles (budget/ writes them).
    M::up(BUDGET),
];

/// Migration 1: per-minute power (kept `minute_retention_days`), per-hour power (kept forever),
/// every sensor gap with its estimate.
const POWER: &str = r#"
CREATE TABLE power_minute (
    minute        INTEGER PRIMARY KEY,  -- Unix seconds (UTC) of the minute's start
    energy_wh     REAL NOT NULL,
    estimated_wh  REAL NOT NULL,
    seconds       REAL NOT NULL,        -- metered seconds in this bucket
    measured_s    REAL NOT NULL,        -- seconds covered by measured samples
    volt_seconds  REAL NOT NULL,        -- ∫V dt over measured time
    min_w         REAL,                 -- NULL when nothing was measured
    max_w         REAL,
    samples       INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE power_hour (
    hour          INTEGER PRIMARY KEY,  -- Unix seconds (UTC) of the hour's start
    energy_wh     REAL NOT NULL,
    estimated_wh  REAL NOT NULL,
    seconds       REAL NOT NULL,
    measured_s    REAL NOT NULL,
    volt_seconds  REAL NOT NULL,
    min_w         REAL,
    max_w         REAL,
    samples       INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE sensor_gap (
    id            INTEGER PRIMARY KEY,
    end_ms        INTEGER NOT NULL,     -- wall clock, Unix ms
    seconds       REAL NOT NULL,
    estimated_wh  REAL NOT NULL,
    reason        TEXT NOT NULL
);
"#;

/// Migration 2: the audit log's table, its indexes and the append-only triggers (audit/).
/// Never edit it once released; add a migration.
const AUDIT_LOG: &str = r#"
CREATE TABLE audit_log (
    seq        INTEGER PRIMARY KEY,  -- 1, 2, 3… without gaps
    time       TEXT NOT NULL,        -- UTC, RFC 3339 with milliseconds
    actor      TEXT NOT NULL,        -- Matrix user id, "system" or "cli"
    action     TEXT NOT NULL,        -- audit::Action, snake_case
    subject    TEXT,                 -- the member whose data was touched; NULL for none
    detail     TEXT NOT NULL,        -- compact JSON object; no message content, no IP addresses
    prev_hash  TEXT NOT NULL,        -- hex SHA-256 of the previous entry (zeros for entry 1)
    hash       TEXT NOT NULL         -- hex SHA-256 over prev_hash and the fields (audit/chain.rs)
);
CREATE INDEX audit_log_subject ON audit_log (subject, seq);
CREATE INDEX audit_log_actor ON audit_log (actor, seq);
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;
"#;

/// Migration 3: the member directory (accounting/directory/). Never edit it once released;
/// add a migration.
const DIRECTORY: &str = r#"
CREATE TABLE household (
    id         TEXT PRIMARY KEY,            -- letters, digits, ".", "_", "-"; "solo." reserved
    name       TEXT NOT NULL,
    created_s  INTEGER NOT NULL             -- Unix seconds
) WITHOUT ROWID;

CREATE TABLE member (
    user_id    TEXT PRIMARY KEY,            -- a local Matrix account, @local:server
    household  TEXT REFERENCES household (id),  -- NULL: a household of their own
    joined_s   INTEGER,                     -- Synapse's creation_ts (Unix seconds); NULL: unknown
    left_s     INTEGER,                     -- the first sync that no longer counted them; NULL: member
    synced_at  INTEGER NOT NULL             -- the last sync that saw them (Unix seconds)
) WITHOUT ROWID;
CREATE INDEX member_household ON member (household);

CREATE TABLE member_media (
    user_id     TEXT NOT NULL,
    synced_at   INTEGER NOT NULL,           -- the sync that saw this figure; it holds until the next row
    media_bytes INTEGER NOT NULL,           -- uploaded by the member and still stored by Synapse
    media_count INTEGER NOT NULL,
    PRIMARY KEY (user_id, synced_at)
) WITHOUT ROWID;

CREATE TABLE appservice_user (
    user_id       TEXT PRIMARY KEY,         -- an account an appservice (bridge) owns: never a member
    appservice_id TEXT NOT NULL
) WITHOUT ROWID;
"#;

/// Migration 4: accounting (PRODUCT §5): what a statement is computed from, stored per UTC minute beside
/// `power_minute`, and the statements of closed months. Weights are integer milliseconds
/// (`ru_utime + ru_stime + db_txn`, as Synapse logs them), so batches add up exactly.
const ACCOUNTING: &str = r#"
CREATE TABLE acct_minute (
    minute        INTEGER PRIMARY KEY,  -- Unix seconds (UTC) of the minute's start
    total_ms      INTEGER NOT NULL,     -- R_i: weight of every request that finished in it
    requests      INTEGER NOT NULL,
    unauth_ms     INTEGER NOT NULL,     -- the part of R_i with no requester
    matrix_share  REAL                  -- s_i in 0..1; NULL when unknown (counts as 1)
) WITHOUT ROWID;

CREATE TABLE acct_weight (
    minute        INTEGER NOT NULL,
    requester     TEXT NOT NULL,        -- a Matrix user id or a federating server's name
    weight_ms     INTEGER NOT NULL,
    PRIMARY KEY (minute, requester)
) WITHOUT ROWID;

-- Where the access-log reader stands in the journal: committed with the weights it led to.
CREATE TABLE journal_cursor (
    unit          TEXT PRIMARY KEY,
    cursor        TEXT NOT NULL
) WITHOUT ROWID;

CREATE TABLE statement (
    period        TEXT PRIMARY KEY,     -- "YYYY-MM"
    json          TEXT NOT NULL,        -- the statement JSON (PRODUCT §5)
    inputs_sha256 TEXT NOT NULL,        -- hex SHA-256 of the canonical inputs (accounting/inputs.rs)
    closed_at     INTEGER NOT NULL      -- Unix seconds
) WITHOUT ROWID;
CREATE TRIGGER statement_frozen_update BEFORE UPDATE ON statement
BEGIN SELECT RAISE(ABORT, 'a closed statement is frozen'); END;
CREATE TRIGGER statement_frozen_delete BEFORE DELETE ON statement
BEGIN SELECT RAISE(ABORT, 'a closed statement is frozen'); END;
"#;

/// Migration 5: who administers what. `server_admin` mirrors Synapse's `admin` flag at the last
/// directory sync; a household admin sees the statements and audit entries of the household's
/// members (PRODUCT §6). Never edit once released; add a migration.
const ROLES: &str = r#"
ALTER TABLE member ADD COLUMN server_admin INTEGER NOT NULL DEFAULT 0;  -- 1: a Synapse server admin

CREATE TABLE household_admin (
    household  TEXT NOT NULL REFERENCES household (id) ON DELETE CASCADE,
    user_id    TEXT NOT NULL,               -- a member who may see the household's figures
    since_s    INTEGER NOT NULL,            -- Unix seconds
    PRIMARY KEY (household, user_id)
) WITHOUT ROWID;
"#;

/// Migration 6: the Synapse server admins that are not members — the supervisor's own account
/// above all, and any bot, support or appservice account Synapse flags as admin — so that "who
/// can access the data" lists every admin. Replaced whole at each complete sync. Never edit
/// once released; add a migration.
const NONMEMBER_ADMIN: &str = r#"
CREATE TABLE nonmember_admin (
    user_id    TEXT PRIMARY KEY,
    why        TEXT NOT NULL,               -- why it is not a member: directory::not_a_member's words
    synced_at  INTEGER NOT NULL             -- the sync that saw it (Unix seconds)
) WITHOUT ROWID;
"#;

/// Migration 7: invitations. Never edit once released; add a migration.
const INVITATION: &str = r#"
CREATE TABLE invitation (
    id            INTEGER PRIMARY KEY,
    token_sha256  TEXT NOT NULL UNIQUE,     -- hex SHA-256 of the token; the token itself is never stored
    inviter       TEXT NOT NULL,            -- the Matrix user id who made it
    household     TEXT,                     -- the household the new member joins; NULL: none
    created_s     INTEGER NOT NULL,         -- Unix seconds
    expires_s     INTEGER NOT NULL,         -- Unix seconds; unusable from then on
    used_s        INTEGER,                  -- taken by a sign-up (NULL again if Synapse refused)
    user_id       TEXT,                     -- the account it created
    revoked_s     INTEGER                   -- revoked by the inviter or a server admin
);
CREATE INDEX invitation_inviter ON invitation (inviter, expires_s);
"#;

/// Migration 8: the reports' outbox (report/outbox.rs): one row per month, its schedule, the
/// tokens, the family's opt-in.
const REPORT: &str = r#"
CREATE TABLE report_outbox (
    month           TEXT PRIMARY KEY,     -- "YYYY-MM": one report per month, whatever the clock does
    id              TEXT NOT NULL UNIQUE, -- the idempotency key, drawn once
    json            TEXT NOT NULL,        -- the draft, then the report with its token
    state           TEXT NOT NULL CHECK (state IN ('draft', 'ready', 'delivered')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,     -- Unix seconds
    created_at      INTEGER NOT NULL,
    delivered_at    INTEGER,
    last_error      TEXT
) WITHOUT ROWID;

CREATE TABLE report_schedule (
    month           TEXT PRIMARY KEY,     -- the month to report
    due_at          INTEGER NOT NULL      -- Unix seconds: a random second in the next month's first 3 days
) WITHOUT ROWID;

CREATE TABLE report_token (
    msg             TEXT PRIMARY KEY,     -- the token's message (base64url)
    key_id          TEXT NOT NULL,
    json            TEXT NOT NULL,        -- the unblinded token
    obtained_at     INTEGER NOT NULL,
    used_by         TEXT                  -- the month whose report carries it; NULL: unused
) WITHOUT ROWID;

CREATE TABLE report_setting (
    key             TEXT PRIMARY KEY,     -- 'report_opt_in': Unix seconds of the family's opt-in
    value           TEXT NOT NULL
) WITHOUT ROWID;
"#;

/// Migration 9: what a household chose to spend and what it paid (budget/). A budget holds
/// per month; a `NULL` column sets no limit of that kind. Never edit once released; add a
/// migration.
const BUDGET: &str = r#"
CREATE TABLE budget (
    scope               TEXT NOT NULL CHECK (scope IN ('household', 'member')),
    subject             TEXT NOT NULL,      -- a household id, or a member's Matrix user id
    energy_wh           REAL,               -- energy per month (the statement's total_wh)
    money               REAL,               -- cost per month, in the statement's currency
    media_stored_bytes  INTEGER,            -- media kept in Synapse (the directory's figure)
    media_upload_bytes  INTEGER,            -- media uploaded per calendar month (Synapse counts)
    limited_burst       INTEGER NOT NULL DEFAULT 3, -- once used up: this many messages in a row, then one a second
    prepaid             INTEGER NOT NULL DEFAULT 0, -- household only: the budget is what was paid
    set_by              TEXT NOT NULL,
    set_s               INTEGER NOT NULL,   -- Unix seconds
    PRIMARY KEY (scope, subject)
) WITHOUT ROWID;

CREATE TABLE topup (
    id          INTEGER PRIMARY KEY,
    household   TEXT NOT NULL,
    amount      REAL NOT NULL CHECK (amount > 0),
    method      TEXT NOT NULL CHECK (method IN ('cash', 'transfer')),
    note        TEXT NOT NULL DEFAULT '',
    by_user     TEXT NOT NULL,              -- the server admin who recorded it
    at_s        INTEGER NOT NULL            -- Unix seconds
);
CREATE INDEX topup_household ON topup (household, at_s);

CREATE TABLE cost_setting (
    id              INTEGER PRIMARY KEY CHECK (id = 1),
    tariff_per_kwh  REAL,                   -- NULL: nobody set a tariff on the page
    supplier        TEXT,                   -- the electricity supplier, as the family names it
    fixed_costs     TEXT NOT NULL DEFAULT '[]', -- JSON: [{"name", "amount", "per": "month|year"}]
    set_by          TEXT NOT NULL,
    set_s           INTEGER NOT NULL
);

-- What the enforcer last did, so a restart neither repeats a notice nor forgets a throttle.
CREATE TABLE budget_notice (
    month       TEXT NOT NULL,              -- "YYYY-MM" (UTC), the budget's month
    user_id     TEXT NOT NULL,
    kind        TEXT NOT NULL,              -- 'energy', 'money', 'stored', 'uploaded', 'prepaid'
    level       INTEGER NOT NULL,           -- 80 or 100 (percent)
    sent_s      INTEGER NOT NULL,
    PRIMARY KEY (month, user_id, kind, level)
) WITHOUT ROWID;

CREATE TABLE budget_throttle (
    user_id     TEXT PRIMARY KEY,           -- a member whose messages Synapse slows for hearth
    burst       INTEGER NOT NULL,           -- Synapse's override: burst_count, one a second
    since_s     INTEGER NOT NULL
) WITHOUT ROWID;

ALTER TABLE member ADD COLUMN lang TEXT;    -- the page's language the member last chose (notices)
"#;

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite::Connection;
    use rusqlite_migration::Migrations;
    use sha2::{Digest, Sha256};

    /// Every released migration's SQL, in order.
    const RELEASED: &[&str] = &[
        POWER,
        AUDIT_LOG,
        DIRECTORY,
        ACCOUNTING,
        ROLES,
        NONMEMBER_ADMIN,
        INVITATION,
        REPORT,
        BUDGET,
    ];

    /// A released migration is never edited: its text is pinned. A new migration adds a line.
    #[test]
    fn released_migrations_are_unchanged() {
        let pinned = [
            "a70bce5df07332e1a8be033c4b93921be3aea11837a7b8838a4487f62576e6b2",
            "f7230bb02d54652edb4dfc45b8c5bf1d66c1dd5ca5cd1a2ff04dbeedb7921cfa",
            "9c21ce1215371809650be2269590e81b1bdaa8efc6d51623877ffa57bc6ddb37",
            "7cf1a0028c559ecef2f754bc27d3fff6d0f060a4eb2d1193891698a63c799baf",
            "2752fbd75eff5f274a96ed62dc02d627dfcac275eb74c585a9789c2c24f8b94c",
            "aea3fd899c0349a3cb117a05f6eaa0168b13424979ad03d707f2935a4bed80bb",
            "79391b887a03c3baaf884cb63362d08624239a7deb2dcc0c611885cc76a7b126",
            "370877531754fb0061db7299036ebc946452f692b23e1d6335af42cfbca5f588",
            "9ff744bb96c98e57a0774a3ce24aa16387da2e4ebc0dea499c140122c7d6f454",
        ];
        assert_eq!(RELEASED.len(), MIGRATIONS.len());
        for (i, sql) in RELEASED.iter().enumerate() {
            let got = hex::encode(Sha256::digest(sql.as_bytes()));
            let want = pinned
                .get(i)
                .copied()
                .unwrap_or("a new migration: pin it here");
            assert_eq!(got, want, "migration {}", i + 1);
        }
    }

    fn schema_of(conn: &Connection) -> Vec<(String, String)> {
        let mut st = conn
            .prepare("SELECT name, sql FROM sqlite_schema WHERE sql IS NOT NULL ORDER BY name")
            .unwrap();
        st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    }

    /// A database left at any released version migrates to the same schema as a new one.
    #[test]
    fn a_database_at_every_released_version_migrates_to_the_latest() {
        let migrations = Migrations::from_slice(MIGRATIONS);
        let mut fresh = Connection::open_in_memory().unwrap();
        migrations.to_latest(&mut fresh).unwrap();
        let latest = schema_of(&fresh);
        assert!(
            latest.iter().any(|(n, _)| n == "report_setting"),
            "{latest:?}"
        );
        for version in 0..MIGRATIONS.len() {
            let mut old = Connection::open_in_memory().unwrap();
            migrations.to_version(&mut old, version).unwrap();
            migrations.to_latest(&mut old).unwrap();
            assert_eq!(schema_of(&old), latest, "from version {version}");
        }
    }
}
