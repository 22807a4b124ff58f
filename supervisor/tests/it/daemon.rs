//! The daemon as a process: it serves live power, writes batches, survives `kill -9` with at most
//! the unflushed batch lost, and writes everything on SIGTERM.

use hearth::storage::Storage;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub(crate) struct Daemon {
    child: Child,
    pub(crate) port: u16,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn write_config(dir: &Path, db: &Path, port: u16, flush_s: u64) -> PathBuf {
    let cfg = dir.join("supervisor.toml");
    std::fs::write(
        &cfg,
        format!(
            "[power]\nbackend = \"simulated\"\n\n[storage]\npath = \"{}\"\nflush_interval_s = {flush_s}\n\n[http]\nlisten = \"127.0.0.1:{port}\"\n\n[log]\nlevel = \"warn\"\n\n[health]\nbackend = \"none\"\n\n[led]\nbackend = \"sysfs\"\nsysfs_path = \"/nonexistent/leds/ACT\"\n",
            db.display()
        ),
    )
    .unwrap();
    cfg
}

pub(crate) fn start(cfg: &Path, port: u16) -> Daemon {
    let child = Command::new(env!("CARGO_BIN_EXE_hearth-supervisor"))
        .args(["run", "--config", cfg.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start the daemon");
    Daemon { child, port }
}

/// A plain HTTP/1.1 GET; returns (status, body).
pub(crate) fn get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    let (head, body) = buf.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, body.to_string()))
}

pub(crate) fn status(port: u16) -> Option<serde_json::Value> {
    let (code, body) = get(port, "/api/v1/status")?;
    (code == 200)
        .then(|| serde_json::from_str(&body).ok())
        .flatten()
}

pub(crate) fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let t0 = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(t0.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn metric(port: u16, name: &str) -> Option<f64> {
    let (_, body) = get(port, "/metrics")?;
    body.lines()
        .find(|l| l.starts_with(name) && l.as_bytes().get(name.len()) == Some(&b' '))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
}

/// A board without the INA219 (its I2C bus not there): the page says "absent", and the LED
/// shows the server's health (steady), not the double blink of a failing sensor.
#[test]
fn an_absent_sensor_is_explained_not_blinked() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let cfg = write_config(dir.path(), &dir.path().join("hearth.db"), port, 300);
    let text = std::fs::read_to_string(&cfg).unwrap().replace(
        "backend = \"simulated\"",
        "backend = \"ina219\"\ni2c_bus = 251",
    );
    std::fs::write(&cfg, text).unwrap();
    let d = start(&cfg, port);
    let s = wait_for("the sensor's state", Duration::from_secs(20), || {
        status(d.port).filter(|s| s["power"]["sensor"] == "absent" && s["led"] == "steady")
    });
    assert_eq!(s["power"]["sensor"], "absent");
    // Still steady a few LED ticks later.
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(status(d.port).unwrap()["led"], "steady");
}

#[test]
fn serves_live_simulated_power_and_energy() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let cfg = write_config(dir.path(), &dir.path().join("hearth.db"), port, 300);
    let d = start(&cfg, port);
    let s = wait_for("a power reading", Duration::from_secs(20), || {
        status(d.port).filter(|s| s["power"]["watts"].is_number())
    });
    assert_eq!(s["power"]["sensor"], "simulated");
    let w = s["power"]["watts"].as_f64().unwrap();
    assert!((2.5..7.0).contains(&w), "a Pi 4 draws 2.7–6.4 W, got {w}");
    let v = s["power"]["volts"].as_f64().unwrap();
    assert!((4.8..5.2).contains(&v), "{v}");
    assert_eq!(s["health"]["state"], "unknown");
    assert!(s["version"].is_string());
    // A configured LED this machine does not have: reported absent, the daemon carries on.
    assert_eq!(s["led_device"], "absent");
    assert!(s["energy"]["today_wh"].as_f64().unwrap() >= 0.0);
    // No per-member data on this unauthenticated route: only these top-level keys.
    let mut keys: Vec<_> = s.as_object().unwrap().keys().cloned().collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "device",
            "energy",
            "health",
            "led",
            "led_device",
            "name",
            "power",
            "version"
        ]
    );
    // The server's name and its reachability: nothing per member; no name file here.
    assert!(s["name"].is_null());
    assert!(s["device"]["disk_free_bytes"].is_number() || s["device"]["disk_free_bytes"].is_null());
    // Energy grows.
    let e1 = wait_for("energy", Duration::from_secs(10), || {
        metric(d.port, "hearth_energy_wh_total").filter(|e| *e > 0.0)
    });
    std::thread::sleep(Duration::from_millis(1500));
    let e2 = metric(d.port, "hearth_energy_wh_total").unwrap();
    assert!(e2 > e1, "{e2} > {e1}");
    assert_eq!(metric(d.port, "hearth_sensor_up"), Some(1.0));
}

