//! The page before it faces the internet (issue 12, item 4): the server loop's limits over real
//! sockets, body limits, `no-store` on what a member sees, repeated refusals folded in the
//! audit log, and the unit's resource bounds. Timeouts are configured short here; the tests
//! assert what happens, never how fast.

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use hearth::accountant::members::Directory;
use hearth::audit::{entries_visible_to, Action, Viewer};
use hearth::config::AccountingConfig;
use hearth::http::{router, serve, AppState, Web};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// Longer than any of these tests needs; only so that a broken server fails instead of hanging.
const SAFETY: Duration = Duration::from_secs(120);

struct Server {
    addr: SocketAddr,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

async fn start(limits: serve::Limits) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = CancellationToken::new();
    let app = router(AppState::minimal(None));
    let task = tokio::spawn(serve::run(
        listener,
        app,
        limits,
        stop.clone().cancelled_owned(),
    ));
    Server { addr, stop, task }
}

fn short() -> serve::Limits {
    serve::Limits {
        max_connections: 256,
        header_timeout: Duration::from_secs(1),
        request_timeout: Duration::from_secs(2),
        grace: Duration::from_secs(1),
    }
}

/// Whatever the server sends until it closes.
async fn read_all(s: &mut TcpStream) -> String {
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(SAFETY, s.read_to_end(&mut buf))
        .await
        .expect("the server closes the connection");
    String::from_utf8_lossy(&buf).into_owned()
}

async fn get_status(addr: SocketAddr) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /api/v1/status HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    read_all(&mut s).await
}

