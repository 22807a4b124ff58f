//! `make bench` (after `hearth-bench`): the cooperative collector's figures, one
//! `name value unit` line each, then a `#` line saying how they were measured.
//!
//! - `collector_reports_per_s`: valid reports ingested per second on one core: `collector::accept`
//!   (the strict parse, the token's RSA check, the store's one transaction storing the report and
//!   spending its token) called in a loop on one thread, SQLite in a temporary directory, as
//!   `hearth-coop serve` opens it. Each answer must be 200, and the store must hold every report
//!   and spent token afterwards.
//! - `collector_http_reports_per_s`: the same through the whole front door: a running cooperative
//!   (`cooperative::start`) and `POST /api/v1/reports` on its control listener, as boxes send
//!   reports: TLS 1.3 over loopback, a new connection for each report (the API keeps none
//!   alive), [`CONNECTIONS`] in flight. Every server thread (its tokio worker and its blocking
//!   pool, where parsing, the token's check and SQLite run) is pinned to CPU 0; the load
//!   generator runs on the other CPUs. Most of the difference to `collector_reports_per_s` is the
//!   TCP connection and the TLS handshake each report brings, and loopback delivering the answer
//!   to the client on the server's core.
//!
//! Every report carries its own token, made before the clock starts (blinding, the collector's
//! blind signature, finalizing: the box's and the token endpoint's cost, not ingestion's), on all
//! CPUs. `COOP_BENCH_REPORTS` (default 10 000) reports; the best of `COOP_BENCH_PASSES`
//! (default 3) passes of all of them, each pass on a fresh database.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use cooperative::collector::{self, Collector, Keys};
use cooperative::store::Store;
use report_wire::token::{self, PublicKey, SecretKey};
use report_wire::{Hardware, MembersBucket, Report};
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Connections the load generator keeps in flight.
const CONNECTIONS: usize = 32;
const CONTROL: &str = "relay.bench.test";

fn main() {
    if let Err(e) = run() {
        eprintln!("hearth-coop-bench: {e:#}");
        std::process::exit(1);
    }
}

fn env_usize(name: &str, default: usize) -> anyhow::Result<usize> {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .map_err(|_| anyhow::anyhow!("{name}={v:?}: not a number")),
        Err(_) => Ok(default),
    }
}

fn run() -> anyhow::Result<()> {
    let n = env_usize("COOP_BENCH_REPORTS", 10_000)?.max(1);
    let passes = env_usize("COOP_BENCH_PASSES", 3)?.max(1);
    let dir = tempfile_dir()?;
    let (pk, sk) = token::generate_key().map_err(|e| anyhow::anyhow!("{e}"))?;
    let key_file = dir.join("report-key.pem");
    std::fs::write(&key_file, sk.to_pem().map_err(|e| anyhow::anyhow!("{e}"))?)?;

    let t0 = Instant::now();
    let bodies = reports(&pk, &sk, n)?;
    eprintln!(
        "hearth-coop-bench: {n} reports with their own tokens made in {:.1} s (not timed)",
        t0.elapsed().as_secs_f64()
    );

    // Each pass on a fresh database, where none of the tokens is spent yet.
    let mut best_accept: f64 = 0.0;
    for pass in 0..passes {
        let rate = bench_accept(&dir.join(format!("accept-{pass}.sqlite3")), &sk, &bodies)?;
        best_accept = best_accept.max(rate);
    }
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut best_http: f64 = 0.0;
    for pass in 0..passes {
        let rate = bench_http(&dir, pass, &key_file, &bodies, cpus)?;
        best_http = best_http.max(rate);
    }

    println!("collector_reports_per_s {best_accept:.0} reports/s");
    println!("collector_http_reports_per_s {best_http:.0} reports/s");
    println!(
        "# {n} valid reports with distinct pre-made tokens, SQLite (WAL; reports on \
         synchronous=NORMAL), best of {passes}. collector_reports_per_s: collector::accept in a \
         loop on one thread. collector_http_reports_per_s: POST /api/v1/reports to \
         cooperative::start over TLS on loopback, a new connection per report, {CONNECTIONS} in \
         flight, server pinned to CPU 0{}",
        if cpus > 1 {
            ", client on the other CPUs"
        } else {
            " with the client (one CPU)"
        }
    );
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

fn tempfile_dir() -> anyhow::Result<std::path::PathBuf> {
    let mut raw = [0u8; 8];
    getrandom::fill(&mut raw).map_err(|e| anyhow::anyhow!("{e}"))?;
    let dir = std::env::temp_dir().join(format!("hearth-coop-bench-{}", hex::encode(raw)));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// `count` report bodies, each with its own finalized token, made on every CPU.
fn reports(pk: &PublicKey, sk: &SecretKey, count: usize) -> anyhow::Result<Vec<Vec<u8>>> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let next = AtomicUsize::new(0);
    let made = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| -> anyhow::Result<Vec<Vec<u8>>> {
                    let mut out = Vec::new();
                    while next.fetch_add(1, Ordering::Relaxed) < count {
                        let (req, blinding) = token::blind(pk)?;
                        let sig = token::sign_blinded(sk, &req.blinded)?;
                        let token = token::finalize(pk, blinding, &sig)?;
                        let i = out.len();
                        let report = Report {
                            schema: report_wire::SCHEMA.into(),
                            id: report_wire::new_id()?,
                            month: "2025-03".into(),
                            energy_kwh: f64::from((i % 200) as u32) / 10.0,
                            epsilon: 1.0,
                            hardware: Hardware::ALL[i % 4],
                            members: MembersBucket::ALL[i % 4],
                            uptime_share: 0.95,
                            synapse: "1.139".into(),
                            supplier: (i % 3 == 0).then(|| "Bürgerwerke eG".to_owned()),
                            token,
                        };
                        out.push(serde_json::to_vec(&report)?);
                    }
                    Ok(out)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .map_err(|_| anyhow::anyhow!("a token thread panicked"))?
            })
            .collect::<anyhow::Result<Vec<_>>>()
    })?;
    Ok(made.into_iter().flatten().collect())
}

