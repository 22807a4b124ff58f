//! "Reachable?" on the overview: the name, whether it resolves (from the box), the certificate
//! the box serves, the last ACME attempt, the tunnel to the cooperative and what the
//! cooperative saw from outside (enrolled boxes), or that nobody looked from outside. On the
//! overview for everyone rather than behind the sign-in: nothing in it is personal (the name,
//! its DNS answer and the certificate are public anyway), and it is what a family member looks
//! at when the phones cannot connect.

use super::i18n::{fill, Lang};
use super::name_text::NameText;
use crate::name::reach::Reach;
use chrono::{DateTime, Local};

/// One line of the section: a label, the words, and whether it is good (`None`: unknown).
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub label: &'static str,
    pub text: String,
    pub ok: Option<bool>,
}

impl Row {
    pub fn class(&self) -> &'static str {
        match self.ok {
            Some(true) => "ok",
            Some(false) => "bad",
            None => "unknown",
        }
    }
}

fn local(iso: &str) -> String {
    DateTime::parse_from_rfc3339(iso)
        .map(|d| d.with_timezone(&Local).format("%Y-%m-%d %H:%M").to_string())
        .unwrap_or_else(|_| iso.to_string())
}

/// The rows, in the visitor's language; `now` decides whether the certificate has expired.
pub fn rows(r: &Reach, lang: Lang, now: DateTime<chrono::Utc>) -> Vec<Row> {
    let n = NameText::of(lang);
    let mut rows = vec![Row {
        label: n.reach_name,
        text: r.server_name.clone(),
        ok: None,
    }];
    let checked = r
        .checked_at
        .as_deref()
        .map(|at| format!(" ({})", fill(n.reach_checked_at, &[&local(at)])))
        .unwrap_or_default();
    rows.push(Row {
        label: n.reach_resolves,
        text: match r.resolves {
            None => n.reach_not_checked.to_string(),
            Some(true) => fill(n.reach_resolves_to, &[&r.addresses.join(", ")]) + &checked,
            Some(false) => {
                fill(
                    n.reach_unresolved,
                    &[r.resolve_error.as_deref().unwrap_or("")],
                ) + &checked
            }
        },
        ok: r.resolves,
    });
    let (text, ok) = match (&r.certificate, &r.certificate_error) {
        (_, Some(e)) => (fill(n.reach_cert_unreadable, &[e]), Some(false)),
        (None, None) => (n.reach_not_checked.to_string(), None),
        (Some(c), None) => {
            let expired = DateTime::parse_from_rfc3339(&c.not_after).is_ok_and(|t| t < now);
            let until = local(&c.not_after);
            let mut text = if c.placeholder {
                fill(n.reach_cert_placeholder, &[&until])
            } else {
                fill(n.reach_cert_ca, &[&c.issuer, &until])
            };
            if expired {
                text = format!("{text}: {}", n.reach_cert_expired);
            }
            (text, Some(!c.placeholder && !expired))
        }
    };
    rows.push(Row {
        label: n.reach_certificate,
        text,
        ok,
    });
    let (text, ok) = match (&r.acme, &r.acme_error) {
        (_, Some(e)) => (e.clone(), Some(false)),
        (None, None) => (n.reach_acme_none.to_string(), None),
        (Some(a), None) => (
            fill(
                if a.ok {
                    n.reach_acme_ok
                } else {
                    n.reach_acme_failed
                },
                &[&local(&a.at), &a.message],
            ),
            Some(a.ok),
        ),
    };
    rows.push(Row {
        label: n.reach_acme,
        text,
        ok,
    });
    if let Some(row) = tunnel_row(r, n) {
        rows.push(row);
    }
    rows.push(outside_row(r, n));
    rows
}

fn local_unix(t: i64) -> String {
    DateTime::from_timestamp(t, 0)
        .map(|d| d.with_timezone(&Local).format("%Y-%m-%d %H:%M").to_string())
        .unwrap_or_default()
}

