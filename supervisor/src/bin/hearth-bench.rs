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
//! - `accesslog_lines_per_s`: Synapse access-log lines parsed and summed per minute on one core,
//!   over 1.2 M generated lines (members, an admin acting as a user, federation, unauthenticated
//!   requests, older-format lines, other loggers and garbage); best of three passes.
//! - `statement_month_ms`: `compute_statement` for a 31-day month of minutes, 50 members in 10
//!   households, sparse activity and an automatic base load from 7 days of history (median of 5).
//! - `close_month_ms`: the monthly close's statement of a 31-day month from SQLite (power
//!   minutes, request weights of 50 members, CPU shares, 7 days of history before it), as
//!   `accountant::close::statement_of` reads and computes it (median of 3).
//! - `budget_pass_ms`: one pass of the budgets' enforcer (`budget::enforce::read` + `assess`) at
//!   that month's last minute, over the same database with 50 members in 10 households, each
//!   household with an energy and a storage budget and two members with their own; the month
//!   so far's statement is most of it (median of 3). The daemon runs one every two minutes.
//! - `audit_append_per_s`: audit entries appended per second, each in its own transaction, to a
//!   database opened as the daemon opens it (WAL, `synchronous=NORMAL`).
//! - `audit_verify_10k_ms`: wall time of `audit verify` (open read-only, check the chain) over
//!   10 000 entries.
//! - `page_kb`: the status page with everything it loads (style sheet, script, icon), bytes as
//!   served (uncompressed) / 1024, from a release daemon (simulated sensor, health not watched).
//! - `status_p99_ms` (and `status_p50_ms`, `status_rps`): `/api/v1/status` from 64 keep-alive
//!   connections, each sending its next request when the last answered, for 10 s against that
//!   daemon; the load generator (a bare HTTP/1.1 client on tokio) shares the machine's cores
//!   with it, so on a 2-core machine this is mostly queueing behind 64 requests in flight.
//! - `proxy_p99_ms`, `direct_p99_ms`, `proxy_overhead_ratio`, `proxy_rss_idle_mb`,
//!   `proxy_rss_load_mb`, `proxy_rss_mb` (and `proxy_rps`, `direct_rps`): only with
//!   `HEARTH_BENCH_PROXY=https://<name>:<port>` set (a running appliance or system-test
//!   container; see `bench_proxy`): `/_matrix/client/versions` at 64 connections for 10 s
//!   through TLS and the HTTPS proxy, then directly against Synapse, and the proxy's memory.

use hearth::accounting::accesslog::MinuteWeights;
use hearth::accounting::members::{Household, Member, MemberIdx, Members};
use hearth::accounting::model::{compute_statement, MinuteInput, Period, StatementInputs};
use hearth::config::{AccountingConfig, Config, CostPer, FixedCost};
use hearth::power::trace::Trace;
use hearth::replay::replay;
use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_rustls::rustls::pki_types::ServerName;

fn main() {
    bench_accesslog();
    statement_month();
    close_month();
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
    let (mut cpu, _) = start(&bin, &dir, "cpu", 300);
    let (mut io, _) = start(&bin, &dir, "io", 10);
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
    bench_http(&bin, &dir);
    let _ = std::fs::remove_dir_all(&dir);
    bench_proxy();
}

