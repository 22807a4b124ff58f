//! Is the box reachable by its name? What the box itself can check, said honestly:
//!
//! - the name resolves (checked from the box every `check_interval`, by a task off the request
//!   path; never in a handler), and to which addresses;
//! - the certificate the TLS proxy serves (`<tls_dir>/fullchain.pem`, world-readable): issuer,
//!   valid until, and whether it is the self-signed placeholder the root side puts there until
//!   the ACME CA issued one (a self-signed certificate: issuer = subject);
//! - the last ACME attempt (`<tls_dir>/acme-status.json`, written by the root side after each:
//!   `{"at", "ok", "name", "message"}`).
//!
//! Reachability from outside is not checked here: a box enrolled with the cooperative's relay
//! asks the cooperative to look (hearth-tunnel.service, `crate::tunnel`), and its last answer
//! (`check.json` beside the tunnel's status file) is read here. A box with its own domain is
//! not checked from outside; the page says so.
//!
//! `certificate` and `acme` are pure (bytes in, facts out); `check` and `run` do the IO.

use super::check::{resolve, Resolve, RESOLVE_TIMEOUT};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

pub const FULLCHAIN: &str = "fullchain.pem";
pub const ACME_STATUS: &str = "acme-status.json";

/// What the page and `/api/v1/status` show about the name.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Reach {
    pub server_name: String,
    /// `None`: not checked yet.
    pub resolves: Option<bool>,
    pub addresses: Vec<String>,
    pub resolve_error: Option<String>,
    /// RFC 3339, UTC: when the box last asked the DNS.
    pub checked_at: Option<String>,
    /// `None`: no certificate file yet.
    pub certificate: Option<Certificate>,
    pub certificate_error: Option<String>,
    /// `None`: no ACME attempt yet.
    pub acme: Option<Acme>,
    pub acme_error: Option<String>,
    /// Reachability from outside, as the cooperative last saw it: `"not_checked"`,
    /// `"reachable"`, `"unreachable"`, or `"unknown"` (the cooperative could not be asked).
    pub outside: &'static str,
    /// The cooperative's last answer (enrolled boxes only).
    pub outside_check: Option<crate::tunnel::OutsideCheck>,
    pub outside_error: Option<String>,
    /// The tunnel to the cooperative's relay, when the box is enrolled with one (`None`: not).
    pub tunnel: Option<crate::tunnel::TunnelState>,
    pub tunnel_error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Certificate {
    /// The issuer's organisation (or common name, or the whole distinguished name).
    pub issuer: String,
    pub subject: String,
    /// RFC 3339, UTC.
    pub not_after: String,
    /// Self-signed: the placeholder until the ACME CA issued a certificate.
    pub placeholder: bool,
}

/// One line of `acme-status.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Acme {
    pub at: String,
    pub ok: bool,
    pub name: String,
    pub message: String,
}

/// The first certificate of a PEM chain (the server's own).
pub fn certificate(pem: &[u8]) -> Result<Certificate, String> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(pem).map_err(|e| format!("not PEM: {e}"))?;
    let cert = pem
        .parse_x509()
        .map_err(|e| format!("not an X.509 certificate: {e}"))?;
    let name = |n: &x509_parser::x509::X509Name<'_>| {
        let org = n.iter_organization().find_map(|a| a.as_str().ok());
        let cn = n.iter_common_name().find_map(|a| a.as_str().ok());
        org.or(cn).map_or_else(|| n.to_string(), str::to_string)
    };
    let not_after = chrono::DateTime::from_timestamp(cert.validity().not_after.timestamp(), 0)
        .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default();
    let subject = cert
        .subject()
        .iter_common_name()
        .find_map(|a| a.as_str().ok().map(str::to_string))
        .unwrap_or_else(|| cert.subject().to_string());
    let issuer = name(cert.issuer());
    let placeholder = cert.issuer().as_raw() == cert.subject().as_raw();
    Ok(Certificate {
        issuer,
        subject,
        not_after,
        placeholder,
    })
}

/// `acme-status.json`.
pub fn acme(text: &str) -> Result<Acme, String> {
    let a: Acme = serde_json::from_str(text).map_err(|e| format!("{ACME_STATUS}: {e}"))?;
    Ok(Acme {
        message: a
            .message
            .lines()
            .next()
            .unwrap_or("")
            .chars()
            .take(300)
            .collect(),
        ..a
    })
}

/// The TLS files (absent files are `None`, unreadable ones an error).
pub fn read_tls(
    dir: &Path,
) -> (
    Result<Option<Certificate>, String>,
    Result<Option<Acme>, String>,
) {
    let read = |f: &str| match std::fs::read(dir.join(f)) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("{}: {e}", dir.join(f).display())),
    };
    let cert = read(FULLCHAIN).and_then(|b| b.map(|b| certificate(&b)).transpose());
    let acme =
        read(ACME_STATUS).and_then(|b| b.map(|b| acme(&String::from_utf8_lossy(&b))).transpose());
    (cert, acme)
}

