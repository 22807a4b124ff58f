//! The transparency site through its router (`tower::ServiceExt::oneshot`): both languages,
//! HTML and JSON of every page, the Atom feed read by a real XML parser, the k threshold, the
//! ledger's mistakes on the page, the Markdown pages' raw HTML escaped.
#![allow(clippy::unwrap_used)] // a test crate: a panic is a failed test

use std::path::Path;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use cooperative::site::{router, Site};
use cooperative::store::{ReportRecord, Store};
use tower::ServiceExt;

const LEDGER: &str = "\
date,kind,category,amount,note
2024-01-01,accounts,,100,
2024-01-01,supplier,Grüner <Strom> & Co,,
2024-01-01,mix,wind,70,
2024-01-01,mix,solar,30,
2024-01-31,income,fees,1000.00,
2024-01-31,expense,hosting,200.00,
2024-02-29,expense,hosting,200.00,
2024-03-31,expense,hosting,200.00,
2024-03-31,reserve,bank,2400.00,
2024-04-30,income,fees,1000.00,
2024-04-30,expense,hosting,200.00,
2024-05-31,expense,hosting,1,00,
";

struct Fixture {
    _dir: tempfile::TempDir,
    site: Site,
}

fn fixture(reports: &[(&str, &str, &str, f64)]) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("coop.sqlite3"), "coop.test").unwrap();
    for (i, (month, hw, members, kwh)) in reports.iter().enumerate() {
        let r = ReportRecord {
            id: format!("{i:032x}"),
            month: (*month).into(),
            hardware: (*hw).into(),
            members: (*members).into(),
            energy_kwh: *kwh,
            epsilon: 1.0,
            uptime_share: 1.0,
            synapse: "1.139".into(),
            supplier: None,
        };
        let mut token = [0u8; 32];
        token[..8].copy_from_slice(&(i as u64).to_be_bytes());
        store.ingest_report(&r, &token, "2024-02-03").unwrap();
    }
    std::fs::write(dir.path().join("ledger.csv"), LEDGER).unwrap();
    for (lang, text) in [
        ("de", "# Rechtliches\n\n<script>alert(1)</script> Text."),
        ("en", "# Legal\n\nText."),
    ] {
        std::fs::create_dir_all(dir.path().join("pages").join(lang)).unwrap();
        std::fs::write(dir.path().join("pages").join(lang).join("legal.md"), text).unwrap();
    }
    std::fs::write(
        dir.path().join("pages/de/access.md"),
        "# Zugriff\n\nNur Deutsch.",
    )
    .unwrap();
    let site = Site {
        store,
        ledger: dir.path().join("ledger.csv"),
        pages_dir: dir.path().join("pages"),
        k: 10,
        name: "Test-Genossenschaft".into(),
        base_url: "https://coop.test".into(),
    };
    Fixture { _dir: dir, site }
}

fn month_reports() -> Vec<(&'static str, &'static str, &'static str, f64)> {
    let mut r = Vec::new();
    for i in 0..12 {
        r.push(("2024-01", "pi5", "2-5", 3.0 + f64::from(i % 4)));
    }
    for _ in 0..3 {
        r.push(("2024-01", "pi4", "1", 2.0));
    }
    for _ in 0..4 {
        r.push(("2024-02", "pi5", "2-5", 2.0));
    }
    r
}