/// A month of a 50-person server: at night a few members' clients sync now and then, in the
/// evening up to a dozen requests a minute; some requests are unauthenticated or the
/// supervisor's own. One member joins mid-month.
fn statement_month() {
    let period = match Period::parse_month("2026-12") {
        Ok(p) => p,
        Err(e) => {
            eprintln!("hearth-bench: {e}");
            std::process::exit(1);
        }
    };
    let start = period.start_s();
    let households = (0..10)
        .map(|h| Household {
            id: format!("h{h}"),
            name: format!("Household {h}"),
        })
        .collect();
    let people = (0..50)
        .map(|n| Member {
            user_id: format!("@member{n:02}:example.org"),
            household: format!("h{}", n % 10),
            joined_s: (n == 49).then_some(start + 14 * 86_400 + 3600),
            left_s: None,
        })
        .collect();
    let members = match Members::new(households, people) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("hearth-bench: {e}");
            std::process::exit(1);
        }
    };
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut rand = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed >> 11) as f64 / (1u64 << 53) as f64
    };
    let minutes: Vec<MinuteInput> = (0..period.minutes() as i64)
        .map(|i| {
            let hour = (i / 60) % 24;
            let busy = if (18..23).contains(&hour) {
                12.0
            } else if hour < 7 {
                1.0
            } else {
                5.0
            };
            let mut weights: Vec<(MemberIdx, f64)> = Vec::new();
            let mut total = 0.0;
            for _ in 0..(rand() * busy) as usize {
                let w = 0.002 + 0.05 * rand() * rand();
                total += w;
                if rand() < 0.85 {
                    let m = MemberIdx((rand() * 50.0) as u32);
                    match weights.iter_mut().find(|(k, _)| *k == m) {
                        Some((_, a)) => *a += w,
                        None => weights.push((m, w)),
                    }
                }
            }
            let watts = 2.7 + 0.4 * total + 0.2 * rand();
            MinuteInput {
                minute_s: start + 60 * i,
                energy_wh: watts / 60.0,
                estimated_wh: 0.0,
                matrix_share: Some(0.6 + 0.4 * rand()),
                total_weight: total,
                weights,
            }
        })
        .collect();
    let history: Vec<f64> = (0..7 * 1440).map(|_| 2.7 + 0.5 * rand()).collect();
    let media: BTreeMap<String, u64> = members
        .members()
        .iter()
        .map(|m| (m.user_id.clone(), (rand() * 4e9) as u64))
        .collect();
    let config = AccountingConfig {
        storage_price_per_gib_month: 0.02,
        fixed_costs: vec![FixedCost {
            name: "domain".into(),
            amount: 12.0,
            per: CostPer::Year,
        }],
        ..AccountingConfig::default()
    };
    let inputs = StatementInputs {
        period: &period,
        members: &members,
        minutes: &minutes,
        history_watts: &history,
        media_bytes: &media,
    };
    let mut times = Vec::new();
    for _ in 0..5 {
        let t0 = Instant::now();
        match compute_statement(&inputs, &config) {
            Ok(s) => std::hint::black_box(s),
            Err(e) => {
                eprintln!("hearth-bench: statement: {e}");
                std::process::exit(1);
            }
        };
        times.push(t0.elapsed().as_secs_f64() * 1000.0);
    }
    times.sort_by(f64::total_cmp);
    println!("statement_month_ms {:.1} ms", times[2]);
}

fn close_month() {
    use hearth::accounting::accesslog::MinuteWeight;
    use hearth::meter::buckets::Minutes;
    use hearth::meter::integrator::Piece;
    use hearth::storage::{AcctBatch, Storage};
    use hearth::units::{Volts, WattHours, Watts};
    let fail = |e: String| -> ! {
        eprintln!("hearth-bench: close_month: {e}");
        std::process::exit(1);
    };
    let period = Period::parse_month("2026-12").unwrap_or_else(|e| fail(e));
    let dir = std::env::temp_dir().join(format!("hearth-bench-close-{}", std::process::id()));
    let mut db = Storage::open(&dir.join("hearth.db")).unwrap_or_else(|e| fail(e.to_string()));
    let names: Vec<std::sync::Arc<str>> = (0..50)
        .map(|n| std::sync::Arc::from(format!("@member{n:02}:example.org")))
        .collect();
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut rand = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed >> 11) as f64 / (1u64 << 53) as f64
    };
    let first = period.start_s() - 7 * 86_400;
    // One batch a day, as the daemon would write many smaller ones.
    let mut t = first;
    while t < period.end_s() {
        let mut power = Minutes::default();
        let mut batch = AcctBatch::default();
        for m in (t..(t + 86_400).min(period.end_s())).step_by(60) {
            let d = Duration::from_secs(60);
            let w = Watts(2.7 + rand());
            power.add(&Piece {
                end_wall_ms: (m + 60) * 1000,
                duration: d,
                energy: w * d,
                estimated: WattHours::ZERO,
                measured: Some((w, Volts(5.0))),
            });
            if m >= period.start_s() {
                let mut by: Vec<(std::sync::Arc<str>, u64)> = Vec::new();
                for _ in 0..(rand() * 6.0) as usize {
                    let n = &names[(rand() * 50.0) as usize];
                    if !by.iter().any(|(k, _)| k == n) {
                        by.push((n.clone(), 1 + (rand() * 80.0) as u64));
                    }
                }
                by.sort_unstable();
                let unauth = (rand() * 10.0) as u64;
                batch.weights.push(MinuteWeight {
                    minute_s: m,
                    total_ms: by.iter().map(|(_, w)| w).sum::<u64>() + unauth,
                    requests: by.len() as u64 + 1,
                    unauthenticated_ms: unauth,
                    by_requester: by,
                });
                batch.shares.push((m, 0.5 + 0.5 * rand()));
            }
        }
        db.write_batch_with(&power, &[], &batch)
            .unwrap_or_else(|e| fail(e.to_string()));
        t += 86_400;
    }
    let households = (0..10)
        .map(|h| Household {
            id: format!("h{h}"),
            name: format!("Household {h}"),
        })
        .collect();
    let people = names
        .iter()
        .enumerate()
        .map(|(n, id)| Member {
            user_id: id.to_string(),
            household: format!("h{}", n % 10),
            joined_s: None,
            left_s: None,
        })
        .collect();
    let members = Members::new(households, people).unwrap_or_else(|e| fail(e));
    let config = AccountingConfig::default();
    let mut times = Vec::new();
    for _ in 0..3 {
        let t0 = Instant::now();
        match hearth::accountant::close::statement_of(&db, &period, &members, &config) {
            Ok(s) => std::hint::black_box(s),
            Err(e) => fail(e.to_string()),
        };
        times.push(t0.elapsed().as_secs_f64() * 1000.0);
    }
    times.sort_by(f64::total_cmp);
    println!("close_month_ms {:.1} ms", times[1]);
    budget_pass(&mut db, &names, &members, &period).unwrap_or_else(|e| fail(e));
    drop(db);
    let _ = std::fs::remove_dir_all(&dir);
}

