//! Integration tests of the supervisor: one binary, one module per feature.
#![allow(clippy::unwrap_used)] // a test crate: a panic is a failed test

mod account;
mod accounting_e2e;
mod audit;
mod backup;
mod backup_page;
mod browser;
mod browser_signin;
mod budgets;
mod cli;
mod daemon;
mod directory;
mod invite;
mod limits_module;
mod postgres_log;
mod replay;
mod report_page;
mod reports;
mod root_scripts;
mod seal_notice;
mod server;
mod signin;
mod synapse;
mod update;
mod update_page;

use std::path::PathBuf;

/// The supervisor's command line, as a family or a script runs it: exit code, stdout, stderr.
pub fn supervisor(args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hearth-supervisor"))
        .args(args)
        .output()
        .expect("run hearth-supervisor");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A file under `supervisor/testdata/`.
pub fn testdata(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("testdata")
        .join(rel)
}