#[test]
fn kill_9_loses_at_most_the_unflushed_batch_and_sigterm_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("hearth.db");
    let port = free_port();
    let flush_s = 1;
    let cfg = write_config(dir.path(), &db, port, flush_s);
    let mut d = start(&cfg, port);
    wait_for("energy", Duration::from_secs(20), || {
        metric(d.port, "hearth_energy_wh_total").filter(|e| *e > 0.0)
    });
    std::thread::sleep(Duration::from_millis(3500));
    let live = metric(d.port, "hearth_energy_wh_total").unwrap();
    d.child.kill().unwrap(); // SIGKILL
    d.child.wait().unwrap();

    let stored = {
        let s = Storage::open(&db).expect("the database opens cleanly after kill -9");
        assert_eq!(s.integrity_check().unwrap(), "ok");
        s.sums(0, 0).unwrap().lifetime_wh
    };
    assert!(stored > 0.0, "batches were written before the kill");
    // The bound: at most one flush interval (plus the time between our last read and the kill)
    // at the simulated board's maximum power.
    let bound_wh = 7.0 * (flush_s as f64 + 1.0) / 3600.0;
    assert!(stored <= live + 1e-9, "stored {stored} ≤ live {live}");
    assert!(
        live - stored <= bound_wh,
        "lost {} Wh > bound {bound_wh} Wh",
        live - stored
    );

    // Restart on the same database: it continues from what was stored.
    let port2 = free_port();
    let cfg2 = write_config(dir.path(), &db, port2, 300);
    let mut d2 = start(&cfg2, port2);
    let restarted = wait_for("energy after restart", Duration::from_secs(20), || {
        metric(d2.port, "hearth_energy_wh_total").filter(|e| *e > stored)
    });
    assert!(restarted >= stored);
    std::thread::sleep(Duration::from_millis(1500));
    let before_term = metric(d2.port, "hearth_energy_wh_total").unwrap();
    // SIGTERM: graceful, the last batch (five minutes' worth by config) is written.
    let pid = d2.child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let code = d2.child.wait().unwrap();
    assert!(code.success(), "clean exit on SIGTERM: {code:?}");
    let s = Storage::open(&db).unwrap();
    let after = s.sums(0, 0).unwrap().lifetime_wh;
    assert!(
        after >= before_term - 1e-9,
        "everything written on SIGTERM: {after} ≥ {before_term}"
    );
}

