//! A throwaway PostgreSQL server for the tests: `initdb` into a temporary directory, the
//! server listening only on a Unix socket in that directory (no TCP port), databases made
//! with `createdb`, and `pg_ctl stop -m immediate` when it is dropped. As root (CI), the
//! server runs as the `postgres` user (`runuser`), which owns the directory.
//!
//! PostgreSQL's server programs must be installed (`make test-deps`); without them these
//! tests fail and say so, they are never skipped.
#![allow(dead_code)] // each test crate uses its part

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub struct Postgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    /// `runuser -u postgres --` in front of the server's programs (we are root).
    as_postgres: bool,
}

/// The directory with `initdb`, `pg_ctl` and `postgres`: `$HEARTH_PG_BINDIR`, Debian's newest
/// `/usr/lib/postgresql/<version>/bin`, or the `PATH`.
fn bindir() -> PathBuf {
    let missing = |looked: &str| -> ! {
        panic!(
            "PostgreSQL's server programs (initdb, pg_ctl, postgres) are not installed \
             (looked in {looked}): install postgresql: make test-deps"
        )
    };
    if let Some(dir) = std::env::var_os("HEARTH_PG_BINDIR") {
        let dir = PathBuf::from(dir);
        if !dir.join("initdb").exists() {
            missing(&format!("$HEARTH_PG_BINDIR = {}", dir.display()));
        }
        return dir;
    }
    let mut debian: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    debian.sort();
    if let Some((_, bin)) = debian.pop() {
        return bin;
    }
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .find(|d| d.join("initdb").exists() && d.join("pg_ctl").exists())
        .unwrap_or_else(|| missing("/usr/lib/postgresql/*/bin and the PATH"))
}

fn check(what: &str, out: std::io::Result<Output>) -> Output {
    let out = out.unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what}: {}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

impl Postgres {
    /// A new server, running.
    pub fn start() -> Postgres {
        Postgres::start_with("")
    }

    /// A new server with `extra` appended to its `postgresql.conf` (before the test's own
    /// socket and speed settings), running.
    pub fn start_with(extra: &str) -> Postgres {
        let bin = bindir();
        let dir = tempfile::Builder::new()
            .prefix("hearth-pg")
            .tempdir()
            .unwrap();
        let as_postgres = rustix::process::geteuid().is_root();
        if as_postgres {
            // initdb and the server refuse to run as root: the `postgres` user owns the cluster.
            check(
                "chown the test cluster's directory to the postgres user (does the user exist? \
                 install postgresql: make test-deps)",
                Command::new("chown")
                    .args(["postgres:postgres"])
                    .arg(dir.path())
                    .output(),
            );
        }
        let pg = Postgres {
            dir,
            bin,
            as_postgres,
        };
        check(
            "initdb",
            pg.server_program("initdb")
                .arg("-D")
                .arg(pg.data())
                .args([
                    "-U",
                    "postgres",
                    "--auth=trust",
                    "--encoding=UTF8",
                    "--locale=C",
                    "--no-sync",
                ])
                .output(),
        );
        let conf = format!(
            "\nlisten_addresses = ''\nunix_socket_directories = '{}'\nfsync = off\n\
             synchronous_commit = off\nfull_page_writes = off\nmax_connections = 100\n",
            pg.socket_dir().display()
        );
        let conf_file = pg.data().join("postgresql.conf");
        let mut text = std::fs::read_to_string(&conf_file).unwrap();
        text.push('\n');
        text.push_str(extra);
        text.push_str(&conf);
        std::fs::write(&conf_file, text).unwrap();
        pg.pg_ctl(&["start", "-w", "-t", "60"]);
        pg
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Where the server's socket is (`.s.PGSQL.5432`).
    pub fn socket_dir(&self) -> &Path {
        self.dir.path()
    }

    /// A program that must run as the cluster's owner.
    fn server_program(&self, name: &str) -> Command {
        let program = self.bin.join(name);
        if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(program);
            c
        } else {
            Command::new(program)
        }
    }

    fn pg_ctl(&self, args: &[&str]) {
        check(
            &format!("pg_ctl {}", args.join(" ")),
            self.server_program("pg_ctl")
                .arg("-D")
                .arg(self.data())
                .arg("-l")
                .arg(self.dir.path().join("server.log"))
                .args(args)
                .output(),
        );
    }

    /// A client program, connecting over the socket as the superuser.
    fn client(&self, name: &str) -> Command {
        let mut c = Command::new(self.bin.join(name));
        c.arg("-h").arg(self.socket_dir()).args(["-U", "postgres"]);
        c
    }

    /// Stops the server (`-m fast`: the clients' connections are closed) and starts it again.
    pub fn restart(&self) {
        self.pg_ctl(&["restart", "-m", "fast", "-w", "-t", "60"]);
    }

    /// A new, empty database; its URL (`postgresql://postgres@<socket dir>/<name>`).
    pub fn create_db(&self, name: &str) -> String {
        check(
            &format!("createdb {name}"),
            self.client("createdb").arg(name).output(),
        );
        self.url(name)
    }

    pub fn url(&self, db: &str) -> String {
        let host: String = self
            .socket_dir()
            .to_str()
            .unwrap()
            .replace('%', "%25")
            .replace('/', "%2F");
        format!("postgresql://postgres@{host}/{db}")
    }

    /// One SQL statement's result, as psql prints it unaligned (`-At`).
    pub fn sql(&self, db: &str, statement: &str) -> String {
        let out = check(
            &format!("psql {statement}"),
            self.client("psql")
                .args([
                    "-X",
                    "-At",
                    "-v",
                    "ON_ERROR_STOP=1",
                    "-d",
                    db,
                    "-c",
                    statement,
                ])
                .output(),
        );
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    }

    /// One SQL statement through psql, which may fail (its output either way).
    pub fn try_sql(&self, db: &str, statement: &str) -> Output {
        self.client("psql")
            .args(["-X", "-At", "-d", db, "-c", statement])
            .output()
            .unwrap_or_else(|e| panic!("psql: {e}"))
    }

    /// What the server wrote to its log so far (its stderr: `pg_ctl -l`).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// Everything in the database, as `pg_dump` writes it.
    pub fn dump(&self, db: &str) -> Vec<u8> {
        check(
            &format!("pg_dump {db}"),
            self.client("pg_dump").arg(db).output(),
        )
        .stdout
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let stopped = self
            .server_program("pg_ctl")
            .arg("-D")
            .arg(self.data())
            .args(["stop", "-m", "immediate", "-w"])
            .output();
        if !stopped.as_ref().is_ok_and(|o| o.status.success()) {
            eprintln!("the test's PostgreSQL did not stop: {stopped:?}");
        }
    }
}
