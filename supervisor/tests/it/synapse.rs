//! A real Synapse for the integration tests (PRODUCT §7): one per test process, started on
//! first use from the developer venv (`make synapse`, i.e. `scripts/dev-synapse`), on a free
//! loopback port, with its own temporary directory (SQLite, media, logs), a registration shared
//! secret and relaxed rate limits. It stops, and its directory is removed, when the test
//! process ends (a shell beside it waits for the test process's end of its stdin pipe).
//!
//! ```ignore
//! let s = Synapse::shared();
//! let admin = s.register(&s.unique("admin"), true).await;
//! let alice = s.register(&s.unique("alice"), false).await;
//! let room = alice.create_room().await;
//! alice.send_text(&room, "hello").await;
//! let mxc = alice.upload(&[0u8; 1000], "application/octet-stream").await;
//! let lines = s.access_log(); // Synapse's access lines, UTC, default format
//! ```
//!
//! Tests share the server: give users names from [`Synapse::unique`] and look only at your own.
//! Without the venv the harness fails and says to run `make synapse`; it never skips.
//!
//! [`Synapse::start_with_limits`] starts a Synapse of the test's own, not shared, that loads the
//! household budgets' module (`overlays/usr/lib/hearth/synapse/hearth_limits.py`) and asks a
//! given socket; it stops when the test drops it.

use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// How long Synapse may take to create its SQLite schema and answer `/health`.
const START_TIMEOUT: Duration = Duration::from_secs(120);

pub struct Synapse {
    base: String,
    server_name: String,
    dir: PathBuf,
    shared_secret: String,
    next: AtomicU32,
    http: reqwest::Client,
    /// Held so that the watcher shell sees EOF only when this process ends.
    _guard: Mutex<(Child, ChildStdin)>,
}

/// The venv `scripts/dev-synapse` creates (or `HEARTH_SYNAPSE_VENV`).
pub fn venv() -> PathBuf {
    std::env::var_os("HEARTH_SYNAPSE_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../var/synapse/venv")
                .components()
                .collect()
        })
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    l.local_addr().expect("local addr").port()
}

/// A fixed Ed25519 signing key (a test server federates with nobody).
const SIGNING_KEY: &str = "ed25519 a_test AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n";

/// The directory of Synapse modules in the overlays (`/usr/lib/hearth/synapse` on the appliance).
pub fn modules_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../overlays/usr/lib/hearth/synapse")
        .components()
        .collect()
}

/// `limits`: the socket the hearth_limits module asks, as homeserver.yaml.in's `modules:` has it.
fn config(dir: &Path, port: u16, secret: &str, limits: Option<&Path>) -> String {
    let d = dir.display();
    let modules = match limits {
        Some(socket) => format!(
            // cache_s: 1 (the appliance: 30), so a test sees a change within a second.
            "modules:\n  - module: hearth_limits.HearthLimits\n    config:\n      socket: \"{}\"\n      cache_s: 1\n",
            socket.display()
        ),
        None => String::new(),
    };
    format!(
        r#"server_name: "localhost"
public_baseurl: "http://127.0.0.1:{port}/"
report_stats: false
listeners:
  - port: {port}
    bind_addresses: ['127.0.0.1']
    type: http
    tls: false
    x_forwarded: false
    resources:
      - names: [client]
        compress: false
database:
  name: sqlite3
  args:
    database: "{d}/homeserver.db"
log_config: "{d}/log.yaml"
media_store_path: "{d}/media"
signing_key_path: "{d}/signing.key"
enable_registration: false
registration_shared_secret: "{secret}"
macaroon_secret_key: "{secret}-macaroon"
form_secret: "{secret}-form"
presence:
  enabled: false
url_preview_enabled: false
trusted_key_servers: []
suppress_key_server_warning: true
rc_login:
  address: {{per_second: 1000, burst_count: 1000}}
  account: {{per_second: 1000, burst_count: 1000}}
  failed_attempts: {{per_second: 1000, burst_count: 1000}}
rc_message: {{per_second: 1000, burst_count: 1000}}
rc_registration: {{per_second: 1000, burst_count: 1000}}
rc_joins:
  local: {{per_second: 1000, burst_count: 1000}}
  remote: {{per_second: 1000, burst_count: 1000}}
rc_invites:
  per_room: {{per_second: 1000, burst_count: 1000}}
  per_user: {{per_second: 1000, burst_count: 1000}}
rc_media_create: {{per_second: 1000, burst_count: 1000}}
rc_admin_redaction: {{per_second: 1000, burst_count: 1000}}
server_notices:
  system_mxid_localpart: notices
  system_mxid_display_name: "hearth"
  room_name: "hearth"
{modules}"#
    )
}