/// One pass of the budgets' enforcer on the last minute of the month `close_month` filled: the
/// directory's 50 members in 10 households, each household with an energy and a storage budget
/// and two members with their own (`budget::enforce::read`, then `assess`). The daemon runs
/// one every two minutes, and after each change on the page; without budgets it computes nothing.
fn budget_pass(
    db: &mut hearth::storage::Storage,
    names: &[std::sync::Arc<str>],
    members: &Members,
    period: &Period,
) -> Result<(), String> {
    use hearth::accounting::directory::{self, ChangedBy};
    use hearth::audit::{Action, Actor, NewEntry};
    use hearth::budget::{self, assess, Budget, Scope};
    let at = chrono::DateTime::from_timestamp(period.start_s(), 0).unwrap_or_default();
    let by = ChangedBy {
        actor: Actor::System,
        os_uid: None,
    };
    for h in 0..10 {
        directory::add_household(db.connection_mut(), &format!("h{h}"), "H", &by, at)
            .map_err(|e| e.to_string())?;
    }
    for (n, id) in names.iter().enumerate() {
        directory::admit(
            db.connection(),
            id,
            Some(&format!("h{}", n % 10)),
            "@admin:example.org",
            at,
        )
        .map_err(|e| e.to_string())?;
    }
    let entry = || NewEntry::new(Actor::System, Action::LimitChange);
    for h in 0..10 {
        let b = Budget {
            energy_wh: Some(2000.0),
            media_stored_bytes: Some(10 << 30),
            ..Budget::default()
        };
        budget::set(
            db.connection_mut(),
            &Scope::Household(format!("h{h}")),
            &b,
            entry(),
        )
        .map_err(|e| e.to_string())?;
    }
    for id in &names[..2] {
        let b = Budget {
            energy_wh: Some(300.0),
            ..Budget::default()
        };
        budget::set(
            db.connection_mut(),
            &Scope::Member(id.to_string()),
            &b,
            entry(),
        )
        .map_err(|e| e.to_string())?;
    }
    let config = AccountingConfig::default();
    let now_s = period.end_s() - 60;
    let mut times = Vec::new();
    for _ in 0..3 {
        let t0 = Instant::now();
        let snap = hearth::budget::enforce::read(db, members, &config, false, now_s)
            .map_err(|e| e.to_string())?;
        let limits = assess::assess(&assess::Inputs {
            members: &snap.uses,
            budgets: &snap.budgets,
            money_counts: snap.money_counts,
            prepaid: &snap.prepaid,
        });
        std::hint::black_box(limits);
        times.push(t0.elapsed().as_secs_f64() * 1000.0);
    }
    times.sort_by(f64::total_cmp);
    println!("budget_pass_ms {:.1} ms", times[1]);
    Ok(())
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

/// Start a release daemon on a free port: `(process, port)`.
fn start(bin: &Path, dir: &Path, name: &str, flush_s: u64) -> (Child, u16) {
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
        Ok(c) => (c, port),
        Err(e) => {
            eprintln!("hearth-bench: starting {}: {e}", bin.display());
            std::process::exit(1);
        }
    }
}

/// `page_kb` and `status_p99_ms` against a daemon of their own.
fn bench_http(bin: &Path, dir: &Path) {
    let fail = |what: &str, e: &dyn std::fmt::Display| -> ! {
        eprintln!("hearth-bench: http: {what}: {e}");
        std::process::exit(1);
    };
    let (mut daemon, port) = start(bin, dir, "http", 300);
    // One thread drives all 64 connections (epoll), leaving the other core(s) to the daemon.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| fail("tokio runtime", &e));
    let base = format!("http://127.0.0.1:{port}");
    let result = rt.block_on(async {
        let client = hearth::http_client::builder()
            .build()
            .expect("an HTTP client");
        wait_ready(&client, &base).await?;
        let kb = page_bytes(&client, &base).await? as f64 / 1024.0;
        let lat = status_load(port, CONNECTIONS, Duration::from_secs(10)).await?;
        Ok::<_, String>((kb, lat))
    });
    stop(&mut daemon);
    let (kb, (mut ms, elapsed)) = result.unwrap_or_else(|e| fail("load", &e));
    ms.sort_by(f64::total_cmp);
    let pct = |p: f64| ms[((ms.len() as f64 * p).ceil() as usize).clamp(1, ms.len()) - 1];
    println!("page_kb {kb:.1} KB");
    println!("status_p50_ms {:.2} ms", pct(0.50));
    println!("status_p99_ms {:.2} ms", pct(0.99));
    println!("status_rps {:.0} requests/s", ms.len() as f64 / elapsed);
}