#[test]
fn tells_systemd_ready_feeds_the_watchdog_and_says_stopping() {
    use std::os::unix::net::UnixDatagram;
    let dir = tempfile::tempdir().unwrap();
    let sock_path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let port = free_port();
    let cfg = write_config(dir.path(), &dir.path().join("hearth.db"), port, 300);
    // In a guard, so a failed assertion does not leave the daemon running.
    let mut d = Daemon {
        child: Command::new(env!("CARGO_BIN_EXE_hearth-supervisor"))
            .args(["run", "--config", cfg.to_str().unwrap()])
            .env("NOTIFY_SOCKET", &sock_path)
            .env("WATCHDOG_USEC", "900000")
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
        port,
    };
    let recv = || {
        let mut buf = [0u8; 512];
        let n = sock.recv(&mut buf).expect("a notification in time");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    // READY=1 comes once the daemon serves; the watchdog may already have been fed before it.
    let mut ready = false;
    for _ in 0..20 {
        if recv().contains("READY=1") {
            ready = true;
            break;
        }
    }
    assert!(ready, "READY=1 was sent");
    // A 0.9 s watchdog is fed every 0.3 s while the sampling loop runs.
    let t0 = Instant::now();
    let mut feeds = 0;
    while feeds < 5 {
        if recv().contains("WATCHDOG=1") {
            feeds += 1;
        }
    }
    assert!(
        t0.elapsed() < Duration::from_secs(5),
        "fed often enough: {:?}",
        t0.elapsed()
    );
    assert!(Command::new("kill")
        .args(["-TERM", &d.child.id().to_string()])
        .status()
        .unwrap()
        .success());
    let mut stopping = false;
    for _ in 0..20 {
        if recv().contains("STOPPING=1") {
            stopping = true;
            break;
        }
    }
    assert!(stopping);
    assert!(d.child.wait().unwrap().success());
}

/// The daemon in this process, on a listener the test bound (no port race), on the runtime the
/// binary uses. Its stop is bounded even with a client that never finishes its request and the
/// database held by another process when the last batch is due, and that batch still lands.
#[test]
fn a_daemon_on_a_given_listener_stops_within_its_bounds_and_writes_its_last_batch() {
    use hearth::app::{Daemon, FLUSH_BOUND, SAMPLER_BOUND, TASKS_MARGIN};
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("hearth.db");
    // An hour between flushes: everything measured here is in the last batch.
    let cfg = write_config(dir.path(), &db, 0, 3600);
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("[http]\n", "[http]\nshutdown_grace_s = 1\n");
    std::fs::write(&cfg, text).unwrap();
    let config = hearth::config::Config::load(&cfg).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let daemon = rt.block_on(Daemon::start(config, listener)).unwrap();
    let port = daemon.local_addr().port();
    let live = wait_for("energy", Duration::from_secs(20), || {
        metric(port, "hearth_energy_wh_total").filter(|e| *e > 0.0)
    });
    assert_eq!(
        Storage::open(&db).unwrap().sums(0, 0).unwrap().lifetime_wh,
        0.0,
        "nothing flushed yet"
    );

    // A client that sends half a request head and waits.
    let mut slow = TcpStream::connect(("127.0.0.1", port)).unwrap();
    slow.write_all(b"GET /api/v1/status HTTP/1.1\r\nHost: loc")
        .unwrap();
    // Another process holds the database's write lock for 2 s from the stop on: the last
    // flush waits for it (SQLite's busy timeout) rather than giving up.
    let (locked_tx, locked_rx) = std::sync::mpsc::channel();
    let holder = std::thread::spawn({
        let db = db.clone();
        move || {
            let conn = rusqlite::Connection::open(&db).unwrap();
            conn.execute_batch("BEGIN IMMEDIATE").unwrap();
            locked_tx.send(()).unwrap();
            std::thread::sleep(Duration::from_secs(2));
            conn.execute_batch("COMMIT").unwrap();
        }
    });
    locked_rx.recv().unwrap();

    let bound = Duration::from_secs(1) + TASKS_MARGIN + SAMPLER_BOUND + FLUSH_BOUND;
    let t0 = Instant::now();
    let stopped = rt
        .block_on(async { tokio::time::timeout(bound * 2, daemon.shutdown()).await })
        .expect("the stop is bounded");
    let took = t0.elapsed();
    holder.join().unwrap();
    assert!(stopped.clean(), "{stopped:?} after {took:?}");
    assert!(
        TcpStream::connect(("127.0.0.1", port)).is_err(),
        "the listener is closed"
    );
    // The half-sent request was dropped, not answered.
    slow.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut rest = Vec::new();
    let _ = slow.read_to_end(&mut rest);
    assert!(rest.is_empty(), "{:?}", String::from_utf8_lossy(&rest));
    let stored = Storage::open(&db).unwrap().sums(0, 0).unwrap().lifetime_wh;
    assert!(
        stored >= live,
        "the last batch is stored: {stored} ≥ {live}"
    );
    drop(rt);
}