/// What the box knows about its name now; `None` while no name is chosen.
pub type SharedReach = Arc<Mutex<Option<Reach>>>;

/// Where the task looks.
#[derive(Clone)]
pub struct Sources {
    pub server_name_file: PathBuf,
    pub tls_dir: PathBuf,
    pub resolver: Arc<dyn Resolve>,
    /// How often the DNS is asked.
    pub interval: Duration,
    /// How often the files are reread (and the name file looked at).
    pub files_every: Duration,
    /// The relay's configuration (the box is enrolled when it exists) and the tunnel's state.
    pub relay: Option<(PathBuf, PathBuf)>,
}

/// One look: the name, its resolution (when `resolve_now`), the TLS files. The last
/// resolution is kept from `before` otherwise.
pub async fn check(
    src: &Sources,
    before: Option<&Reach>,
    resolve_now: bool,
    now_utc: chrono::DateTime<chrono::Utc>,
) -> Option<Reach> {
    let name = super::chosen(&src.server_name_file)?;
    let same_name = before.filter(|b| b.server_name == name);
    let (resolves, addresses, resolve_error, checked_at) = match (resolve_now, same_name) {
        (false, Some(b)) => (
            b.resolves,
            b.addresses.clone(),
            b.resolve_error.clone(),
            b.checked_at.clone(),
        ),
        _ => {
            let at = Some(now_utc.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
            match resolve(&*src.resolver, &name, RESOLVE_TIMEOUT).await {
                Ok(a) => (
                    Some(true),
                    a.iter().map(ToString::to_string).collect(),
                    None,
                    at,
                ),
                Err(e) => (Some(false), Vec::new(), Some(e), at),
            }
        }
    };
    let dir = src.tls_dir.clone();
    let (cert, acme) = tokio::task::spawn_blocking(move || read_tls(&dir))
        .await
        .unwrap_or_else(|e| (Err(e.to_string()), Err(e.to_string())));
    let (certificate, certificate_error) = match cert {
        Ok(c) => (c, None),
        Err(e) => (None, Some(e)),
    };
    let (acme, acme_error) = match acme {
        Ok(a) => (a, None),
        Err(e) => (None, Some(e)),
    };
    let (tunnel, tunnel_error, outside_check, outside_error) = match &src.relay {
        Some((config, status)) if config.exists() => {
            let (t, te) = match crate::tunnel::read_status(status) {
                Ok(t) => (Some(t), None),
                Err(e) => (None, Some(e)),
            };
            let (c, ce) = match crate::tunnel::read_check(&crate::tunnel::check_file(status)) {
                Ok(c) => (c, None),
                Err(e) => (None, Some(e)),
            };
            (t, te, c, ce)
        }
        _ => (None, None, None, None),
    };
    let outside = match &outside_check {
        None => "not_checked",
        Some(c) if c.reachable() => "reachable",
        Some(c) if c.report.is_some() => "unreachable",
        Some(_) => "unknown",
    };
    Some(Reach {
        server_name: name,
        resolves,
        addresses,
        resolve_error,
        checked_at,
        certificate,
        certificate_error,
        acme,
        acme_error,
        outside,
        outside_check,
        outside_error,
        tunnel,
        tunnel_error,
    })
}

/// The task `app/` spawns: files every `files_every`, the DNS every `interval` and at once
/// when the name appears or changes.
pub async fn run(src: Sources, shared: SharedReach, token: CancellationToken) {
    let mut tick = tokio::time::interval(src.files_every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_resolve: Option<tokio::time::Instant> = None;
    loop {
        tokio::select! {
            _ = token.cancelled() => break,
            _ = tick.tick() => {}
        }
        let before = shared.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let due = last_resolve.is_none_or(|t| t.elapsed() >= src.interval);
        let name_now = super::chosen(&src.server_name_file);
        let changed = before.as_ref().map(|b| &b.server_name) != name_now.as_ref();
        let resolve_now = due || changed;
        let r = check(&src, before.as_ref(), resolve_now, crate::clock::utc_now()).await;
        if resolve_now && r.is_some() {
            last_resolve = Some(tokio::time::Instant::now());
        }
        *shared.lock().unwrap_or_else(|p| p.into_inner()) = r;
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::name::check::TableResolver;

    /// A certificate made with `openssl` at test time: self-signed, or signed by a test CA.
    pub(crate) fn openssl_cert(dir: &Path, cn: &str, ca: bool) -> Vec<u8> {
        let run = |args: &[&str]| {
            let out = std::process::Command::new("openssl")
                .args(args)
                .current_dir(dir)
                .output()
                .expect("openssl (Debian package openssl) is needed for this test");
            assert!(out.status.success(), "openssl {args:?}: {out:?}");
        };
        let subj = format!("/CN={cn}");
        if !ca {
            run(&[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-keyout",
                "self.key",
                "-out",
                "self.pem",
                "-days",
                "30",
                "-subj",
                &subj,
            ]);
            return std::fs::read(dir.join("self.pem")).unwrap();
        }
        run(&[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "365",
            "-subj",
            "/O=Test ACME CA/CN=Test Intermediate R1",
        ]);
        run(&[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "leaf.key",
            "-out",
            "leaf.csr",
            "-subj",
            &subj,
        ]);
        run(&[
            "x509",
            "-req",
            "-in",
            "leaf.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "leaf.pem",
            "-days",
            "90",
        ]);
        let mut chain = std::fs::read(dir.join("leaf.pem")).unwrap();
        chain.extend(std::fs::read(dir.join("ca.pem")).unwrap());
        chain
    }

    #[test]
    fn a_self_signed_certificate_is_the_placeholder() {
        let dir = tempfile::tempdir().unwrap();
        let c = certificate(&openssl_cert(dir.path(), "family.example.org", false)).unwrap();
        assert!(c.placeholder, "{c:?}");
        assert_eq!(c.subject, "family.example.org");
        assert_eq!(c.issuer, "family.example.org");
        let days = chrono::DateTime::parse_from_rfc3339(&c.not_after)
            .unwrap()
            .with_timezone(&chrono::Utc)
            - chrono::Utc::now();
        assert!((29..=30).contains(&days.num_days()), "{c:?}");
    }

    #[test]
    fn a_certificate_from_the_ca_names_its_issuer() {
        let dir = tempfile::tempdir().unwrap();
        let c = certificate(&openssl_cert(dir.path(), "family.example.org", true)).unwrap();
        assert!(!c.placeholder, "{c:?}");
        assert_eq!(c.issuer, "Test ACME CA");
        assert_eq!(c.subject, "family.example.org");
    }

    #[test]
    fn broken_files_are_errors_not_panics() {
        assert!(certificate(b"hello").is_err());
        assert!(
            certificate(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n").is_err()
        );
        assert!(acme("{\"at\": 1}").is_err());
        let a = acme(r#"{"at": "2026-12-04T10:00:00Z", "ok": false, "name": "family.example.org", "message": "urn:ietf:params:acme:error:connection: timeout\nmore"}"#).unwrap();
        assert!(!a.ok);
        assert_eq!(a.message, "urn:ietf:params:acme:error:connection: timeout");
    }

    #[tokio::test]
    async fn the_check_reads_the_name_the_dns_and_the_tls_files() {
        let dir = tempfile::tempdir().unwrap();
        let tls = dir.path().join("tls");
        std::fs::create_dir(&tls).unwrap();
        let mut table = TableResolver::default();
        table.0.insert(
            "family.example.org".into(),
            vec![std::net::IpAddr::from([127, 0, 0, 1])],
        );
        let src = Sources {
            server_name_file: dir.path().join("server_name"),
            tls_dir: tls.clone(),
            resolver: Arc::new(table),
            interval: Duration::from_secs(300),
            files_every: Duration::from_secs(30),
            relay: None,
        };
        let now = chrono::Utc::now();
        // No name: nothing to say.
        assert_eq!(check(&src, None, true, now).await, None);
        std::fs::write(&src.server_name_file, "family.example.org\n").unwrap();
        let r = check(&src, None, true, now).await.unwrap();
        assert_eq!(r.resolves, Some(true));
        assert_eq!(r.addresses, vec!["127.0.0.1".to_string()]);
        assert_eq!(r.certificate, None);
        assert_eq!(r.acme, None);
        assert_eq!(r.outside, "not_checked");
        // The placeholder, then a failed ACME attempt.
        std::fs::write(
            tls.join(FULLCHAIN),
            openssl_cert(dir.path(), "family.example.org", false),
        )
        .unwrap();
        std::fs::write(
            tls.join(ACME_STATUS),
            r#"{"at": "2026-12-04T10:00:00Z", "ok": false, "name": "family.example.org", "message": "timeout during connect"}"#,
        )
        .unwrap();
        let r2 = check(&src, Some(&r), false, now).await.unwrap();
        assert_eq!(r2.checked_at, r.checked_at, "the DNS was not asked again");
        assert!(r2.certificate.as_ref().unwrap().placeholder);
        assert_eq!(r2.acme.as_ref().unwrap().message, "timeout during connect");
        // A name that does not resolve says why.
        std::fs::write(&src.server_name_file, "other.example.org\n").unwrap();
        let r3 = check(&src, Some(&r2), false, now).await.unwrap();
        assert_eq!(r3.resolves, Some(false));
        assert_eq!(r3.resolve_error.as_deref(), Some("no such name"));
        // A broken certificate file is an error on the page, not a crash.
        std::fs::write(tls.join(FULLCHAIN), "garbage").unwrap();
        let r4 = check(&src, Some(&r3), false, now).await.unwrap();
        assert!(r4.certificate.is_none() && r4.certificate_error.is_some());
    }
}