/// Concurrent connections for `status_p99_ms`.
const CONNECTIONS: usize = 64;

async fn wait_ready(client: &reqwest::Client, base: &str) -> Result<(), String> {
    let t0 = Instant::now();
    loop {
        let ready = match client.get(format!("{base}/api/v1/status")).send().await {
            Ok(r) => r
                .json::<serde_json::Value>()
                .await
                .is_ok_and(|v| v["power"]["watts"].is_number()),
            Err(_) => false,
        };
        if ready {
            return Ok(());
        }
        if t0.elapsed() > Duration::from_secs(30) {
            return Err("the daemon served no power reading within 30 s".into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The page and every `/assets/…` URL it names, in bytes.
async fn page_bytes(client: &reqwest::Client, base: &str) -> Result<usize, String> {
    let get = |url: String| async move {
        let r = client
            .get(&url)
            .header("accept-language", "de-DE,de;q=0.9")
            .send()
            .await
            .map_err(|e| format!("{url}: {e}"))?;
        if !r.status().is_success() {
            return Err(format!("{url}: {}", r.status()));
        }
        r.bytes()
            .await
            .map(|b| b.to_vec())
            .map_err(|e| format!("{url}: {e}"))
    };
    let page = get(format!("{base}/")).await?;
    let html = String::from_utf8_lossy(&page);
    let mut assets: Vec<&str> = html
        .match_indices("\"/assets/")
        .filter_map(|(i, _)| html[i + 1..].split('"').next())
        .collect();
    assets.sort_unstable();
    assets.dedup();
    if assets.is_empty() {
        return Err("the page links no assets".into());
    }
    let mut total = page.len();
    for a in assets {
        total += get(format!("{base}{a}")).await?.len();
    }
    Ok(total)
}

/// Where the load generator connects: plain TCP, or TLS (verified, with SNI) over TCP.
enum Target {
    Plain(SocketAddr),
    Tls {
        addr: SocketAddr,
        name: ServerName<'static>,
        connector: tokio_rustls::TlsConnector,
    },
}

/// A byte stream the load generator speaks HTTP/1.1 over.
trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Io for T {}

impl Target {
    async fn connect(&self) -> Result<Box<dyn Io>, String> {
        let addr = match self {
            Target::Plain(a) | Target::Tls { addr: a, .. } => *a,
        };
        let tcp = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect {addr}: {e}"))?;
        let _ = tcp.set_nodelay(true);
        match self {
            Target::Plain(_) => Ok(Box::new(tcp)),
            Target::Tls {
                name, connector, ..
            } => {
                let tls = connector
                    .connect(name.clone(), tcp)
                    .await
                    .map_err(|e| format!("TLS with {} at {addr}: {e}", name.to_str()))?;
                Ok(Box::new(tls))
            }
        }
    }
}

/// `status_p99_ms`'s load: `/api/v1/status` on the daemon's port.
async fn status_load(
    port: u16,
    connections: usize,
    run: Duration,
) -> Result<(Vec<f64>, f64), String> {
    let target = Target::Plain(SocketAddr::from(([127, 0, 0, 1], port)));
    keepalive_load(target, "/api/v1/status", "127.0.0.1", connections, run).await
}

/// `connections` keep-alive connections, each sending its next GET when the last answered, for
/// `run`: every latency in ms, and the elapsed time. A bare HTTP/1.1 client over tokio's TCP
/// (or rustls over it) — a request line, headers until the blank line, a `content-length` or
/// chunked body — so the generator takes as little as possible of the cores it shares with the
/// server. Connection set-up (TCP, TLS handshake) is not part of any latency; a server that
/// closes a connection (`connection: close`) gets a new one, also untimed.
async fn keepalive_load(
    target: Target,
    path: &str,
    host: &str,
    connections: usize,
    run: Duration,
) -> Result<(Vec<f64>, f64), String> {
    use tokio::io::{AsyncWriteExt, BufReader};
    let request: Arc<[u8]> =
        format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: hearth-bench\r\n\r\n")
            .into_bytes()
            .into();
    let target = Arc::new(target);
    let t0 = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..connections {
        let (target, request) = (target.clone(), request.clone());
        tasks.spawn(async move {
            let mut conn = BufReader::new(target.connect().await?);
            let mut ms = Vec::new();
            let mut scratch = (String::new(), Vec::new());
            while t0.elapsed() < run {
                let t = Instant::now();
                conn.get_mut()
                    .write_all(&request)
                    .await
                    .map_err(|e| format!("write: {e}"))?;
                let keep_alive = read_response(&mut conn, &mut scratch).await?;
                ms.push(t.elapsed().as_secs_f64() * 1000.0);
                if !keep_alive {
                    conn = BufReader::new(target.connect().await?);
                }
            }
            Ok::<_, String>(ms)
        });
    }
    let mut all = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        all.extend(joined.map_err(|e| e.to_string())??);
    }
    if all.is_empty() {
        return Err("no request answered".into());
    }
    Ok((all, t0.elapsed().as_secs_f64()))
}

/// One line into `line` (cleared first); the server closing the connection is an error.
async fn read_line(
    conn: &mut tokio::io::BufReader<Box<dyn Io>>,
    line: &mut String,
) -> Result<(), String> {
    use tokio::io::AsyncBufReadExt;
    line.clear();
    match conn.read_line(line).await {
        Ok(0) => Err("the server closed the connection".to_string()),
        Ok(_) => Ok(()),
        Err(e) => Err(format!("read: {e}")),
    }
}

/// Reads one `200` response (status line, headers, body by `content-length` or chunked);
/// whether the server keeps the connection open.
async fn read_response(
    conn: &mut tokio::io::BufReader<Box<dyn Io>>,
    (line, body): &mut (String, Vec<u8>),
) -> Result<bool, String> {
    use tokio::io::AsyncReadExt;
    read_line(conn, line).await?;
    if !line.starts_with("HTTP/1.1 200") {
        return Err(format!("status: {}", line.trim_end()));
    }
    let (mut length, mut chunked, mut keep_alive) = (None, false, true);
    loop {
        read_line(conn, line).await?;
        if line == "\r\n" {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            let v = v.trim();
            if k.eq_ignore_ascii_case("content-length") {
                length = v.parse::<usize>().ok();
            } else if k.eq_ignore_ascii_case("transfer-encoding") {
                chunked = v.eq_ignore_ascii_case("chunked");
            } else if k.eq_ignore_ascii_case("connection") {
                keep_alive = !v.eq_ignore_ascii_case("close");
            }
        }
    }
    if !chunked {
        let n = length.ok_or("a response without content-length")?;
        body.resize(n, 0);
        conn.read_exact(body)
            .await
            .map_err(|e| format!("body: {e}"))?;
        return Ok(keep_alive);
    }
    loop {
        read_line(conn, line).await?;
        let size = line.trim_end().split(';').next().unwrap_or("");
        let n = usize::from_str_radix(size.trim(), 16)
            .map_err(|_| format!("bad chunk size line {:?}", line.trim_end()))?;
        if n == 0 {
            break;
        }
        body.resize(n + 2, 0);
        conn.read_exact(body)
            .await
            .map_err(|e| format!("chunk: {e}"))?;
    }
    // Trailers, up to the blank line.
    loop {
        read_line(conn, line).await?;
        if line == "\r\n" {
            return Ok(keep_alive);
        }
    }
}

/// `proxy_p99_ms`, `direct_p99_ms`, `proxy_overhead_ratio` and `proxy_rss_*`, only when
/// `HEARTH_BENCH_PROXY=https://<name>[:<port>]` is set (a running appliance or system-test
/// container; otherwise nothing is printed):
/// - `GET /_matrix/client/versions` from 64 keep-alive connections for 10 s through TLS and the
///   proxy (`<name>` resolved to 127.0.0.1 here, SNI and `Host` the name, the certificate
///   verified against `HEARTH_BENCH_PROXY_CA`, a PEM file), then the same directly against
///   Synapse at `HEARTH_BENCH_DIRECT` (default `http://127.0.0.1:8008`), one run after the
///   other; the ratio is proxy p99 / direct p99.
/// - RSS summed over the processes whose command name (`/proc/PID/comm`) is
///   `HEARTH_BENCH_PROXY_COMM` (default `nginx`) and that hold the socket listening on the
///   proxy's port (so another nginx on the machine does not count; all of that name when none
///   can be told apart, with a note on stderr): idle just before the proxied load, and the
///   highest sum sampled every 250 ms under it (`proxy_rss_mb` is the latter). Summed RSS
///   counts pages the master and its workers share once per process, so it overstates the
///   memory they really take; it is what `ps` shows.
fn bench_proxy() {
    let Ok(proxy) = std::env::var("HEARTH_BENCH_PROXY") else {
        return;
    };
    let fail = |e: String| -> ! {
        eprintln!("hearth-bench: proxy: {e}");
        std::process::exit(1);
    };
    let (name, port) = parse_url(&proxy, "https", 443).unwrap_or_else(|e| fail(e));
    let ca = std::env::var("HEARTH_BENCH_PROXY_CA").unwrap_or_else(|_| {
        fail("HEARTH_BENCH_PROXY_CA (the PEM of the CA the proxy's certificate chains to) is not set".into())
    });
    let direct =
        std::env::var("HEARTH_BENCH_DIRECT").unwrap_or_else(|_| "http://127.0.0.1:8008".into());
    let (direct_host, direct_port) = parse_url(&direct, "http", 80).unwrap_or_else(|e| fail(e));
    let direct_ip: std::net::IpAddr = direct_host.parse().unwrap_or_else(|_| {
        fail(format!(
            "HEARTH_BENCH_DIRECT={direct}: the host must be an IP address (Synapse on loopback)"
        ))
    });
    let comm = std::env::var("HEARTH_BENCH_PROXY_COMM").unwrap_or_else(|_| "nginx".into());
    let proxy_target = tls_target(&name, port, &ca).unwrap_or_else(|e| fail(e));
    let direct_target = Target::Plain(SocketAddr::new(direct_ip, direct_port));
    let run = Duration::from_secs(10);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| fail(format!("tokio runtime: {e}")));
    const PATH: &str = "/_matrix/client/versions";
    let direct_authority = format!("{direct_host}:{direct_port}");
    let result = rt.block_on(async {
        // One request each first: a wrong name, CA or port fails here, with its reason.
        for (target, host, what) in [
            (&proxy_target, name.as_str(), &proxy),
            (&direct_target, direct_authority.as_str(), &direct),
        ] {
            let mut conn = tokio::io::BufReader::new(target.connect().await?);
            let request = format!("GET {PATH} HTTP/1.1\r\nHost: {host}\r\n\r\n");
            tokio::io::AsyncWriteExt::write_all(conn.get_mut(), request.as_bytes())
                .await
                .map_err(|e| format!("{what}: write: {e}"))?;
            read_response(&mut conn, &mut (String::new(), Vec::new()))
                .await
                .map_err(|e| format!("{what}{PATH}: {e}"))?;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        let (pids, exact) = proxy_pids(&comm, port);
        let idle = rss_kb(&pids);
        let sampler = async {
            let mut peak = None::<u64>;
            let t0 = Instant::now();
            while t0.elapsed() < run {
                tokio::time::sleep(Duration::from_millis(250)).await;
                if let Some(kb) = rss_kb(&pids) {
                    peak = Some(peak.map_or(kb, |p| p.max(kb)));
                }
            }
            peak
        };
        let (proxied, load) = tokio::join!(
            keepalive_load(proxy_target, PATH, &name, CONNECTIONS, run),
            sampler
        );
        let proxied = proxied.map_err(|e| format!("{proxy}{PATH}: {e}"))?;
        let direct_lat = keepalive_load(direct_target, PATH, &direct_authority, CONNECTIONS, run)
            .await
            .map_err(|e| format!("{direct}{PATH}: {e}"))?;
        Ok::<_, String>((proxied, direct_lat, idle, load, pids.len(), exact))
    });
    let ((mut p_ms, p_s), (mut d_ms, d_s), idle, load, n, exact) =
        result.unwrap_or_else(|e| fail(e));
    let (p99, d99) = (p99(&mut p_ms), p99(&mut d_ms));
    println!("proxy_p99_ms {p99:.2} ms");
    println!("direct_p99_ms {d99:.2} ms");
    println!("proxy_overhead_ratio {:.2} x", p99 / d99);
    println!("proxy_rps {:.0} requests/s", p_ms.len() as f64 / p_s);
    println!("direct_rps {:.0} requests/s", d_ms.len() as f64 / d_s);
    match (idle, load) {
        (Some(idle_kb), Some(load_kb)) => {
            println!("proxy_rss_idle_mb {:.1} MB", idle_kb as f64 / 1024.0);
            println!("proxy_rss_load_mb {:.1} MB", load_kb as f64 / 1024.0);
            println!("proxy_rss_mb {:.1} MB", load_kb as f64 / 1024.0);
            if exact {
                eprintln!("hearth-bench: proxy: RSS summed over the {n} processes named {comm} listening on port {port}");
            } else {
                eprintln!("hearth-bench: proxy: RSS summed over all {n} processes named {comm}: none could be seen holding port {port}'s socket");
            }
        }
        _ => eprintln!(
            "hearth-bench: proxy: no process named {comm:?} in /proc (HEARTH_BENCH_PROXY_COMM): no proxy_rss_* figures"
        ),
    }
}

/// p99 of latencies in ms (sorts them), as `bench_http` takes it.
fn p99(ms: &mut [f64]) -> f64 {
    ms.sort_by(f64::total_cmp);
    ms[((ms.len() as f64 * 0.99).ceil() as usize).clamp(1, ms.len()) - 1]
}

/// `scheme://host[:port][/]` → (host, port).
fn parse_url(url: &str, scheme: &str, default_port: u16) -> Result<(String, u16), String> {
    let rest = url
        .strip_prefix(scheme)
        .and_then(|r| r.strip_prefix("://"))
        .ok_or_else(|| format!("{url}: expected {scheme}://HOST[:PORT]"))?;
    let authority = rest.trim_end_matches('/');
    if authority.is_empty() || authority.contains('/') {
        return Err(format!(
            "{url}: expected {scheme}://HOST[:PORT] without a path"
        ));
    }
    let (host, port) = match authority.strip_prefix('[') {
        // [v6]:port or [v6]
        Some(v6) => match v6.split_once(']') {
            Some((h, "")) => (h, None),
            Some((h, p)) => (h, p.strip_prefix(':')),
            None => return Err(format!("{url}: unbalanced '['")),
        },
        None => match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        },
    };
    let port = match port {
        Some(p) => p
            .parse::<u16>()
            .map_err(|_| format!("{url}: bad port {p:?}"))?,
        None => default_port,
    };
    Ok((host.to_string(), port))
}

/// TLS to `name` at 127.0.0.1:`port`: SNI `name`, the chain verified against the CA in `ca_pem`
/// (and nothing else), HTTP/1.1 by ALPN.
fn tls_target(name: &str, port: u16, ca_pem: &str) -> Result<Target, String> {
    use tokio_rustls::rustls;
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    use tokio_rustls::rustls::pki_types::CertificateDer;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca_pem).map_err(|e| format!("{ca_pem}: {e}"))? {
        let cert = cert.map_err(|e| format!("{ca_pem}: {e}"))?;
        roots
            .add(cert)
            .map_err(|e| format!("{ca_pem}: not a usable CA certificate: {e}"))?;
    }
    if roots.is_empty() {
        return Err(format!("{ca_pem}: no certificate in it"));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS configuration: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let server_name = ServerName::try_from(name.to_string())
        .map_err(|e| format!("{name}: not a server name: {e}"))?;
    Ok(Target::Tls {
        addr: SocketAddr::from(([127, 0, 0, 1], port)),
        name: server_name,
        connector: tokio_rustls::TlsConnector::from(Arc::new(config)),
    })
}

/// The proxy's processes: those named `comm` that hold the socket listening on `port` (the
/// master and its workers, not some other nginx on the machine), and whether that narrowing
/// worked; when no such process is found (another user's `/proc/PID/fd` is unreadable without
/// root), every process named `comm`.
fn proxy_pids(comm: &str, port: u16) -> (Vec<u32>, bool) {
    let named: Vec<u32> = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()))
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|c| c.trim_end_matches('\n') == comm)
        })
        .collect();
    let listening = listening_inodes(port);
    let holding: Vec<u32> = named
        .iter()
        .copied()
        .filter(|pid| {
            std::fs::read_dir(format!("/proc/{pid}/fd"))
                .into_iter()
                .flatten()
                .flatten()
                .filter_map(|fd| std::fs::read_link(fd.path()).ok())
                .any(|target| {
                    let t = target.to_string_lossy();
                    t.strip_prefix("socket:[")
                        .and_then(|r| r.strip_suffix(']'))
                        .and_then(|i| i.parse::<u64>().ok())
                        .is_some_and(|i| listening.contains(&i))
                })
        })
        .collect();
    if holding.is_empty() {
        (named, false)
    } else {
        (holding, true)
    }
}

