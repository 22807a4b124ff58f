//! `make bench`: one `name value unit` line per figure.
//!
//! - `replay_error_pct`: worst |measured − true| / true over the shipped traces (bursty hour,
//!   aliasing square wave, slow steps), default settings. `replay_error_pct_square_droop` is the
//!   INA219's physical limit (voltage and current correlated inside one window), reported apart.
//! - `replay_hour_ms`: wall time to replay the shipped hour.
//! - `supervisor_cpu_pct`, `supervisor_rss_mb`: the release daemon with the simulated sensor at
//!   default settings for `BENCH_SECONDS` (default 65 s), from /proc/PID/stat and /proc/PID/status.
//! - `db_write_bytes_per_day`: a second daemon flushing every 10 s; bytes written (/proc/PID/io
//!   `write_bytes`) per flush × the flushes a day has at the default interval (300 s).
//! - `audit_append_per_s`: audit entries appended per second, each in its own transaction, to a
//!   database opened as the daemon opens it (WAL, `synchronous=NORMAL`).
//! - `audit_verify_10k_ms`: wall time of `audit verify` (open read-only, check the chain) over
//!   10 000 entries.

use hearth::config::Config;
use hearth::power::trace::Trace;
use hearth::replay::replay;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn main() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let traces = root.join("testdata/traces");
    let mut worst: f64 = 0.0;
    for name in [
        "bursty_hour.csv",
        "square_near_fs.csv",
        "steps_10min.csv",
        "square_droop.csv",
    ] {
        let trace = match Trace::from_path(&traces.join(name)) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("hearth-bench: {e}");
                std::process::exit(1);
            }
        };
        let truth = trace.true_energy_wh();
        let t0 = Instant::now();
        let r = match replay(trace, &Config::defaults()) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("hearth-bench: {name}: {e}");
                std::process::exit(1);
            }
        };
        let ms = t0.elapsed().as_secs_f64() * 1000.0;
        let err = (r.energy_wh - truth).abs() / truth * 100.0;
        let stem = name.trim_end_matches(".csv");
        println!("replay_error_pct_{stem} {err:.4} %");
        if name != "square_droop.csv" {
            worst = worst.max(err);
        }
        if name == "bursty_hour.csv" {
            println!("replay_hour_ms {ms:.0} ms");
        }
    }
    println!("replay_error_pct {worst:.4} %");

    audit_bench();

    let secs: u64 = std::env::var("BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(65);
    let bin = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join("hearth-supervisor")))
        .filter(|p| p.exists())
        .unwrap_or_else(|| root.join("../target/release/hearth-supervisor"));
    let dir = std::env::temp_dir().join(format!("hearth-bench-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let mut cpu = start(&bin, &dir, "cpu", 300);
    let mut io = start(&bin, &dir, "io", 10);
    // Let both settle (first allocations, database creation), then measure.
    std::thread::sleep(Duration::from_secs(3));
    let (c0, w0, t0) = (cpu_ticks(cpu.id()), write_bytes(io.id()), Instant::now());
    std::thread::sleep(Duration::from_secs(secs));
    let (c1, w1, elapsed) = (
        cpu_ticks(cpu.id()),
        write_bytes(io.id()),
        t0.elapsed().as_secs_f64(),
    );
    let rss = status_kb(cpu.id(), "VmRSS:");
    let hwm = status_kb(cpu.id(), "VmHWM:");
    stop(&mut cpu);
    stop(&mut io);
    let _ = std::fs::remove_dir_all(&dir);
    let hz = 100.0; // USER_HZ on Linux
    println!(
        "supervisor_cpu_pct {:.3} %",
        (c1 - c0) as f64 / hz / elapsed * 100.0
    );
    println!("supervisor_rss_mb {:.1} MB", rss as f64 / 1024.0);
    println!("supervisor_rss_peak_mb {:.1} MB", hwm as f64 / 1024.0);
    let flushes = elapsed / 10.0;
    let per_flush = (w1 - w0) as f64 / flushes;
    println!("db_write_bytes_per_flush {per_flush:.0} bytes");
    println!(
        "db_write_bytes_per_day {:.0} bytes",
        per_flush * 86_400.0 / 300.0
    );
}

fn audit_bench() {
    use hearth::audit::{append, verify_file, Action, Actor, NewEntry, Verdict};
    let dir = std::env::temp_dir().join(format!("hearth-bench-audit-{}", std::process::id()));
    let db = dir.join("hearth.db");
    let fail = |what: &str, e: &dyn std::fmt::Display| -> ! {
        eprintln!("hearth-bench: audit: {what}: {e}");
        std::process::exit(1);
    };
    let mut conn = hearth::storage::open_connection(&db).unwrap_or_else(|e| fail("open", &e));
    let entry = |i: usize| {
        NewEntry::new(Actor::System, Action::AdminApiCall)
            .about("@alice:example.org")
            .detail("endpoint", "/_synapse/admin/v2/users")
            .detail("n", i)
    };
    let n = 2000;
    let t0 = Instant::now();
    for i in 0..n {
        append(&conn, &entry(i)).unwrap_or_else(|e| fail("append", &e));
    }
    let per_s = n as f64 / t0.elapsed().as_secs_f64();
    let tx = conn.transaction().unwrap_or_else(|e| fail("begin", &e));
    for i in n..10_000 {
        append(&tx, &entry(i)).unwrap_or_else(|e| fail("append", &e));
    }
    tx.commit().unwrap_or_else(|e| fail("commit", &e));
    drop(conn);
    let t0 = Instant::now();
    let verdict = verify_file(&db, None).unwrap_or_else(|e| fail("verify", &e));
    let ms = t0.elapsed().as_secs_f64() * 1000.0;
    let _ = std::fs::remove_dir_all(&dir);
    if !matches!(verdict, Verdict::Intact { count: 10_000, .. }) {
        fail("verify", &format!("{verdict:?}"));
    }
    println!("audit_append_per_s {per_s:.0} entries/s");
    println!("audit_verify_10k_ms {ms:.1} ms");
}

fn start(bin: &Path, dir: &Path, name: &str, flush_s: u64) -> Child {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(18080);
    let cfg = dir.join(format!("{name}.toml"));
    let db = dir.join(format!("{name}.db"));
    let text = format!(
        "[power]\nbackend = \"simulated\"\n[storage]\npath = \"{}\"\nflush_interval_s = {flush_s}\n[http]\nlisten = \"127.0.0.1:{port}\"\n[log]\nlevel = \"warn\"\n[health]\nbackend = \"none\"\n",
        db.display()
    );
    if let Err(e) = std::fs::write(&cfg, text) {
        eprintln!("hearth-bench: {}: {e}", cfg.display());
        std::process::exit(1);
    }
    match Command::new(bin)
        .args(["run", "--config"])
        .arg(&cfg)
        .stdout(Stdio::null())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("hearth-bench: starting {}: {e}", bin.display());
            std::process::exit(1);
        }
    }
}

fn stop(c: &mut Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &c.id().to_string()])
        .status();
    let _ = c.wait();
}

fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the parenthesised command: state is field 3; utime 14, stime 15.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let get = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    get(11) + get(12)
}

fn write_bytes(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/io"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix("write_bytes:")
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0)
}

fn status_kb(pid: u32, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix(key)
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}