/// Synapse's default format, as on the appliance (access lines `synapse.access.http.<port>`),
/// to `homeserver.log`.
fn log_config(dir: &Path) -> String {
    format!(
        r#"version: 1
formatters:
  precise:
    format: '%(asctime)s - %(name)s - %(lineno)d - %(levelname)s - %(request)s - %(message)s'
filters:
  context:
    (): synapse.logging.context.LoggingContextFilter
    request: ""
handlers:
  file:
    class: logging.FileHandler
    formatter: precise
    filters: [context]
    filename: "{}/homeserver.log"
root:
  level: INFO
  handlers: [file]
loggers:
  synapse.storage.SQL:
    level: INFO
disable_existing_loggers: false
"#,
        dir.display()
    )
}

/// `GET /health` over a plain socket (no async runtime needed while starting).
fn healthy(addr: SocketAddr) -> bool {
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(500)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(b"GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out.starts_with("HTTP/1.0 200") || out.starts_with("HTTP/1.1 200")
}

fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

impl Synapse {
    /// The test process's Synapse, started on first use.
    pub fn shared() -> &'static Synapse {
        static ONE: OnceLock<Synapse> = OnceLock::new();
        ONE.get_or_init(|| Synapse::start(None))
    }

    /// A Synapse of the caller's own whose hearth_limits module asks `socket` for upload
    /// limits (the module's directory on its path by PYTHONPATH, as the appliance's unit does).
    /// It stops, and its directory goes, when the value is dropped. Blocks while it starts.
    pub fn start_with_limits(socket: &Path) -> Synapse {
        Synapse::start(Some(socket))
    }

    fn start(limits: Option<&Path>) -> Synapse {
        let venv = venv();
        let python = venv.join("bin/python");
        assert!(
            python.exists(),
            "no Synapse venv at {}: run `make synapse` (scripts/dev-synapse) first; \
             the integration tests need a real Synapse",
            venv.display()
        );
        let dir = tempfile::Builder::new()
            .prefix("hearth-test-synapse-")
            .tempdir()
            .expect("temp dir")
            .keep();
        let port = free_port();
        let secret = format!("hearth-test-{}-{port}", std::process::id());
        let cfg = dir.join("homeserver.yaml");
        std::fs::create_dir_all(dir.join("media")).unwrap();
        std::fs::write(&cfg, config(&dir, port, &secret, limits)).unwrap();
        std::fs::write(dir.join("log.yaml"), log_config(&dir)).unwrap();
        std::fs::write(dir.join("signing.key"), SIGNING_KEY).unwrap();
        // The shell starts Synapse, waits for EOF on its stdin (this process ending), then stops
        // Synapse and removes the directory.
        let script = r#"
            "$1" -m synapse.app.homeserver --config-path "$2" </dev/null &
            pid=$!
            read -r _ || true
            kill -TERM "$pid" 2>/dev/null
            wait "$pid"
            rm -rf "$3"
        "#;
        let out = std::fs::File::create(dir.join("stdout.log")).unwrap();
        let mut command = Command::new("bash");
        if limits.is_some() {
            // No __pycache__ written into overlays/, which the image copies whole.
            command
                .env("PYTHONPATH", modules_dir())
                .env("PYTHONDONTWRITEBYTECODE", "1");
        }
        let mut child = command
            .args(["-c", script, "synapse"])
            .arg(&python)
            .arg(&cfg)
            .arg(&dir)
            .env("TZ", "UTC")
            .current_dir(&dir)
            .stdin(Stdio::piped())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("start bash for Synapse");
        let stdin = child.stdin.take().expect("piped stdin");
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let t0 = Instant::now();
        while !healthy(addr) {
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "Synapse exited ({status}) before answering /health on {addr}:\n{}\n{}",
                    tail(&dir.join("stdout.log"), 30),
                    tail(&dir.join("homeserver.log"), 30)
                );
            }
            assert!(
                t0.elapsed() < START_TIMEOUT,
                "Synapse did not answer /health on {addr} within {START_TIMEOUT:?}:\n{}",
                tail(&dir.join("homeserver.log"), 30)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        eprintln!(
            "test Synapse on {addr} ready in {:.1} s ({})",
            t0.elapsed().as_secs_f64(),
            dir.display()
        );
        Synapse {
            base: format!("http://{addr}"),
            server_name: "localhost".into(),
            dir,
            shared_secret: secret,
            next: AtomicU32::new(0),
            // No pooled connections: each test has its own runtime, and a connection kept from
            // a finished test's runtime fails the next request.
            http: hearth::http_client::builder()
                .no_proxy()
                .pool_max_idle_per_host(0)
                .timeout(Duration::from_secs(60))
                .build()
                .unwrap(),
            _guard: Mutex::new((child, stdin)),
        }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    pub fn server_name(&self) -> &str {
        &self.server_name
    }

    /// A localpart no other test of this process uses: `<prefix>-<n>`.
    pub fn unique(&self, prefix: &str) -> String {
        format!("{prefix}-{}", self.next.fetch_add(1, Ordering::Relaxed))
    }

    pub fn user_id(&self, localpart: &str) -> String {
        format!("@{localpart}:{}", self.server_name)
    }

    /// Synapse's log file (access lines included, UTC, the default format).
    pub fn log_path(&self) -> PathBuf {
        self.dir.join("homeserver.log")
    }

    /// The access lines logged so far.
    pub fn access_log(&self) -> Vec<String> {
        std::fs::read_to_string(self.log_path())
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains(" - synapse.access.http."))
            .map(String::from)
            .collect()
    }

    /// The password the harness gives `localpart`.
    pub fn password(localpart: &str) -> String {
        format!("pw-{localpart}-hearth")
    }

    /// Register `localpart` with the shared secret (`admin`: a server admin) and return it
    /// logged in.
    pub async fn register(&self, localpart: &str, admin: bool) -> User {
        use hmac::{KeyInit, Mac};
        let url = format!("{}/_synapse/admin/v1/register", self.base);
        let nonce: Value = self
            .http
            .get(&url)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let nonce = nonce["nonce"].as_str().expect("a nonce").to_string();
        let password = Self::password(localpart);
        let mut mac = hmac::Hmac::<sha1::Sha1>::new_from_slice(self.shared_secret.as_bytes())
            .expect("any key length");
        mac.update(nonce.as_bytes());
        mac.update(b"\x00");
        mac.update(localpart.as_bytes());
        mac.update(b"\x00");
        mac.update(password.as_bytes());
        mac.update(b"\x00");
        mac.update(if admin { b"admin" } else { b"notadmin" });
        let mac = hex::encode(mac.finalize().into_bytes());
        let v = self
            .post(
                &url,
                None,
                json!({"nonce": nonce, "username": localpart, "password": password,
                       "admin": admin, "mac": mac}),
            )
            .await;
        User {
            user_id: v["user_id"].as_str().expect("user_id").to_string(),
            access_token: v["access_token"]
                .as_str()
                .expect("access_token")
                .to_string(),
            base: self.base.clone(),
            http: self.http.clone(),
        }
    }

    /// Log in with the password the harness gave `localpart` (a new device and token).
    pub async fn login(&self, localpart: &str) -> User {
        let v = self
            .post(
                &format!("{}/_matrix/client/v3/login", self.base),
                None,
                json!({"type": "m.login.password",
                       "identifier": {"type": "m.id.user", "user": localpart},
                       "password": Self::password(localpart)}),
            )
            .await;
        User {
            user_id: v["user_id"].as_str().expect("user_id").to_string(),
            access_token: v["access_token"]
                .as_str()
                .expect("access_token")
                .to_string(),
            base: self.base.clone(),
            http: self.http.clone(),
        }
    }

    async fn post(&self, url: &str, token: Option<&str>, body: Value) -> Value {
        request(&self.http, reqwest::Method::POST, url, token, Some(body)).await
    }
}