/// Inodes of the TCP sockets listening on `port` (IPv4 and IPv6), from /proc/net/tcp{,6}.
fn listening_inodes(port: u16) -> std::collections::HashSet<u64> {
    let mut inodes = std::collections::HashSet::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = std::fs::read_to_string(table).unwrap_or_default();
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
            let (Some(local), Some(state), Some(inode)) = (f.get(1), f.get(3), f.get(9)) else {
                continue;
            };
            let local_port = local
                .rsplit_once(':')
                .and_then(|(_, p)| u16::from_str_radix(p, 16).ok());
            if *state == "0A" && local_port == Some(port) {
                if let Ok(i) = inode.parse() {
                    inodes.insert(i);
                }
            }
        }
    }
    inodes
}

/// Summed VmRSS (kB) of `pids` that still exist; `None` when none does.
fn rss_kb(pids: &[u32]) -> Option<u64> {
    let alive: Vec<u32> = pids
        .iter()
        .copied()
        .filter(|pid| Path::new(&format!("/proc/{pid}")).exists())
        .collect();
    (!alive.is_empty()).then(|| alive.iter().map(|&pid| status_kb(pid, "VmRSS:")).sum())
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

/// `accesslog_lines_per_s`: parser + per-minute aggregation over an in-memory corpus.
fn bench_accesslog() {
    const LINES: usize = 1_200_000;
    let (corpus, access) = access_corpus(LINES);
    let mut best = f64::INFINITY;
    for _ in 0..3 {
        let t0 = Instant::now();
        let mut weights = MinuteWeights::new();
        for line in corpus.lines() {
            let _ = weights.ingest_line(line);
        }
        let minutes = weights.drain_all();
        let secs = t0.elapsed().as_secs_f64();
        let counts = weights.counts();
        if counts.lines != LINES as u64 || counts.access != access || minutes.is_empty() {
            eprintln!(
                "hearth-bench: access log: {} lines, {} access lines read, {access} expected",
                counts.lines, counts.access
            );
            std::process::exit(1);
        }
        best = best.min(secs);
    }
    println!("accesslog_lines_per_s {:.0} lines/s", LINES as f64 / best);
}

/// A day's worth of a family server's log, deterministic: `(text, access lines in it)`.
fn access_corpus(lines: usize) -> (String, u64) {
    let members = [
        "@alice:example.org",
        "@bob:example.org",
        "@carol:example.org",
        "@dave:example.org",
        "@erika.mueller:example.org",
        "@frank:example.org",
        "@grandma:example.org",
        "@hans-peter:example.org",
    ];
    let servers = ["matrix.org", "mozilla.org", "kde.org", "tchncs.de"];
    let endpoints = [
        (
            "GET",
            "/_matrix/client/v3/sync?timeout=30000&since=s123_456",
        ),
        (
            "PUT",
            "/_matrix/client/v3/rooms/!abc:example.org/send/m.room.message/m1",
        ),
        (
            "GET",
            "/_matrix/client/v3/rooms/!abc:example.org/messages?dir=b",
        ),
        ("POST", "/_matrix/client/v3/keys/query"),
        (
            "GET",
            "/_matrix/media/v3/thumbnail/example.org/AbCd?width=96",
        ),
        ("POST", "/_matrix/client/v3/login"),
    ];
    let agents = [
        "Element/1.11.85 (Linux; Android 14)",
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Element/1.11.90 Chrome/130 Safari/537.36",
        "Synapse/1.149.0",
    ];
    let mut rng: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move |n: u64| {
        // xorshift64*: reproducible without a dependency.
        rng ^= rng >> 12;
        rng ^= rng << 25;
        rng ^= rng >> 27;
        (rng.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 33) % n
    };
    let start = chrono::DateTime::from_timestamp(1_795_651_200, 0).unwrap_or_default();
    let mut text = String::with_capacity(lines * 260);
    let (mut ms, mut access) = (0i64, 0u64);
    for i in 0..lines {
        ms += next(140) as i64;
        let t = start + chrono::Duration::milliseconds(ms);
        let ts = t.format("%Y-%m-%d %H:%M:%S,%3f");
        let kind = next(100);
        if kind < 3 {
            let garbage = [
                format!("{ts} - synapse.app.homeserver - 383 - WARNING - main - Slow start"),
                "Traceback (most recent call last):".to_string(),
                format!("{ts} - synapse.access.http.8008 - 460 - INFO - GET-{i} - 10.0.0.2 - 8008 - {{@alice:exa"),
            ];
            text.push_str(&garbage[next(3) as usize]);
            text.push('\n');
            continue;
        }
        let requester = match kind {
            3..=12 => "None".to_string(),
            13..=22 => servers[next(4) as usize].to_string(),
            23 => format!("@admin:example.org|{}", members[next(8) as usize]),
            _ => members[next(8) as usize].to_string(),
        };
        let (method, uri) = endpoints[next(6) as usize];
        let sec = |ms: u64| format!("{}.{:03}sec", ms / 1000, ms % 1000);
        let (u, s, sched, txn) = (next(40), next(10), next(3), next(30));
        let usage = if kind % 10 == 0 {
            format!(
                "({}, {}) ({}/{}/{})",
                sec(u),
                sec(s),
                sec(sched),
                sec(txn),
                next(8)
            )
        } else {
            format!(
                "ru=({}, {}) db=({}/{}/{})",
                sec(u),
                sec(s),
                sec(sched),
                sec(txn),
                next(8)
            )
        };
        text.push_str(&format!(
            "{ts} - synapse.access.http.8008 - 460 - INFO - {method}-{i} - 192.0.2.{} - 8008 - {{{requester}}} Processed request: {}/0.001sec {usage} {}B 200 \"{method} {uri} HTTP/1.1\" \"{}\" [{} dbevts]\n",
            next(250),
            sec(u + s + txn + next(50)),
            next(40_000),
            agents[next(3) as usize],
            next(5),
        ));
        access += 1;
    }
    (text, access)
}