#[tokio::test]
async fn a_thousand_idle_sockets_and_a_slow_body_do_not_keep_a_member_out() {
    let server = start(short()).await;
    // A thousand connections that never say anything: four times the connection limit.
    let mut idle = Vec::new();
    for _ in 0..1000 {
        idle.push(TcpStream::connect(server.addr).await.unwrap());
    }
    // A client that sends its headers, then its body a byte at a time.
    let slow = {
        let addr = server.addr;
        tokio::spawn(async move {
            let s = TcpStream::connect(addr).await.unwrap();
            let (mut rx, mut tx) = s.into_split();
            tx.write_all(
                b"POST /api/v1/session HTTP/1.1\r\nHost: 127.0.0.1\r\n\
                  Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n",
            )
            .await
            .unwrap();
            let writer = tokio::spawn(async move {
                for _ in 0..1000 {
                    if tx.write_all(b" ").await.is_err() {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            });
            // Read as it comes: the answer arrives before the server closes.
            let mut got = Vec::new();
            let mut buf = [0u8; 4096];
            while let Ok(Ok(n)) = tokio::time::timeout(SAFETY, rx.read(&mut buf)).await {
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&buf[..n]);
            }
            writer.abort();
            String::from_utf8_lossy(&got).into_owned()
        })
    };
    // A member's browser still gets its answer (once the idle ones have timed out).
    let answer = tokio::time::timeout(SAFETY, get_status(server.addr))
        .await
        .expect("answered");
    assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
    assert!(answer.contains("\"health\""), "{answer}");
    // The idle ones were closed by the server.
    let mut first = idle.swap_remove(0);
    assert_eq!(read_all(&mut first).await, "", "closed without an answer");
    // The slow body got 503 once its request took too long, and its connection closed.
    let slow = tokio::time::timeout(SAFETY, slow).await.unwrap().unwrap();
    assert!(slow.starts_with("HTTP/1.1 503"), "{slow}");
    assert!(slow.contains("the request took too long"), "{slow}");
    server.stop.cancel();
    tokio::time::timeout(SAFETY, server.task)
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn connections_over_the_limit_wait_for_a_free_one() {
    let mut limits = short();
    limits.max_connections = 4;
    limits.header_timeout = Duration::from_secs(60);
    let server = start(limits).await;
    let mut idle = Vec::new();
    for _ in 0..4 {
        idle.push(TcpStream::connect(server.addr).await.unwrap());
    }
    // The fifth is not served while four are open…
    let waiting = tokio::spawn(get_status(server.addr));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!waiting.is_finished(), "served over the limit");
    // …and is once one of them goes.
    drop(idle.pop());
    let answer = tokio::time::timeout(SAFETY, waiting)
        .await
        .unwrap()
        .unwrap();
    assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
    server.stop.cancel();
}

#[tokio::test]
async fn a_slow_header_sender_is_cut_off() {
    let server = start(short()).await;
    let mut s = TcpStream::connect(server.addr).await.unwrap();
    let head = b"GET /api/v1/status HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    // One byte every 100 ms: the whole head would take over 15 s; the timeout is 1 s.
    let mut sent = 0;
    for b in head.iter() {
        if s.write_all(&[*b]).await.is_err() {
            break;
        }
        sent += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
        // Closed by the server: reading gives end of file (or a reset) at once.
        let mut byte = [0u8; 1];
        if let Ok(r) = tokio::time::timeout(Duration::from_millis(1), s.read(&mut byte)).await {
            assert!(matches!(r, Ok(0) | Err(_)), "no answer to half a head");
            break;
        }
    }
    assert!(sent < head.len(), "the server waited for the whole head");
    // Meanwhile everybody else is served.
    assert!(get_status(server.addr).await.starts_with("HTTP/1.1 200 OK"));
    server.stop.cancel();
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_the_header_timeout() {
    let server = start(short()).await;
    let mut s = TcpStream::connect(server.addr).await.unwrap();
    // Two requests on one connection: keep-alive works…
    for _ in 0..2 {
        s.write_all(b"GET /api/v1/status HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 8192];
        let n = s.read(&mut buf).await.unwrap();
        assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200 OK"));
    }
    // …and then, silent, it is closed (the timeout of 1 s starts again after each answer).
    let rest = read_all(&mut s).await;
    assert!(!rest.contains("HTTP/1.1"), "nothing more is sent: {rest}");
    server.stop.cancel();
}

#[tokio::test]
async fn shutdown_waits_for_requests_in_flight_only_for_the_grace() {
    let mut limits = short();
    limits.request_timeout = Duration::from_secs(3600);
    let server = start(limits).await;
    // An idle keep-alive connection and one stuck in its body.
    let mut kept = TcpStream::connect(server.addr).await.unwrap();
    kept.write_all(b"GET /api/v1/status HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 4096];
    let n = kept.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200 OK"));
    let mut stuck = TcpStream::connect(server.addr).await.unwrap();
    stuck
        .write_all(
            b"POST /api/v1/session HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100\r\n\r\n{",
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    server.stop.cancel();
    // The server ends although the stuck request would wait an hour…
    tokio::time::timeout(SAFETY, server.task)
        .await
        .expect("the grace is bounded")
        .unwrap();
    // …and both connections are closed.
    assert_eq!(read_all(&mut kept).await, "");
    read_all(&mut stuck).await;
    // Nobody listens any more.
    assert!(TcpStream::connect(server.addr).await.is_err());
}

#[tokio::test]
async fn a_large_body_is_refused_before_it_is_read() {
    let server = start(short()).await;
    for path in [
        "/api/v1/session",
        "/signin",
        "/setup",
        "/api/v1/maintenance",
    ] {
        let mut s = TcpStream::connect(server.addr).await.unwrap();
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\n\r\n",
            2 << 20
        );
        s.write_all(head.as_bytes()).await.unwrap();
        // A first KiB of the 2 MiB; the answer comes without the rest.
        s.write_all(&[b'x'; 1024]).await.unwrap();
        let answer = read_all(&mut s).await;
        assert!(answer.starts_with("HTTP/1.1 413"), "{path}: {answer}");
    }
    server.stop.cancel();

    // Without a length (chunked): read up to the limit, not further.
    let pulled = Arc::new(AtomicUsize::new(0));
    let chunks = {
        let pulled = pulled.clone();
        futures_util::stream::iter((0..32).map(move |_| {
            pulled.fetch_add(64 << 10, Ordering::SeqCst);
            Ok::<_, std::io::Error>(bytes_of(64 << 10))
        }))
    };
    let req = Request::post("/api/v1/session")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from_stream(chunks))
        .unwrap();
    let resp = router(AppState::minimal(None)).oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert!(
        pulled.load(Ordering::SeqCst) < 2 << 20,
        "not all 2 MiB read"
    );
}

fn bytes_of(n: usize) -> axum::body::Bytes {
    axum::body::Bytes::from(vec![b' '; n])
}

/// The signed-in doors over a fresh database, and a session for `user` (no Synapse needed:
/// the session is made directly).
fn signed_in(user: &str) -> (axum::Router, Arc<Web>, String, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("hearth.db");
    let web = Arc::new(
        Web::new(
            &db,
            "http://127.0.0.1:9",
            AccountingConfig::default(),
            Arc::new(Directory::new(db.clone())),
            dir.path().join("maintenance"),
        )
        .unwrap(),
    );
    let (token, _) = web.sessions.create(user, false).unwrap();
    let app = router(AppState::minimal(Some(web.clone())));
    (app, web, format!("hearth_session={token}"), dir)
}

async fn cache_control(
    app: &axum::Router,
    path: &str,
    cookie: Option<&str>,
) -> (StatusCode, String) {
    let mut req = Request::get(path);
    if let Some(c) = cookie {
        req = req.header(header::COOKIE, c);
    }
    let resp = app
        .clone()
        .oneshot(req.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let cc = resp
        .headers()
        .get(header::CACHE_CONTROL)
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (resp.status(), cc)
}

#[tokio::test]
async fn what_a_member_sees_is_never_stored_and_the_public_status_keeps_its_caching() {
    let (app, _web, cookie, _dir) = signed_in("@alice:test");
    for path in [
        "/",
        "/statement",
        "/audit",
        "/access",
        "/about",
        "/api/v1/session",
        "/api/v1/audit",
    ] {
        let (status, cc) = cache_control(&app, path, Some(&cookie)).await;
        assert_eq!(cc, "no-store", "{path} ({status})");
    }
    // The JSON doors without a session (their 401) too.
    let (status, cc) = cache_control(&app, "/api/v1/members", None).await;
    assert_eq!(
        (status, cc.as_str()),
        (StatusCode::UNAUTHORIZED, "no-store")
    );
    // The public overview without a session, the status and the assets keep their own.
    assert_eq!(cache_control(&app, "/", None).await.1, "no-cache");
    let (status, cc) = cache_control(&app, "/api/v1/status", Some(&cookie)).await;
    assert_eq!(status, StatusCode::OK);
    assert_ne!(cc, "no-store");
    let css = hearth::http::assets::Asset::Css.url();
    let (status, cc) = cache_control(&app, css, Some(&cookie)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(cc.contains("immutable"), "{cc}");
}

#[tokio::test(start_paused = true)]
async fn a_thousand_refusals_are_a_few_audit_entries() {
    let (app, _web, cookie, dir) = signed_in("@mallory:test");
    let denied = || {
        let conn = hearth::storage::open_connection(&dir.path().join("hearth.db")).unwrap();
        entries_visible_to(&conn, &Viewer::ServerAdmin, 100_000, None)
            .unwrap()
            .into_iter()
            .filter(|e| e.action == Action::Denied)
            .collect::<Vec<_>>()
    };
    for i in 0..1000 {
        let (status, _) =
            cache_control(&app, "/api/v1/members?user=@alice:test", Some(&cookie)).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "request {i}");
    }
    let rows = denied();
    assert_eq!(rows.len(), 1, "one entry for the window");
    assert_eq!(rows[0].subject.as_deref(), Some("@alice:test"));
    // Ten minutes on, the next refusal is written with the count of those folded before it.
    tokio::time::advance(hearth::http::member_api::DENIAL_WINDOW).await;
    let (status, _) = cache_control(&app, "/api/v1/members?user=@alice:test", Some(&cookie)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let rows = denied();
    assert_eq!(rows.len(), 2);
    let newest = rows
        .iter()
        .find(|e| e.detail.get("folded").is_some())
        .expect("a count");
    assert_eq!(newest.detail["folded"], 999);
}

/// The unit bounds the supervisor's memory and tasks (a leak or a flood cannot take the Pi).
#[test]
fn the_unit_bounds_memory_and_tasks() {
    let unit = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../overlays/etc/systemd/system/hearth-supervisor.service"),
    )
    .unwrap();
    let value = |key: &str| {
        unit.lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")))
            .unwrap_or_else(|| panic!("{key}= is not set"))
            .trim()
            .to_string()
    };
    let mem = value("MemoryMax");
    let mb: u64 = mem
        .strip_suffix('M')
        .expect("MemoryMax in M")
        .parse()
        .unwrap();
    assert!(
        (64..=256).contains(&mb),
        "MemoryMax={mem}: 5 to 20 times the 12 MB it uses, under a quarter of a 1 GB Pi"
    );
    let tasks: u64 = value("TasksMax").parse().unwrap();
    assert!((64..=512).contains(&tasks), "TasksMax={tasks}");
}
