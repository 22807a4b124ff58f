//! The household budgets' Synapse module (`overlays/usr/lib/hearth/synapse/hearth_limits.py`):
//! its own unittest suite, run with the Synapse venv's Python, and a real Synapse that loads it
//! and asks a socket of the test's for a member's upload limits.
//!
//! The module fails open: with nothing listening on its socket, uploads go through on Synapse's
//! own defaults (the module's docstring says why). With a supervisor that says a member is
//! blocked, that member's upload is refused with 403 `M_USER_LIMIT_EXCEEDED` and the budget's
//! page, while a member without a budget (404) uploads as before.

use crate::synapse::{modules_dir, venv, Synapse};
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixListener;

#[test]
fn the_modules_own_tests_pass() {
    let python = venv().join("bin/python");
    assert!(
        python.exists(),
        "no Synapse venv at {}: run `make synapse` (scripts/dev-synapse) first",
        venv().display()
    );
    let out = Command::new(&python)
        .args(["-m", "unittest", "-v", "test_hearth_limits"])
        .current_dir(modules_dir())
        // No __pycache__ written into overlays/, which the image copies whole.
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .expect("run the venv's python");
    assert!(
        out.status.success(),
        "python -m unittest test_hearth_limits failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Starts a Synapse of the test's own, off the async runtime (starting blocks).
async fn synapse_asking(socket: &Path) -> Synapse {
    let socket = socket.to_path_buf();
    tokio::task::spawn_blocking(move || Synapse::start_with_limits(&socket))
        .await
        .expect("start Synapse")
}

#[tokio::test]
async fn uploads_go_through_when_no_supervisor_listens() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("limits.sock");
    let s = synapse_asking(&socket).await;
    let anna = s.register(&s.unique("anna"), false).await;
    let mxc = anna.upload(&[7u8; 4096], "image/jpeg").await;
    assert!(mxc.starts_with("mxc://localhost/"), "{mxc}");
    let log = std::fs::read_to_string(s.log_path()).unwrap();
    assert!(
        log.contains("hearth_limits: cannot ask the supervisor"),
        "the module warns that it could not ask:\n{log}"
    );
}

const INFO_URI: &str = "https://hearth.test/budget";

/// A stand-in for the supervisor's socket: `blocked` is blocked, everyone else has no budget
/// (404). Records the user ids it was asked about.
fn serve(listener: UnixListener, blocked: String, asked: Arc<Mutex<Vec<String>>>) {
    tokio::spawn(async move {
        loop {
            let Ok((mut conn, _)) = listener.accept().await else {
                return;
            };
            let blocked = blocked.clone();
            let asked = asked.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&head);
                let target = head.split(' ').nth(1).unwrap_or_default();
                let user = percent_decode(target.strip_prefix("/v1/limits/").unwrap_or_default());
                asked.lock().unwrap().push(user.clone());
                let (status, body) = if user == blocked {
                    (
                        "200 OK",
                        serde_json::json!({
                            "user_id": user,
                            "month_start_ms": 1_764_543_600_000_i64,
                            "uploaded_max_bytes": null,
                            "stored_remaining_bytes": null,
                            "blocked": true,
                            "info_uri": INFO_URI,
                        })
                        .to_string(),
                    )
                } else {
                    ("404 Not Found", r#"{"error":"no budget"}"#.to_string())
                };
                let answer = format!(
                    "HTTP/1.1 {status}\r\ncontent-type: application/json\r\n\
                     content-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = conn.write_all(answer.as_bytes()).await;
                let _ = conn.shutdown().await;
            });
        }
    });
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let hex = b
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok());
        match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
            Some(v) if b[i] == b'%' => {
                out.push(v);
                i += 3;
            }
            _ => {
                out.push(b[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn a_blocked_member_is_refused_and_a_member_without_a_budget_is_not() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("limits.sock");
    let s = synapse_asking(&socket).await;
    let anna = s.register(&s.unique("anna"), false).await;
    let ben = s.register(&s.unique("ben"), false).await;
    let asked = Arc::new(Mutex::new(Vec::new()));
    serve(
        UnixListener::bind(&socket).unwrap(),
        anna.user_id.clone(),
        asked.clone(),
    );

    let (status, v) = anna.try_upload(&[7u8; 4096], "image/jpeg").await;
    assert_eq!(status, reqwest::StatusCode::FORBIDDEN, "{v}");
    assert_eq!(v["errcode"], "M_USER_LIMIT_EXCEEDED", "{v}");
    assert_eq!(v["info_uri"], INFO_URI, "{v}");

    let mxc = ben.upload(&[7u8; 4096], "image/jpeg").await;
    assert!(mxc.starts_with("mxc://localhost/"), "{mxc}");
    assert_eq!(
        *asked.lock().unwrap(),
        [anna.user_id.clone(), ben.user_id.clone()],
        "the module asked about each uploader once, by their full user id"
    );
    let log = std::fs::read_to_string(s.log_path()).unwrap();
    assert!(
        log.contains(&format!(
            "hearth_limits: refused an upload of 4096 bytes by {}",
            anna.user_id
        )),
        "the refusal is logged:\n{log}"
    );
}
