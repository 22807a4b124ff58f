//! Signing in with a real browser: headless Chromium, driven over the DevTools protocol, fills in
//! the page's sign-in form with a member's Matrix password (checked by the real test Synapse),
//! lands on the statement, sees its own figures and the day chart and nobody else's, is refused
//! another member's statement, switches to German, and reads the access log. Screenshots go to
//! `target/browser/`.

use crate::daemon::{free_port, start, status, wait_for};
use crate::synapse::Synapse;
use base64::Engine as _;
use hearth::accounting::directory::{self, Snapshot, SynapseAccount};
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tungstenite::{Message, WebSocket};

/// Headless Chromium with its DevTools endpoint; killed on drop.
struct Browser {
    child: Child,
    ws: WebSocket<TcpStream>,
    next: u64,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The body of a plain GET, retried while the endpoint is coming up.
fn http_get(port: u16, path: &str) -> String {
    let t0 = Instant::now();
    loop {
        let got = (|| {
            let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
            s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
            write!(
                s,
                "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
            )
            .ok()?;
            // DevTools may keep the connection open: read up to Content-Length.
            let mut buf = Vec::new();
            let mut chunk = [0u8; 8192];
            loop {
                let n = s.read(&mut chunk).ok()?;
                if n == 0 {
                    break;
                }
                buf.extend_from_slice(&chunk[..n]);
                let text = String::from_utf8_lossy(&buf);
                if let Some((head, body)) = text.split_once("\r\n\r\n") {
                    let len = head
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().to_string())
                        })
                        .and_then(|v| v.parse::<usize>().ok());
                    if len.is_some_and(|l| body.len() >= l) {
                        break;
                    }
                }
            }
            let text = String::from_utf8_lossy(&buf).into_owned();
            text.split_once("\r\n\r\n").map(|(_, b)| b.to_string())
        })();
        if let Some(b) = got.filter(|b| !b.is_empty()) {
            return b;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "DevTools {path} did not answer"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

impl Browser {
    fn launch(profile: &Path, lang: &str) -> Browser {
        std::fs::create_dir_all(profile).unwrap();
        let child = Command::new("chromium")
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--hide-scrollbars",
                "--window-size=390,844",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--accept-lang={lang}"))
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg("about:blank")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromium (make test-deps installs it)");
        let port_file = profile.join("DevToolsActivePort");
        let t0 = Instant::now();
        let port: u16 = loop {
            if let Some(p) = std::fs::read_to_string(&port_file)
                .ok()
                .and_then(|s| s.lines().next().and_then(|l| l.parse().ok()))
            {
                break p;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(60),
                "chromium did not open DevTools"
            );
            std::thread::sleep(Duration::from_millis(100));
        };
        let targets: Value = serde_json::from_str(&http_get(port, "/json/list")).unwrap();
        let url = targets
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["type"] == "page")
            .and_then(|t| t["webSocketDebuggerUrl"].as_str())
            .expect("a page target")
            .to_string();
        let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(1)))
            .unwrap();
        let (ws, _) = tungstenite::client(url.as_str(), stream).expect("DevTools WebSocket");
        let mut b = Browser { child, ws, next: 0 };
        b.call("Page.enable", json!({}));
        b
    }

    fn call(&mut self, method: &str, params: Value) -> Value {
        self.next += 1;
        let id = self.next;
        self.ws
            .send(Message::text(
                json!({"id": id, "method": method, "params": params}).to_string(),
            ))
            .unwrap();
        let t0 = Instant::now();
        loop {
            assert!(
                t0.elapsed() < Duration::from_secs(30),
                "{method}: no answer within 30 s"
            );
            let msg = match self.ws.read() {
                Ok(m) => m,
                Err(tungstenite::Error::Io(e))
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    continue
                }
                Err(e) => panic!("{method}: {e}"),
            };
            let Message::Text(t) = msg else {
                continue;
            };
            let v: Value = serde_json::from_str(&t).unwrap();
            if v["id"] == id {
                assert!(v.get("error").is_none(), "{method}: {v}");
                return v["result"].clone();
            }
        }
    }

    /// The value of a JavaScript expression (promises awaited).
    fn eval(&mut self, expr: &str) -> Value {
        let r = self.call(
            "Runtime.evaluate",
            json!({"expression": expr, "awaitPromise": true, "returnByValue": true}),
        );
        r["result"]["value"].clone()
    }

    /// Wait until the page at `path` has loaded.
    fn wait_path(&mut self, path: &str) {
        let t0 = Instant::now();
        loop {
            let v = self.eval("location.pathname + ' ' + document.readyState");
            if v.as_str() == Some(&format!("{path} complete")) {
                return;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(30),
                "still at {v} waiting for {path}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Run `js` (which submits a form) and wait for the next page at `path`.
    fn submit(&mut self, js: &str, path: &str) {
        self.eval(&format!("window.hearthOld = 1; {js}"));
        let t0 = Instant::now();
        loop {
            let v = self.eval(
                "(typeof window.hearthOld) + ' ' + location.pathname + ' ' + document.readyState",
            );
            if v.as_str() == Some(&format!("undefined {path} complete")) {
                return;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(30),
                "still at {v} waiting for {path}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn open(&mut self, url: &str, path: &str) {
        self.call("Page.navigate", json!({"url": url}));
        self.wait_path(path);
    }

    fn html(&mut self) -> String {
        self.eval("document.documentElement.outerHTML")
            .as_str()
            .unwrap()
            .to_string()
    }

    fn screenshot(&mut self, name: &str) -> PathBuf {
        let r = self.call(
            "Page.captureScreenshot",
            json!({"format": "png", "captureBeyondViewport": true}),
        );
        let png = base64::engine::general_purpose::STANDARD
            .decode(r["data"].as_str().unwrap())
            .unwrap();
        assert!(png.starts_with(b"\x89PNG") && png.len() > 10_000);
        let path = artifacts().join(name);
        std::fs::write(&path, png).unwrap();
        path
    }
}

fn artifacts() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.ancestors().nth(3).unwrap().join("browser");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn a_member_signs_in_in_a_real_browser_and_sees_only_their_own_statement() {
    if std::env::var_os("HEARTH_SKIP_BROWSER").is_some_and(|v| v == "1") {
        eprintln!("browser test skipped (HEARTH_SKIP_BROWSER=1)");
        return;
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    let s = Synapse::shared();
    let (a, b) = (s.unique("alice"), s.unique("bob"));
    let (alice, bob) =
        rt.block_on(async { (s.register(&a, false).await, s.register(&b, false).await) });

    // The daemon over a database whose directory has both members (the sync from Synapse's
    // admin API is tested elsewhere); it signs in at the test Synapse and flushes every 2 s.
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("hearth.db");
    {
        let mut conn = hearth::storage::open_connection(&db).unwrap();
        let accounts = [&alice.user_id, &bob.user_id]
            .iter()
            .map(|u| SynapseAccount {
                user_id: u.to_string(),
                deactivated: false,
                is_guest: false,
                user_type: None,
                created_s: Some(1_000),
                admin: false,
            })
            .collect();
        let snap = Snapshot {
            me: "@hearth:test".into(),
            accounts,
            ..Snapshot::default()
        };
        directory::apply(&mut conn, &snap, 2_000).unwrap();
    }
    let port = free_port();
    let cfg = dir.path().join("supervisor.toml");
    std::fs::write(
        &cfg,
        format!(
            "[power]\nbackend = \"simulated\"\n\n[storage]\npath = {:?}\nflush_interval_s = 2\n\n\
             [http]\nlisten = \"127.0.0.1:{port}\"\n\n[log]\nlevel = \"warn\"\n\n\
             [health]\nbackend = \"none\"\nsynapse_url = {:?}\n\n\
             [accounting]\ntariff_per_kwh = 0.32\ncurrency = \"EUR\"\nbase_watts = 2.0\n",
            db.display().to_string(),
            s.base_url()
        ),
    )
    .unwrap();
    let d = start(&cfg, port);
    wait_for("a power reading", Duration::from_secs(20), || {
        status(d.port).filter(|s| s["power"]["watts"].is_number())
    });
    // The first stored minutes (the statement is computed from what is stored).
    std::thread::sleep(Duration::from_secs(5));
    let base = format!("http://127.0.0.1:{port}");

    let mut br = Browser::launch(&dir.path().join("profile"), "en-US");
    // Not signed in: the statement sends the browser to the sign-in form.
    br.open(&format!("{base}/statement"), "/signin");
    assert!(br.html().contains("autocomplete=\"current-password\""));
    br.screenshot("signin-en.png");

    // A wrong password: the form again, with the reason.
    let fill = |user: &str, pw: &str| {
        format!(
            "document.getElementById('user').value = {}; \
             document.getElementById('password').value = {}; \
             document.querySelector('form.stack').submit(); true",
            json!(user),
            json!(pw)
        )
    };
    br.submit(&fill(&a, "not-the-password"), "/signin");
    let again = br.html();
    assert!(again.contains("Wrong user name or password."), "{again}");

    // The right one: the statement, her figures, the day chart, nobody else.
    br.submit(&fill(&a, &Synapse::password(&a)), "/statement");
    let page = br.html();
    assert!(page.contains(&alice.user_id), "signed in as alice: {page}");
    assert!(page.contains("id=\"own\""), "her own figures: {page}");
    assert!(!page.contains(&bob.user_id), "nothing about bob");
    assert!(
        br.eval("document.querySelectorAll('figure.bars rect.bar').length")
            .as_u64()
            >= Some(1),
        "the day chart has a bar for today"
    );
    // The cookie is not readable by script (HttpOnly).
    assert_eq!(
        br.eval("document.cookie.includes('hearth_session')"),
        json!(false)
    );
    br.screenshot("statement-en.png");

    // Bob's statement: refused, from this very session.
    let code = br.eval(&format!(
        "fetch('/api/v1/members?user=' + encodeURIComponent({})).then(r => r.status)",
        json!(bob.user_id)
    ));
    assert_eq!(code, json!(403));
    let own = br.eval(
        "fetch('/api/v1/members').then(r => r.json()).then(j => j.members.map(m => m.user_id))",
    );
    assert_eq!(own, json!([alice.user_id]));

    // German, by the switch link.
    br.open(&format!("{base}/lang/de?next=/statement"), "/statement");
    let de = br.html();
    assert!(de.contains("<html lang=\"de\""));
    assert!(de.contains("Ihr Anteil") && de.contains("Abrechnung"));
    br.screenshot("statement-de.png");

    // The access log: her sign-in, the refused look at bob's figures, and the chain's head.
    br.open(&format!("{base}/audit"), "/audit");
    let log = br.html();
    assert!(log.contains("hat sich angemeldet"), "{log}");
    assert!(log.contains("wurde abgewiesen"));
    assert!(log.contains("id=\"head\""));
    br.screenshot("audit-de.png");

    // The browser remembers the log's seal; on the next visit the log still holds it: no alarm,
    // and the browser moves on to the newer seal.
    fn remembered(br: &mut Browser) -> String {
        let seen = br.eval("localStorage.getItem('hearth.audit.seen')");
        seen.as_str()
            .expect("the browser remembers the seal")
            .to_string()
    }
    let first = remembered(&mut br);
    let alarm = "new Promise(r => setTimeout(() => \
                 r(document.getElementById('head-warning').hidden), 1500))";
    br.open(&format!("{base}/audit"), "/audit");
    assert_eq!(
        br.eval(alarm),
        json!(true),
        "a false alarm on an intact log"
    );
    let seen = remembered(&mut br);
    let (seq, _) = seen.split_once(':').unwrap();
    let first_seq: u64 = first.split_once(':').unwrap().0.parse().unwrap();
    assert!(
        seq.parse::<u64>().unwrap() >= first_seq,
        "the remembered seal went back: {first} then {seen}"
    );
    // Whoever can write hearth.db rewrites the entry the browser saw (triggers dropped first):
    // `audit verify` alone would find a consistent chain if every later hash were redone too.
    {
        let conn = hearth::storage::open_connection(&db).unwrap();
        let triggers: Vec<String> = conn
            .prepare(
                "SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'audit_log'",
            )
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        for t in triggers {
            conn.execute_batch(&format!("DROP TRIGGER {t}")).unwrap();
        }
        let n = conn
            .execute(
                "UPDATE audit_log SET hash = ?1 WHERE seq = ?2",
                rusqlite::params!["0".repeat(64), seq.parse::<i64>().unwrap()],
            )
            .unwrap();
        assert_eq!(n, 1);
    }
    br.open(&format!("{base}/audit"), "/audit");
    assert_eq!(br.eval(alarm), json!(false), "no alarm on a rewritten log");
    assert_eq!(
        br.eval("document.getElementById('head-seen').textContent"),
        json!(seen)
    );
    br.screenshot("audit-rewritten-de.png");

    // Who can access the data: for members, now that she is signed in.
    br.open(&format!("{base}/access"), "/access");
    let access = br.html();
    assert!(
        access.contains("<main id=\"main\" class=\"access\">"),
        "{access}"
    );
    br.screenshot("access-de.png");

    // The energy report: what would leave the box, in her language; a member gets no switch.
    br.open(&format!("{base}/report"), "/report");
    let report = br.html();
    assert!(report.contains("Der monatliche Energiebericht"), "{report}");
    assert!(report.contains("Die Konfiguration erlaubt keine Berichte"));
    assert!(report.contains("id=\"report-preview\"") && !report.contains("id=\"report-switch\""));
    br.screenshot("report-de.png");

    // Signing out from the header's form ends the session.
    br.submit(
        "document.querySelector('.account form').submit(); true",
        "/",
    );
    let code = br.eval("fetch('/api/v1/members').then(r => r.status)");
    assert_eq!(code, json!(401));
}