/// What the cooperative saw from outside, with the time it looked.
fn outside_row(r: &Reach, n: &NameText) -> Row {
    let (text, ok) = match (&r.outside_check, &r.outside_error) {
        (_, Some(e)) => (fill(n.reach_tunnel_unknown, &[e]), None),
        (None, None) if r.tunnel.is_some() || r.tunnel_error.is_some() => {
            (n.reach_outside_waiting.to_string(), None)
        }
        (None, None) => (n.reach_outside_text.to_string(), None),
        (Some(c), None) => match &c.report {
            None => (
                fill(
                    n.reach_outside_unasked,
                    &[c.error.as_deref().unwrap_or(""), &local_unix(c.asked_at)],
                ),
                None,
            ),
            Some(report) if c.reachable() => (
                fill(
                    n.reach_outside_ok,
                    &[
                        &local_unix(report.checked_at),
                        &report.addresses.join(", "),
                        &report.tls_not_after.map(local_unix).unwrap_or_default(),
                    ],
                ),
                Some(true),
            ),
            Some(report) => (
                fill(
                    n.reach_outside_failed,
                    &[
                        report.error.as_deref().unwrap_or(""),
                        &local_unix(report.checked_at),
                    ],
                ),
                Some(false),
            ),
        },
    };
    Row {
        label: n.reach_outside,
        text,
        ok,
    }
}

/// The tunnel to the cooperative, for an enrolled box.
fn tunnel_row(r: &Reach, n: &NameText) -> Option<Row> {
    let (text, ok) = match (&r.tunnel, &r.tunnel_error) {
        (None, None) => return None,
        (_, Some(e)) => (fill(n.reach_tunnel_unknown, &[e]), Some(false)),
        (Some(t), None) => match t.state.as_str() {
            "connected" => {
                let since = t
                    .since
                    .and_then(|s| DateTime::from_timestamp(s as i64, 0))
                    .map(|d| d.with_timezone(&Local).format("%Y-%m-%d %H:%M").to_string())
                    .unwrap_or_default();
                (
                    fill(
                        n.reach_tunnel_up,
                        &[t.edge.as_deref().unwrap_or(""), &since],
                    ),
                    Some(true),
                )
            }
            "refused" => (
                fill(n.reach_tunnel_refused, &[t.reason.as_deref().unwrap_or("")]),
                Some(false),
            ),
            "connecting" => (
                fill(
                    n.reach_tunnel_connecting,
                    &[t.last_error.as_deref().unwrap_or("")],
                ),
                Some(false),
            ),
            _ => (n.reach_tunnel_starting.to_string(), None),
        },
    };
    Some(Row {
        label: n.reach_tunnel,
        text,
        ok,
    })
}

#[cfg(test)]
mod tests {
    use crate::health::machine::{Health, AWAITING_SETUP};
    use crate::health::monitor::HealthReport;
    use crate::http::{router, AppState};
    use crate::name::reach::{Acme, Certificate, Reach};
    use axum::body::Body;
    use axum::http::Request;
    use chrono::{DateTime, Local};
    use tower::ServiceExt;