async fn get(site: &Site, uri: &str, headers: &[(&str, &str)]) -> (StatusCode, String, String) {
    let mut req = Request::get(uri);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let res = router(site.clone())
        .oneshot(req.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = res.status();
    let ctype = res
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    assert!(res.headers().get("content-security-policy").is_some());
    let body = axum::body::to_bytes(res.into_body(), 1 << 22)
        .await
        .unwrap();
    (status, ctype, String::from_utf8(body.to_vec()).unwrap())
}

#[tokio::test]
async fn every_page_in_german_and_english_and_as_json() {
    let f = fixture(&month_reports());
    for path in [
        "/",
        "/energy",
        "/finances",
        "/reports/2024-Q1",
        "/pages/legal",
    ] {
        let (s, ct, de) = get(&f.site, &format!("{path}?lang=de"), &[]).await;
        assert_eq!(s, StatusCode::OK, "{path}");
        assert!(ct.starts_with("text/html"), "{path}: {ct}");
        assert!(de.contains("<html lang=\"de\">"), "{path}");
        let (_, _, en) = get(&f.site, path, &[("accept-language", "en-GB,en;q=0.9")]).await;
        assert!(en.contains("<html lang=\"en\">"), "{path}");
        assert!(!de.contains("<script"), "{path}: no script on any page");
        let (s, ct, json) = get(&f.site, &format!("{path}?format=json"), &[]).await;
        assert_eq!(s, StatusCode::OK, "{path}");
        assert!(ct.starts_with("application/json"), "{path}: {ct}");
        serde_json::from_str::<serde_json::Value>(&json).unwrap();
        let (_, ct, _) = get(&f.site, path, &[("accept", "application/json")]).await;
        assert!(ct.starts_with("application/json"), "{path}: {ct}");
    }
    let (_, _, de) = get(&f.site, "/", &[]).await;
    assert!(
        de.contains("Betriebskosten gesichert für"),
        "German by default"
    );
    // Q1 2024: 600 € of costs over 3 months, 2400 € reserves: 12 months; 2 € per account.
    assert!(de.contains("<span class=\"big\">12,0</span>"), "{de}");
    let (_, _, en) = get(&f.site, "/?lang=en", &[]).await;
    assert!(en.contains("<span class=\"big\">€2.00</span>"), "{en}");
    // The supplier's name is text, never markup.
    assert!(en.contains("Grüner &lt;Strom&gt; &amp; Co"), "{en}");
    assert!(en.contains("<svg"), "the charts are inline SVG");
    assert_eq!(
        get(&f.site, "/reports/2031-Q1", &[]).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        get(&f.site, "/pages/secret", &[]).await.0,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn the_energy_page_withholds_groups_and_cells_under_k() {
    let f = fixture(&month_reports());
    let (_, _, json) = get(&f.site, "/energy?format=json", &[]).await;
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let months = v["aggregates"]["months"].as_array().unwrap();
    let feb = months.iter().find(|m| m["period"] == "2024-02").unwrap();
    assert_eq!(feb["all"]["status"], "withheld", "4 reports < k");
    assert!(feb["all"].get("reports").is_none(), "not even their number");
    let jan = months.iter().find(|m| m["period"] == "2024-01").unwrap();
    assert_eq!(jan["all"]["status"], "published");
    assert_eq!(jan["all"]["reports"], 15);
    assert_eq!(jan["by_hardware"]["pi5"]["reports"], 12);
    assert_eq!(jan["by_hardware"]["pi4"]["status"], "withheld");
    assert_eq!(jan["by_members"]["1"]["status"], "withheld");
    assert!(jan["all"]["mean_error95_kwh"].as_f64().unwrap() > 0.0);
    let (_, _, html) = get(&f.site, "/energy?lang=en", &[]).await;
    assert!(html.contains("withheld: fewer than 10 reports"), "{html}");
}

#[tokio::test]
async fn the_atom_feed_is_well_formed_and_lists_the_quarters_that_ended() {
    let f = fixture(&[]);
    let (s, ct, xml) = get(&f.site, "/feed.atom", &[]).await;
    assert_eq!(s, StatusCode::OK);
    assert!(ct.starts_with("application/atom+xml"), "{ct}");
    let doc = roxmltree::Document::parse(&xml).unwrap();
    let feed = doc.root_element();
    const ATOM: &str = "http://www.w3.org/2005/Atom";
    assert_eq!(feed.tag_name().name(), "feed");
    assert_eq!(feed.tag_name().namespace(), Some(ATOM));
    for required in ["id", "title", "updated"] {
        assert!(
            feed.children().any(|c| c.tag_name().name() == required),
            "{required}"
        );
    }
    let entries: Vec<_> = feed
        .children()
        .filter(|c| c.tag_name().name() == "entry")
        .collect();
    // The ledger has 2024-Q1 and Q2, both over.
    assert_eq!(entries.len(), 2);
    let id = |e: &roxmltree::Node| {
        e.children()
            .find(|c| c.tag_name().name() == "id")
            .unwrap()
            .text()
            .unwrap()
            .to_owned()
    };
    assert_eq!(id(&entries[0]), "https://coop.test/reports/2024-Q2");
    assert_eq!(id(&entries[1]), "https://coop.test/reports/2024-Q1");
    let summary = entries[1]
        .children()
        .find(|c| c.tag_name().name() == "summary")
        .unwrap()
        .text()
        .unwrap();
    assert!(summary.contains("gesichert für 12.0 Monate"), "{summary}");
}

#[tokio::test]
async fn a_bad_ledger_line_is_named_on_the_page_and_the_rest_shown() {
    let f = fixture(&[]);
    let (_, _, html) = get(&f.site, "/finances?lang=en", &[]).await;
    let file = f.site.ledger.display().to_string();
    assert!(
        html.contains(&format!("{file}:13:line: 6 fields")),
        "{html}"
    );
    assert!(html.contains("2024-Q2"), "the good lines still count");
    let (_, _, json) = get(&f.site, "/finances?format=json", &[]).await;
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["ledger_errors"].as_array().unwrap().len(), 1);
    // The ledger gone: the page says so and still renders.
    std::fs::remove_file(&f.site.ledger).unwrap();
    let (s, _, html) = get(&f.site, "/", &[]).await;
    assert_eq!(s, StatusCode::OK);
    assert!(html.contains(&file), "{html}");
}

#[tokio::test]
async fn markdown_pages_escape_raw_html_and_fall_back_to_the_other_language() {
    let f = fixture(&[]);
    let (_, _, de) = get(&f.site, "/pages/legal?lang=de", &[]).await;
    assert!(de.contains("&lt;script&gt;alert(1)&lt;/script&gt;"), "{de}");
    assert!(de.contains("<h1>Rechtliches</h1>"));
    let (_, _, en) = get(&f.site, "/pages/access?lang=en", &[]).await;
    assert!(
        en.contains("exists in German only") && en.contains("Nur Deutsch."),
        "{en}"
    );
    assert_eq!(
        get(&f.site, "/pages/content", &[]).await.0,
        StatusCode::NOT_FOUND
    );
    assert!(Path::new("cooperative/site").exists() || Path::new("site").exists());
}
