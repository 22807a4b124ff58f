//! The appliance's PostgreSQL (`overlays/usr/lib/hearth/postgresql.conf`, issue 15) never writes
//! what members wrote into the journal. Synapse's driver (psycopg2) sends each statement with its
//! values inlined, so a logged statement is a logged message body: neither a slow statement nor
//! a failed one may be logged with its text, and errors are logged without their DETAIL (which
//! names the values of a violated key). The server still logs that something went wrong.

#[path = "../../../cooperative/tests/pg/mod.rs"]
mod pg;

#[test]
fn postgres_with_the_appliance_configuration_logs_no_statement_text() {
    let conf = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../overlays/usr/lib/hearth/postgresql.conf"),
    )
    .unwrap();
    let pg = pg::Postgres::start_with(&conf);
    pg.create_db("synapse");
    pg.sql(
        "synapse",
        "CREATE TABLE event_json (event_id text PRIMARY KEY, json text NOT NULL)",
    );
    pg.sql(
        "synapse",
        "INSERT INTO event_json VALUES ('$first', '{\"body\": \"secret-first-words\"}')",
    );
    // Slower than any threshold a Pi would choose.
    pg.sql(
        "synapse",
        "WITH slow AS (SELECT pg_sleep(2.5)) INSERT INTO event_json \
         SELECT '$slow', '{\"body\": \"secret-slow-insert\"}' FROM slow",
    );
    // A failed insert (the key exists).
    let failed = pg.try_sql(
        "synapse",
        "INSERT INTO event_json VALUES ('$first', '{\"body\": \"secret-failed-insert\"}')",
    );
    assert!(!failed.status.success(), "the duplicate key is refused");

    let log = pg.log();
    assert!(
        log.contains("duplicate key value violates unique constraint"),
        "the server logs the error itself: {log}"
    );
    for secret in ["secret-", "$first"] {
        assert!(
            !log.contains(secret),
            "PostgreSQL's log holds {secret:?} from a statement:\n{log}"
        );
    }
}