    async fn get(st: &AppState, path: &str, lang: &str) -> String {
        let res = router(st.clone())
            .oneshot(
                Request::get(path)
                    .header("accept-language", lang)
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        let body = axum::body::to_bytes(res.into_body(), 1 << 20)
            .await
            .unwrap();
        String::from_utf8_lossy(&body).into_owned()
    }

    fn reach() -> Reach {
        Reach {
            server_name: "family.example.org".into(),
            resolves: Some(true),
            addresses: vec!["192.0.2.7".into()],
            resolve_error: None,
            checked_at: Some("2026-12-04T10:00:00Z".into()),
            certificate: Some(Certificate {
                issuer: "family.example.org".into(),
                subject: "family.example.org".into(),
                not_after: "2099-01-01T00:00:00Z".into(),
                placeholder: true,
            }),
            certificate_error: None,
            acme: Some(Acme {
                at: "2026-12-04T10:01:00Z".into(),
                ok: false,
                name: "family.example.org".into(),
                message: "timeout during connect".into(),
            }),
            acme_error: None,
            outside: "not_checked",
            outside_check: None,
            outside_error: None,
            tunnel: None,
            tunnel_error: None,
        }
    }

    #[tokio::test]
    async fn while_no_name_is_chosen_the_overview_says_to_open_the_setup() {
        let st = AppState::minimal(None);
        *st.health.get() = Some(HealthReport {
            state: Health::Starting,
            reason: AWAITING_SETUP.into(),
            units: vec![],
            last_restart_ms: None,
            maintenance: false,
            awaiting_setup: true,
        });
        let en = get(&st, "/", "en").await;
        assert!(en.contains("Ready to be set up"), "{en}");
        assert!(en.contains("href=\"/setup\""));
        assert!(!en.contains("Reachable?"), "no name, no section");
        let de = get(&st, "/", "de").await;
        assert!(de.contains("Bereit zur Einrichtung"));
        let api: serde_json::Value =
            serde_json::from_str(&get(&st, "/api/v1/status", "en").await).unwrap();
        assert_eq!(api["health"]["state"], "starting");
        assert_eq!(api["health"]["awaiting_setup"], true);
        assert_eq!(api["health"]["reason"], AWAITING_SETUP);
        assert!(api["name"].is_null());
    }

    #[tokio::test]
    async fn the_overview_and_the_api_say_what_was_checked_about_the_name() {
        let st = AppState::minimal(None);
        *st.reach.lock().unwrap() = Some(reach());
        let en = get(&st, "/", "en").await;
        assert!(en.contains("Reachable?"), "{en}");
        assert!(en.contains("resolves to 192.0.2.7"));
        assert!(en.contains("a self-signed placeholder"));
        assert!(en.contains("failed (timeout during connect)"));
        assert!(
            en.contains("only boxes named under the cooperative&#39;s domain")
                || en.contains("only boxes named under the cooperative's domain"),
            "{en}"
        );
        let de = get(&st, "/", "de").await;
        assert!(de.contains("Erreichbar?"));
        assert!(de.contains("zeigt auf 192.0.2.7"));
        let api: serde_json::Value =
            serde_json::from_str(&get(&st, "/api/v1/status", "en").await).unwrap();
        let n = &api["name"];
        assert_eq!(n["server_name"], "family.example.org");
        assert_eq!(n["resolves"], true);
        assert_eq!(n["certificate"]["placeholder"], true);
        assert_eq!(n["certificate"]["not_after"], "2099-01-01T00:00:00Z");
        assert_eq!(n["acme"]["ok"], false);
        assert_eq!(n["outside"], "not_checked");
    }

    #[tokio::test]
    async fn an_enrolled_box_shows_its_tunnel_to_the_cooperative() {
        use crate::tunnel::TunnelState;
        let st = AppState::minimal(None);
        let tunnel = |state: &str| TunnelState {
            name: "nord.coop.example".into(),
            state: state.into(),
            edge: Some("192.0.2.1:7443".into()),
            since: Some(1_800_000_000),
            last_error: Some("connect to relay.coop.example:7443: timed out".into()),
            reason: Some("nord.coop.example belongs to another box".into()),
            edges: Vec::new(),
        };
        let mut r = reach();
        // Not enrolled: no row at all.
        *st.reach.lock().unwrap() = Some(r.clone());
        assert!(!get(&st, "/", "en")
            .await
            .contains("Tunnel to the cooperative"));
        r.tunnel = Some(tunnel("connected"));
        *st.reach.lock().unwrap() = Some(r.clone());
        let en = get(&st, "/", "en").await;
        assert!(en.contains("Tunnel to the cooperative"), "{en}");
        assert!(en.contains("connected to 192.0.2.1:7443 since"));
        let de = get(&st, "/", "de").await;
        assert!(de.contains("verbunden mit 192.0.2.1:7443 seit"), "{de}");
        let api: serde_json::Value =
            serde_json::from_str(&get(&st, "/api/v1/status", "en").await).unwrap();
        assert_eq!(api["name"]["tunnel"]["state"], "connected");
        let rows = |r: &Reach| super::rows(r, crate::http::i18n::Lang::En, chrono::Utc::now());
        r.tunnel = Some(tunnel("connecting"));
        let row = rows(&r)
            .into_iter()
            .find(|x| x.label == "Tunnel to the cooperative")
            .unwrap();
        assert_eq!(
            row.text,
            "not connected, trying again (connect to relay.coop.example:7443: timed out)"
        );
        assert_eq!(row.ok, Some(false));
        r.tunnel = Some(tunnel("refused"));
        let row = rows(&r)
            .into_iter()
            .find(|x| x.label == "Tunnel to the cooperative")
            .unwrap();
        assert_eq!(
            row.text,
            "refused by the cooperative: nord.coop.example belongs to another box"
        );
        r.tunnel = None;
        r.tunnel_error = Some("not running".into());
        let row = rows(&r)
            .into_iter()
            .find(|x| x.label == "Tunnel to the cooperative")
            .unwrap();
        assert_eq!(
            (row.text.as_str(), row.ok),
            ("state unknown: not running", Some(false))
        );
    }

    #[tokio::test]
    async fn an_enrolled_box_shows_what_the_cooperative_saw_from_outside_and_when() {
        use crate::tunnel::{OutsideCheck, TunnelState};
        use hearth_tunnel::check::CheckReport;
        let rows = |r: &Reach, lang| super::rows(r, lang, chrono::Utc::now());
        let outside = |r: &Reach| rows(r, crate::http::i18n::Lang::En).pop().unwrap();
        let mut r = reach();
        r.tunnel = Some(TunnelState {
            name: "nord.coop.example".into(),
            state: "connected".into(),
            edge: Some("192.0.2.1:7443".into()),
            since: Some(1_800_000_000),
            last_error: None,
            reason: None,
            edges: Vec::new(),
        });
        // Enrolled, not looked at yet.
        let row = outside(&r);
        assert_eq!(row.label, "Reachable from outside");
        assert!(row.text.starts_with("not checked yet"), "{}", row.text);
        let report = CheckReport {
            name: "nord.coop.example".into(),
            checked_at: 1_800_000_100,
            resolves: true,
            addresses: vec!["192.0.2.1".into()],
            tls_ok: true,
            tls_not_after: Some(1_807_776_000),
            matrix_ok: true,
            error: None,
        };
        let at = DateTime::from_timestamp(1_800_000_100, 0)
            .unwrap()
            .with_timezone(&Local)
            .format("%Y-%m-%d %H:%M")
            .to_string();
        r.outside_check = Some(OutsideCheck {
            asked_at: 1_800_000_100,
            report: Some(report.clone()),
            error: None,
        });
        r.outside = "reachable";
        let row = outside(&r);
        assert_eq!(row.ok, Some(true));
        assert!(
            row.text
                .starts_with(&format!("yes: the cooperative reached the box at {at}"))
                && row.text.contains("192.0.2.1"),
            "{}",
            row.text
        );
        let de = rows(&r, crate::http::i18n::Lang::De).pop().unwrap();
        assert!(
            de.text.starts_with("ja: Die Genossenschaft hat das Gerät"),
            "{}",
            de.text
        );
        // What went wrong, in the cooperative's words.
        r.outside_check = Some(OutsideCheck {
            asked_at: 1_800_000_100,
            report: Some(CheckReport {
                matrix_ok: false,
                error: Some("Matrix on nord.coop.example does not answer".into()),
                ..report
            }),
            error: None,
        });
        let row = outside(&r);
        assert_eq!(row.ok, Some(false));
        assert_eq!(
            row.text,
            format!(
                "no: Matrix on nord.coop.example does not answer (the cooperative looked at {at})"
            )
        );
        // The cooperative could not be asked: unknown, not "unreachable".
        r.outside_check = Some(OutsideCheck {
            asked_at: 1_800_000_100,
            report: None,
            error: Some("the cooperative at https://relay.coop.example:7443: timed out".into()),
        });
        let row = outside(&r);
        assert_eq!(row.ok, None);
        assert!(row.text.contains("timed out"), "{}", row.text);
        // In the API, for the app or a script.
        let st = AppState::minimal(None);
        r.outside = "unknown";
        *st.reach.lock().unwrap() = Some(r);
        let api: serde_json::Value =
            serde_json::from_str(&get(&st, "/api/v1/status", "en").await).unwrap();
        assert_eq!(api["name"]["outside"], "unknown");
        assert_eq!(api["name"]["outside_check"]["asked_at"], 1_800_000_100);
    }

    #[test]
    fn a_certificate_from_the_ca_is_good_until_it_expires() {
        let mut r = reach();
        r.certificate = Some(Certificate {
            issuer: "Let's Encrypt".into(),
            subject: "family.example.org".into(),
            not_after: "2027-01-01T00:00:00Z".into(),
            placeholder: false,
        });
        let before = chrono::DateTime::parse_from_rfc3339("2026-12-04T00:00:00Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        let rows = super::rows(&r, crate::http::i18n::Lang::En, before);
        assert_eq!(rows[2].ok, Some(true));
        assert!(rows[2].text.starts_with("issued by Let's Encrypt"));
        let after = before + chrono::Duration::days(60);
        let rows = super::rows(&r, crate::http::i18n::Lang::En, after);
        assert_eq!(rows[2].ok, Some(false));
        assert!(rows[2].text.ends_with("expired"));
    }
}