fn bench_accept(db: &Path, sk: &SecretKey, bodies: &[Vec<u8>]) -> anyhow::Result<f64> {
    let store = Store::open(db, "bench.test")?;
    let sk = SecretKey::from_pem(&sk.to_pem().map_err(|e| anyhow::anyhow!("{e}"))?)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let c = Collector {
        keys: Keys::from_secret(vec![sk])?,
        tokens_per_box: 16,
    };
    let t0 = Instant::now();
    for body in bodies {
        let res = collector::accept(&c, &store, body, "2025-04-02");
        anyhow::ensure!(res.status() == 200, "accept: {}", res.status());
    }
    let s = t0.elapsed().as_secs_f64();
    let stored = (store.reports()?.len(), store.spent_tokens()?);
    anyhow::ensure!(
        stored == (bodies.len(), bodies.len() as i64),
        "accept: stored {stored:?} of {}",
        bodies.len()
    );
    Ok(bodies.len() as f64 / s)
}

fn pin(cpus: impl IntoIterator<Item = usize>) {
    let mut set = rustix::thread::CpuSet::new();
    for c in cpus {
        set.set(c);
    }
    if let Err(e) = rustix::thread::sched_setaffinity(None, &set) {
        eprintln!("hearth-coop-bench: pinning a thread: {e}");
    }
}

/// A CA and a certificate from it for the control listener's name, made by openssl (as
/// `make cooperative-run` makes its certificate); returns the CA, which the client trusts.
fn control_cert(dir: &Path) -> anyhow::Result<CertificateDer<'static>> {
    use rustls::pki_types::pem::PemObject;
    let ca = dir.join("control-ca.pem");
    if !ca.exists() {
        let openssl = |args: &[&str]| -> anyhow::Result<()> {
            let status = std::process::Command::new("openssl")
                .args(args)
                .current_dir(dir)
                .stderr(std::process::Stdio::null())
                .status()
                .map_err(|e| {
                    anyhow::anyhow!("openssl (for the control listener's certificate): {e}")
                })?;
            anyhow::ensure!(status.success(), "openssl {}: {status}", args.join(" "));
            Ok(())
        };
        let key = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2";
        let mut ca_args: Vec<&str> = "req -x509".split(' ').collect();
        ca_args.extend(key.split(' '));
        ca_args.extend(["-subj", "/CN=hearth-coop-bench CA"]);
        ca_args.extend(["-keyout", "control-ca-key.pem", "-out", "control-ca.pem"]);
        openssl(&ca_args)?;
        let (subj, san) = (
            format!("/CN={CONTROL}"),
            format!("subjectAltName=DNS:{CONTROL}"),
        );
        let mut args: Vec<&str> = "req -x509 -CA control-ca.pem -CAkey control-ca-key.pem"
            .split(' ')
            .collect();
        args.extend(key.split(' '));
        args.extend(["-subj", &subj, "-addext", &san]);
        args.extend(["-addext", "basicConstraints=critical,CA:FALSE"]);
        args.extend(["-keyout", "control-key.pem", "-out", "control-cert.pem"]);
        openssl(&args)?;
    }
    Ok(CertificateDer::from_pem_file(&ca)?)
}

