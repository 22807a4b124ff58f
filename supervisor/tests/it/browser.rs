//! The status page in a real browser: Debian's headless Chromium against the daemon (simulated
//! sensor, health not watched). It checks what a family sees — English by default, German when
//! the browser asks for it or after the switch link, the chart, figures refreshed by the script
//! under the page's CSP — and leaves phone-sized screenshots in `target/browser/` to look at.
//!
//! Chromium always sends `Accept-Language` (`en-US` unless told otherwise); the page's
//! fallback with no header at all (English) is checked in `http::pages`' tests.
//! `make test-deps` installs Chromium; without it this test fails and says so, unless
//! `HEARTH_SKIP_BROWSER=1` asks to skip it.

use crate::daemon::{free_port, start, status, wait_for};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const CHROMIUM: &str = "chromium";

/// `target/browser/`, next to the build's own directories.
fn artifacts() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    // target/debug/deps/it-… → target
    let target = exe.ancestors().nth(3).unwrap().to_path_buf();
    let dir = target.join("browser");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Run Chromium headless with `args` and the page URL; its stdout.
fn chromium(profile: &Path, args: &[&str], url: &str) -> String {
    let mut child = Command::new(CHROMIUM)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(url)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromium");
    let t0 = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if t0.elapsed() > Duration::from_secs(90) {
            let _ = child.kill();
            panic!("chromium {args:?} {url} did not finish within 90 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "chromium {args:?} {url}: {}",
        out.status
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The DOM after the page's script ran (virtual time lets its first refresh finish).
fn dom(profile: &Path, extra: &[&str], url: &str) -> String {
    let mut args = vec!["--virtual-time-budget=5000", "--dump-dom"];
    args.extend_from_slice(extra);
    chromium(profile, &args, url)
}

fn screenshot(profile: &Path, extra: &[&str], url: &str, name: &str, height: u32) -> PathBuf {
    let png = artifacts().join(name);
    let _ = std::fs::remove_file(&png);
    let shot = format!("--screenshot={}", png.display());
    let size = format!("--window-size=390,{height}");
    let mut args = vec!["--virtual-time-budget=3000", &shot, &size];
    args.extend_from_slice(extra);
    chromium(profile, &args, url);
    let bytes = std::fs::read(&png).unwrap_or_default();
    assert!(
        bytes.starts_with(b"\x89PNG") && bytes.len() > 10_000,
        "{}: not a screenshot of a page ({} bytes)",
        png.display(),
        bytes.len()
    );
    png
}

/// The text of the element carrying `data-field="name"`.
fn field<'a>(dom: &'a str, name: &str) -> &'a str {
    let marker = format!("data-field=\"{name}\"");
    let at = dom.find(&marker).unwrap_or_else(|| panic!("no {marker}"));
    let rest = &dom[at..];
    let open = rest.find('>').unwrap() + 1;
    let close = rest[open..].find('<').unwrap() + open;
    &rest[open..close]
}

fn write_config(dir: &Path, port: u16) -> PathBuf {
    let cfg = dir.join("supervisor.toml");
    std::fs::write(
        &cfg,
        format!(
            "[power]\nbackend = \"simulated\"\n\n[storage]\npath = \"{}\"\n\n[http]\nlisten = \"127.0.0.1:{port}\"\n\n[log]\nlevel = \"warn\"\n\n[health]\nbackend = \"none\"\n\n[accounting]\ntariff_per_kwh = 0.32\ncurrency = \"EUR\"\n",
            dir.join("hearth.db").display()
        ),
    )
    .unwrap();
    cfg
}

#[test]
fn the_status_page_in_a_real_browser() {
    if std::env::var_os("HEARTH_SKIP_BROWSER").is_some_and(|v| v == "1") {
        eprintln!("browser test skipped (HEARTH_SKIP_BROWSER=1)");
        return;
    }
    let found = Command::new(CHROMIUM)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        found,
        "Debian's chromium is needed for the page test: `make test-deps` installs it \
         (or set HEARTH_SKIP_BROWSER=1 to skip this test)"
    );

    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let d = start(&write_config(dir.path(), port), port);
    wait_for("a power reading", Duration::from_secs(20), || {
        status(d.port).filter(|s| s["power"]["watts"].is_number())
    });
    let url = format!("http://127.0.0.1:{port}/");

    // English: Chromium's own en-US.
    let en_profile = dir.path().join("profile-en");
    let en = dom(&en_profile, &[], &url);
    assert!(en.contains("<html lang=\"en\""), "{en}");
    assert!(en.contains("Power now") && en.contains("Cost this month"));
    assert!(
        en.contains("data-live=\"on\""),
        "the script ran under the CSP and fetched /api/v1/status: {en}"
    );
    let watts: f64 = field(&en, "watts").parse().expect("watts as a number");
    assert!((2.5..7.0).contains(&watts), "{watts}");
    assert!(field(&en, "cost").starts_with('€'));
    // The chart: an inline SVG with its text alternative and at least the running minute.
    assert!(en.contains("<svg viewBox=\"0 0 360 180\" role=\"img\""));
    assert!(en.contains("<title id=\"chart-title\">Power over the last hour</title>"));
    assert!(en.contains("<desc id=\"chart-desc\">Average "), "{en}");
    assert!(
        en.contains("<circle class=\"latest\" cx=\""),
        "a point for now"
    );

    // German: a browser that asks for it.
    let de = dom(
        &dir.path().join("profile-de"),
        &["--accept-lang=de-DE"],
        &url,
    );
    assert!(de.contains("<html lang=\"de\""), "{de}");
    assert!(de.contains("Leistung jetzt") && de.contains("Strom"));
    assert!(de.contains("data-live=\"on\""));
    assert!(field(&de, "watts").contains(','), "a decimal comma");
    assert!(de.contains("<desc id=\"chart-desc\">Im Mittel "));

    // The switch link: an English browser that chose German.
    let switched = dom(
        &dir.path().join("profile-switch"),
        &[],
        &format!("{url}lang/de?next=/"),
    );
    assert!(switched.contains("<html lang=\"de\""), "{switched}");
    assert!(switched.contains("href=\"/lang/en?next=/\""));

    // Screenshots for people: the phone's first screen, and the whole page.
    for (lang, extra) in [("en", &[][..]), ("de", &["--accept-lang=de-DE"][..])] {
        let profile = dir.path().join(format!("profile-shot-{lang}"));
        screenshot(&profile, extra, &url, &format!("overview-{lang}.png"), 844);
        screenshot(
            &profile,
            extra,
            &url,
            &format!("overview-{lang}-full.png"),
            1500,
        );
    }
}