async fn request(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> Value {
    // A rate-limited request (429) is tried again after Synapse's `retry_after_ms`, as every
    // client does (a member whose budget is used up has their messages slowed).
    let mut tries = 0;
    let (status, text) = loop {
        let mut r = http.request(method.clone(), url);
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        if let Some(b) = &body {
            r = r.json(b);
        }
        let res = r
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
        let status = res.status();
        let text = res.text().await.unwrap_or_default();
        tries += 1;
        if status == reqwest::StatusCode::TOO_MANY_REQUESTS && tries < 10 {
            let wait = serde_json::from_str::<Value>(&text)
                .ok()
                .and_then(|v| v["retry_after_ms"].as_u64())
                .unwrap_or(1000);
            tokio::time::sleep(Duration::from_millis(wait.min(5000))).await;
            continue;
        }
        break (status, text);
    };
    assert!(status.is_success(), "{method} {url}: HTTP {status}: {text}");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{method} {url}: {e}: {text}"))
}

/// A path segment (room ids, user ids, transaction ids).
fn seg(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~@:".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A logged-in account.
#[derive(Clone)]
pub struct User {
    pub user_id: String,
    pub access_token: String,
    base: String,
    http: reqwest::Client,
}

impl User {
    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        request(
            &self.http,
            method,
            &format!("{}{path}", self.base),
            Some(&self.access_token),
            body,
        )
        .await
    }

    pub async fn get(&self, path: &str) -> Value {
        self.call(reqwest::Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Value {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    pub async fn put(&self, path: &str, body: Value) -> Value {
        self.call(reqwest::Method::PUT, path, Some(body)).await
    }

    /// A public room this user creates; returns its id.
    pub async fn create_room(&self) -> String {
        let v = self
            .post(
                "/_matrix/client/v3/createRoom",
                json!({"preset": "public_chat", "name": "hearth test"}),
            )
            .await;
        v["room_id"].as_str().expect("room_id").to_string()
    }

    pub async fn join(&self, room: &str) {
        self.post(&format!("/_matrix/client/v3/join/{}", seg(room)), json!({}))
            .await;
    }

    /// Send a text message; returns the event id.
    pub async fn send_text(&self, room: &str, body: &str) -> String {
        static TXN: AtomicU32 = AtomicU32::new(0);
        let txn = format!("t{}", TXN.fetch_add(1, Ordering::Relaxed));
        let v = self
            .call(
                reqwest::Method::PUT,
                &format!(
                    "/_matrix/client/v3/rooms/{}/send/m.room.message/{txn}",
                    seg(room)
                ),
                Some(json!({"msgtype": "m.text", "body": body})),
            )
            .await;
        v["event_id"].as_str().expect("event_id").to_string()
    }

    /// Send a text message, and say how Synapse answered (a rate-limited send is 429).
    pub async fn try_send_text(&self, room: &str, body: &str) -> (reqwest::StatusCode, Value) {
        static TXN: AtomicU32 = AtomicU32::new(0);
        let txn = format!("try{}", TXN.fetch_add(1, Ordering::Relaxed));
        let res = self
            .http
            .put(format!(
                "{}/_matrix/client/v3/rooms/{}/send/m.room.message/{txn}",
                self.base,
                seg(room)
            ))
            .bearer_auth(&self.access_token)
            .json(&json!({"msgtype": "m.text", "body": body}))
            .send()
            .await
            .expect("send");
        let status = res.status();
        (status, res.json().await.unwrap_or(Value::Null))
    }

    /// One `/sync` (initial with `since` None); returns the whole answer (`next_batch` in it).
    pub async fn sync(&self, since: Option<&str>) -> Value {
        let path = match since {
            Some(s) => format!("/_matrix/client/v3/sync?timeout=0&since={}", seg(s)),
            None => "/_matrix/client/v3/sync?timeout=0".to_string(),
        };
        self.get(&path).await
    }

    /// Upload media; returns its `mxc://` URI.
    pub async fn upload(&self, bytes: &[u8], content_type: &str) -> String {
        let (status, v) = self.try_upload(bytes, content_type).await;
        assert!(status.is_success(), "upload: HTTP {status}: {v}");
        v["content_uri"].as_str().expect("content_uri").to_string()
    }

    /// Upload media, successful or not: the status and Synapse's JSON answer.
    pub async fn try_upload(
        &self,
        bytes: &[u8],
        content_type: &str,
    ) -> (reqwest::StatusCode, Value) {
        let res = self
            .http
            .post(format!("{}/_matrix/media/v3/upload", self.base))
            .bearer_auth(&self.access_token)
            .header("content-type", content_type)
            .body(bytes.to_vec())
            .send()
            .await
            .expect("upload");
        let status = res.status();
        let v: Value = res.json().await.expect("upload answer");
        (status, v)
    }

    /// As a server admin: deactivate `user_id` (Synapse keeps the account, marked deactivated).
    pub async fn deactivate(&self, user_id: &str) {
        self.post(
            &format!("/_synapse/admin/v1/deactivate/{}", seg(user_id)),
            json!({"erase": false}),
        )
        .await;
    }
}

#[tokio::test]
async fn members_register_log_in_talk_sync_and_upload_on_a_real_synapse() {
    let s = Synapse::shared();
    let a = s.unique("talker");
    let alice = s.register(&a, false).await;
    assert_eq!(alice.user_id, s.user_id(&a));
    let bob = s.register(&s.unique("listener"), false).await;
    let room = alice.create_room().await;
    bob.join(&room).await;
    let first = bob.sync(None).await;
    let since = first["next_batch"].as_str().unwrap().to_string();
    alice.send_text(&room, "hello from the harness").await;
    // A second device of Alice's, by password.
    let alice2 = s.login(&a).await;
    assert_ne!(alice2.access_token, alice.access_token);
    alice2.send_text(&room, "and from her phone").await;
    let next = bob.sync(Some(&since)).await;
    let bodies: Vec<&str> = next["rooms"]["join"][&room]["timeline"]["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["content"]["body"].as_str())
        .collect();
    assert_eq!(bodies, ["hello from the harness", "and from her phone"]);
    let mxc = alice.upload(b"twelve bytes", "text/plain").await;
    assert!(
        mxc.starts_with(&format!("mxc://{}/", s.server_name())),
        "{mxc}"
    );
    // The access log has Alice's requests in the format the accounting reads.
    // (A line is written when its request has finished: give the last one a moment.)
    let mut mine = 0;
    for _ in 0..50 {
        mine = s
            .access_log()
            .iter()
            .filter_map(|l| hearth::accounting::accesslog::parse_line(l).ok())
            .filter(|r| r.requester == Some(alice.user_id.as_str()))
            .count();
        if mine >= 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // createRoom, two messages (both devices are Alice), the upload.
    assert!(mine >= 4, "alice's requests in the access log: {mine}");
}