fn bench_http(
    dir: &Path,
    pass: usize,
    key_file: &Path,
    bodies: &[Vec<u8>],
    cpus: usize,
) -> anyhow::Result<f64> {
    let ca = control_cert(dir)?;
    let mut config = cooperative::Config {
        domain: "bench.test".into(),
        database: dir.join(format!("http-{pass}.sqlite3")),
        ..cooperative::Config::default()
    };
    config.edge.https_listen = "127.0.0.1:0".parse()?;
    config.edge.http_listen = "127.0.0.1:0".parse()?;
    config.control.listen = "127.0.0.1:0".parse()?;
    config.site.listen = "127.0.0.1:0".parse()?;
    config.control.name = CONTROL.into();
    config.control.cert = dir.join("control-cert.pem");
    config.control.key = dir.join("control-key.pem");
    config.check.ca_file = Some(dir.join("control-ca.pem"));
    config.reports.key = vec![key_file.to_owned()];

    // The server: one worker, its blocking pool, all on CPU 0.
    let server = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("coop-server")
        .on_thread_start(|| pin([0]))
        .enable_all()
        .build()?;
    let running = server.block_on(cooperative::start(&config))?;
    let client_cpus: Vec<usize> = if cpus > 1 {
        (1..cpus).collect()
    } else {
        vec![0]
    };
    let client = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(client_cpus.len())
        .thread_name("bench-client")
        .on_thread_start(move || pin(client_cpus.clone()))
        .enable_all()
        .build()?;

    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca)?;
    let mut tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(tls));
    let addr = running.control;
    let bodies: Arc<Vec<Vec<u8>>> = Arc::new(bodies.to_vec());
    let next = Arc::new(AtomicUsize::new(0));

    let elapsed = client.block_on(async {
        let t0 = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..CONNECTIONS {
            let (connector, bodies, next) = (connector.clone(), bodies.clone(), next.clone());
            tasks.push(tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(body) = bodies.get(i) else {
                        return Ok::<(), anyhow::Error>(());
                    };
                    let (status, answer) = post(&connector, addr, body).await?;
                    anyhow::ensure!(
                        status == 200 && answer.contains("\"new\":true"),
                        "report {i}: {status} {answer}"
                    );
                }
            }));
        }
        for t in tasks {
            t.await??;
        }
        Ok::<_, anyhow::Error>(t0.elapsed().as_secs_f64())
    })?;
    let store = running.store.clone();
    let stored = (store.reports()?.len(), store.spent_tokens()?);
    anyhow::ensure!(
        stored == (bodies.len(), bodies.len() as i64),
        "http: stored {stored:?} of {}",
        bodies.len()
    );
    server.block_on(running.stop());
    Ok(bodies.len() as f64 / elapsed)
}

/// One report on its own TLS connection: the status and the body.
async fn post(
    connector: &tokio_rustls::TlsConnector,
    addr: std::net::SocketAddr,
    body: &[u8],
) -> anyhow::Result<(u16, String)> {
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    let mut tls = connector
        .connect(ServerName::try_from(CONTROL)?, tcp)
        .await?;
    let mut req = format!(
        "POST {} HTTP/1.1\r\nHost: {CONTROL}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        report_wire::api::REPORTS_PATH,
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(body);
    tls.write_all(&req).await?;
    let mut out = Vec::new();
    tls.read_to_end(&mut out).await?;
    let text = String::from_utf8_lossy(&out);
    let status = text
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("not an HTTP answer: {text}"))?;
    let answer = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_owned();
    Ok((status, answer))
}