/// "Who can access the data" and "what you are getting into" in a real browser: the tables
/// fit a phone, the script leaves these pages alone, the Markdown page renders in German.
#[test]
fn the_access_and_about_pages_in_a_real_browser() {
    if std::env::var_os("HEARTH_SKIP_BROWSER").is_some_and(|v| v == "1") {
        eprintln!("browser test skipped (HEARTH_SKIP_BROWSER=1)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // An inventory of a small system, as the root-run collector writes it.
    let root = dir.path().join("root");
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::create_dir_all(root.join("root/.ssh")).unwrap();
    std::fs::write(
        root.join("etc/passwd"),
        "root:x:0:0::/root:/bin/bash\nalice:x:1000:1000::/home/alice:/bin/bash\n",
    )
    .unwrap();
    std::fs::write(root.join("etc/shells"), "/bin/bash\n").unwrap();
    std::fs::write(root.join("etc/group"), "sudo:x:27:alice\n").unwrap();
    std::fs::write(
        root.join("etc/shadow"),
        "root:!:1::::::\nalice:$y$x:1::::::\n",
    )
    .unwrap();
    std::fs::write(
        root.join("root/.ssh/authorized_keys"),
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDLVT0EeCJkMpZPqK2Mklhoc6sQOnWWymsqVzrgT9WSQ alice@laptop\n",
    )
    .unwrap();
    let access = dir.path().join("access.json");
    let inv = hearth::transparency::inventory::gather(&root, chrono::Utc::now()).unwrap();
    hearth::transparency::inventory::write(&inv, &access).unwrap();

    let port = free_port();
    let cfg = write_config(dir.path(), port);
    let mut text = std::fs::read_to_string(&cfg).unwrap();
    text.push_str(&format!(
        "\n[transparency]\naccess_file = \"{}\"\npages_dir = \"{}\"\n",
        access.display(),
        dir.path().join("pages").display()
    ));
    std::fs::write(&cfg, text).unwrap();
    let d = start(&cfg, port);
    wait_for("the daemon", Duration::from_secs(20), || status(d.port));
    let base = format!("http://127.0.0.1:{port}");

    let page = dom(
        &dir.path().join("profile-access"),
        &[],
        &format!("{base}/access"),
    );
    // Without a session the browser is sent to the sign-in form, and sees no key or account
    // (signed in, the page is checked in `browser_signin`).
    assert!(page.contains("autocomplete=\"current-password\""), "{page}");
    assert!(!page.contains("SHA256:") && !page.contains("alice@laptop"));
    let legal = dom(
        &dir.path().join("profile-legal"),
        &["--accept-lang=de-DE"],
        &format!("{base}/about/legal"),
    );
    assert!(legal.contains("Keine Rechtsberatung"), "{legal}");
    assert!(legal.contains("href=\"/lang/en?next=/about/legal\""));

    let profile = dir.path().join("profile-shots");
    screenshot(
        &profile,
        &["--accept-lang=de-DE"],
        &format!("{base}/about/legal"),
        "about-legal-de.png",
        1400,
    );
}
