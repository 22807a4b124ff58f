//! The server's permanent name: a Matrix server name can never change (Synapse's database and
//! every account id are tied to it), so Synapse is initialised only once it is chosen.
//!
//! The contract with the root side (`overlays/`): `/etc/hearth/server_name` holds the chosen
//! name, one line, absent until chosen (or written from `hearth.txt` for unattended setups).
//! The supervisor chooses it by starting `hearth-name@<instance>.service` (`<instance>` escaped
//! as `systemd-escape` does, [`systemd_escape`]); that unit writes the name, renders Synapse's
//! configuration and starts Synapse, the TLS proxy and the ACME client. polkit lets user
//! `hearth` start only units matching the pattern [`unit`] produces for a valid name.
//!
//! This file is pure: the syntax of a name ([`parse`], every [`Refusal`] a person can act on)
//! and the unit's name. `check.rs` asks the world (does it resolve, is it already a Matrix
//! server); `reach.rs` tells whether the chosen name is reachable (B of issue 12).

pub mod check;
pub mod reach;

use std::path::Path;

/// A syntactically valid server name: a DNS host name, lower case, at least two labels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerName(String);

impl ServerName {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for ServerName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Why a name is refused. Every variant has a sentence in German and English
/// (`http/name_text.rs`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    Empty,
    /// `example.org:8448`: the name has no port (delegation comes from `.well-known`).
    Port,
    /// `192.0.2.1`, `[::1]`, or a last label of digits only.
    IpLiteral,
    /// `localhost` or a name under it: only this box would reach it.
    Localhost,
    /// `*.local`: multicast DNS in the home network only; phones away from home cannot reach it.
    DotLocal,
    /// A character other than a–z, 0–9, `-` and `.` (upper case is lowered first).
    Character(char),
    /// One label only (`family`): not a name in the DNS.
    OneLabel,
    /// `a..b`, a leading or trailing dot.
    EmptyLabel,
    /// A label longer than 63 characters.
    LabelTooLong(String),
    /// A label that starts or ends with a hyphen.
    Hyphen(String),
    /// Longer than 253 characters, or too long for the box's unit name.
    TooLong,
    /// No address for the name (the DNS answer, or its error).
    Unresolved(String),
    /// Already a Matrix server (where it answered as one).
    Taken(String),
}

impl Refusal {
    /// A short machine name, for logs and tests.
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::Empty => "empty",
            Refusal::Port => "port",
            Refusal::IpLiteral => "ip_literal",
            Refusal::Localhost => "localhost",
            Refusal::DotLocal => "dot_local",
            Refusal::Character(_) => "character",
            Refusal::OneLabel => "one_label",
            Refusal::EmptyLabel => "empty_label",
            Refusal::LabelTooLong(_) => "label_too_long",
            Refusal::Hyphen(_) => "hyphen",
            Refusal::TooLong => "too_long",
            Refusal::Unresolved(_) => "unresolved",
            Refusal::Taken(_) => "taken",
        }
    }
}

/// The unit template the root side provides.
pub const UNIT_PREFIX: &str = "hearth-name@";
/// systemd's longest unit name (`UNIT_NAME_MAX` 256, with the terminating NUL).
const UNIT_NAME_MAX: usize = 255;

/// Check the syntax of a name as a person typed it (surrounding spaces dropped, upper case
/// lowered: DNS names do not care).
pub fn parse(input: &str) -> Result<ServerName, Refusal> {
    let name = input.trim().to_ascii_lowercase();
    if name.is_empty() {
        return Err(Refusal::Empty);
    }
    let bare = name.trim_start_matches('[').trim_end_matches(']');
    if bare.parse::<std::net::IpAddr>().is_ok() {
        return Err(Refusal::IpLiteral);
    }
    if name.contains(':') {
        return Err(Refusal::Port);
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-' || *c == '.'))
    {
        return Err(Refusal::Character(c));
    }
    if name.len() > 253 || unit(&name).len() > UNIT_NAME_MAX {
        return Err(Refusal::TooLong);
    }
    let labels: Vec<&str> = name.split('.').collect();
    if labels.iter().any(|l| l.is_empty()) {
        return Err(Refusal::EmptyLabel);
    }
    if labels.len() < 2 {
        return Err(if name == "localhost" {
            Refusal::Localhost
        } else {
            Refusal::OneLabel
        });
    }
    for l in &labels {
        if l.len() > 63 {
            return Err(Refusal::LabelTooLong((*l).to_string()));
        }
        if l.starts_with('-') || l.ends_with('-') {
            return Err(Refusal::Hyphen((*l).to_string()));
        }
    }
    let last = labels[labels.len() - 1];
    if last.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Refusal::IpLiteral);
    }
    if last == "localhost" {
        return Err(Refusal::Localhost);
    }
    if last == "local" {
        return Err(Refusal::DotLocal);
    }
    Ok(ServerName(name))
}

/// A string escaped as `systemd-escape STRING` does (systemd's `unit_name_escape`): `/`
/// becomes `-`; ASCII letters, digits, `:`, `_` and `.` stay, except a leading `.`; every other
/// byte becomes `\xNN`. For a DNS name that is: `-` becomes `\x2d`.
pub fn systemd_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for (i, b) in s.bytes().enumerate() {
        match b {
            b'/' => out.push('-'),
            b'.' if i == 0 => out.push_str("\\x2e"),
            b if b.is_ascii_alphanumeric() || b == b':' || b == b'_' || b == b'.' => {
                out.push(char::from(b))
            }
            b => out.push_str(&format!("\\x{b:02x}")),
        }
    }
    out
}

/// The unit that makes `name` the server's name: `hearth-name@<escaped>.service`.
pub fn unit(name: &str) -> String {
    format!("{UNIT_PREFIX}{}.service", systemd_escape(name))
}

/// The chosen name, if the file holds one (its first line, trimmed); `None` when the file is
/// absent or empty. An unreadable file counts as "not chosen" and is logged.
pub fn chosen(path: &Path) -> Option<String> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let line = text.lines().next().unwrap_or("").trim();
            (!line.is_empty()).then(|| line.to_string())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => {
            tracing::warn!(file = %path.display(), "reading the server name: {e}");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every refusal reason, and names that pass.
    #[test]
    fn the_syntax_of_a_name() {
        let long_label = "a".repeat(64);
        let long_label_name = format!("{long_label}.org");
        let ok63 = format!("{}.example.org", "a".repeat(63));
        let too_long = format!("{}.org", ["abcdefghij"; 25].join("."));
        // 235 characters left for the escaped instance: hyphens cost four.
        let unit_too_long = format!("{}.org", ["a-b-c-d-e"; 20].join("."));
        assert!(unit_too_long.len() <= 253);
        let cases: Vec<(&str, Result<&str, Refusal>)> = vec![
            ("family.example.org", Ok("family.example.org")),
            (
                "  Familie-Mueller.Example.ORG ",
                Ok("familie-mueller.example.org"),
            ),
            ("a.b", Ok("a.b")),
            ("1und1.de", Ok("1und1.de")),
            ("xn--mller-kva.de", Ok("xn--mller-kva.de")),
            (ok63.as_str(), Ok(ok63.as_str())),
            ("", Err(Refusal::Empty)),
            ("   ", Err(Refusal::Empty)),
            ("example.org:8448", Err(Refusal::Port)),
            ("192.0.2.1", Err(Refusal::IpLiteral)),
            ("[::1]", Err(Refusal::IpLiteral)),
            ("2001:db8::1", Err(Refusal::IpLiteral)),
            ("10.0.0.300", Err(Refusal::IpLiteral)),
            ("localhost", Err(Refusal::Localhost)),
            ("box.localhost", Err(Refusal::Localhost)),
            ("hearth.local", Err(Refusal::DotLocal)),
            ("family_home.example.org", Err(Refusal::Character('_'))),
            ("müller.de", Err(Refusal::Character('ü'))),
            ("https://example.org", Err(Refusal::Port)),
            ("example.org/", Err(Refusal::Character('/'))),
            ("family", Err(Refusal::OneLabel)),
            ("a..b", Err(Refusal::EmptyLabel)),
            (".example.org", Err(Refusal::EmptyLabel)),
            ("example.org.", Err(Refusal::EmptyLabel)),
            (
                long_label_name.as_str(),
                Err(Refusal::LabelTooLong(long_label.clone())),
            ),
            (
                "-family.example.org",
                Err(Refusal::Hyphen("-family".into())),
            ),
            (
                "family.example-.org",
                Err(Refusal::Hyphen("example-".into())),
            ),
            (too_long.as_str(), Err(Refusal::TooLong)),
            (unit_too_long.as_str(), Err(Refusal::TooLong)),
        ];
        for (input, want) in cases {
            let got = parse(input);
            match want {
                Ok(name) => assert_eq!(got.map(|n| n.0), Ok(name.to_string()), "{input:?}"),
                Err(r) => assert_eq!(got, Err(r), "{input:?}"),
            }
        }
    }

    /// The escape function against `systemd-escape` itself (on this machine and in CI).
    #[test]
    fn escaped_like_systemd_escape() {
        let inputs = [
            "family.example.org",
            "familie-mueller.example.org",
            "a-b--c.xn--mller-kva.de",
            ".leading.dot",
            "path/with/slash",
            "back\\slash",
            "space and ümlaut",
            "colon:under_score",
            "0digit.first",
        ];
        for input in inputs {
            let out = std::process::Command::new("systemd-escape")
                .arg("--")
                .arg(input)
                .output()
                .expect("systemd-escape (package systemd) is needed for this test");
            assert!(out.status.success(), "{input}: {out:?}");
            let want = String::from_utf8(out.stdout).unwrap();
            assert_eq!(
                systemd_escape(input),
                want.trim_end_matches('\n'),
                "{input:?}"
            );
        }
        assert_eq!(
            unit("familie-mueller.example.org"),
            "hearth-name@familie\\x2dmueller.example.org.service"
        );
    }

    #[test]
    fn the_chosen_name_is_the_files_first_line() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("server_name");
        assert_eq!(chosen(&f), None);
        std::fs::write(&f, "\n").unwrap();
        assert_eq!(chosen(&f), None);
        std::fs::write(&f, "family.example.org\n").unwrap();
        assert_eq!(chosen(&f).as_deref(), Some("family.example.org"));
    }

    /// The polkit rule lets user `hearth` start exactly the units `unit` makes of valid names,
    /// and `hearth-acme.service`; nothing else new. Run with node (the rule is JavaScript).
    #[test]
    fn polkit_allows_starting_the_name_unit_of_valid_names_only() {
        let rules = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../overlays/etc/polkit-1/rules.d/50-hearth-supervisor.rules"
        );
        let script = r#"
            const fs = require("fs");
            let rule;
            const polkit = { Result: { YES: "yes", NOT_HANDLED: "no" }, addRule: (f) => { rule = f; } };
            eval(fs.readFileSync(process.argv[1], "utf8"));
            const cases = JSON.parse(process.argv[2]);
            console.log(JSON.stringify(cases.map(([user, unit, verb]) => rule(
                { id: "org.freedesktop.systemd1.manage-units", lookup: (k) => ({ unit, verb })[k] },
                { user }))));
        "#;
        let mut cases: Vec<(&str, String, &str, &str)> = Vec::new();
        for name in [
            "family.example.org",
            "familie-mueller.example.org",
            "xn--mller-kva.de",
            "a.b",
            "0.example.org",
        ] {
            let n = parse(name).unwrap();
            cases.push(("hearth", unit(n.as_str()), "start", "yes"));
            cases.push(("hearth", unit(n.as_str()), "stop", "no"));
            cases.push(("hearth", unit(n.as_str()), "restart", "no"));
            cases.push(("alice", unit(n.as_str()), "start", "no"));
        }
        for (unit, verb, want) in [
            ("hearth-acme.service", "start", "yes"),
            ("hearth-acme.service", "restart", "no"),
            ("hearth-acme.service", "stop", "no"),
            ("matrix-synapse.service", "restart", "yes"),
            ("hearth-name@family.service", "start", "no"),
            ("hearth-name@.example.org.service", "start", "no"),
            ("hearth-name@family..org.service", "start", "no"),
            ("hearth-name@\\x2dfamily.example.org.service", "start", "no"),
            ("hearth-name@family\\x2d.example.org.service", "start", "no"),
            ("hearth-name@Family.example.org.service", "start", "no"),
            ("hearth-name@a\\x2fb.example.org.service", "start", "no"),
            ("hearth-name@a-b.example.org.service", "start", "no"),
            ("hearth-name@family.example.org.service.d", "start", "no"),
            ("hearth-name@family.example.org.timer", "start", "no"),
            ("hearth-firstboot.service", "start", "no"),
            ("hearth-backup.service", "start", "yes"),
            ("hearth-backup.service", "stop", "no"),
            ("hearth-backup.service", "kill", "no"),
            ("hearth-backup.timer", "stop", "no"),
            ("hearth-backup-setup.service", "start", "yes"),
            ("hearth-backup-setup.service", "restart", "no"),
            // The setup page's restore: start only.
            ("hearth-restore.service", "start", "yes"),
            ("hearth-restore.service", "stop", "no"),
            ("hearth-restore.service", "restart", "no"),
            ("hearth-restore.service", "kill", "no"),
            ("hearth-restore.service", "reset-failed", "no"),
            ("hearth-restore.timer", "start", "no"),
            ("hearth-restore@x.service", "start", "no"),
            ("ssh.service", "start", "no"),
            // Updates: start only.
            ("hearth-update.service", "start", "yes"),
            ("hearth-update.service", "stop", "no"),
            ("hearth-update-commit.service", "start", "yes"),
            ("hearth-update-commit.service", "restart", "no"),
            ("hearth-update-rollback.service", "start", "yes"),
            ("hearth-update-rollback.service", "kill", "no"),
            ("hearth-update-boot.service", "start", "no"),
            ("hearth-update.timer", "stop", "no"),
        ] {
            cases.push(("hearth", unit.to_string(), verb, want));
        }
        for user in ["alice", "root"] {
            for unit in [
                "hearth-restore.service",
                "hearth-backup.service",
                "hearth-update-rollback.service",
            ] {
                cases.push((user, unit.to_string(), "start", "no"));
            }
        }
        let input: Vec<(&str, &str, &str)> = cases
            .iter()
            .map(|(u, n, v, _)| (*u, n.as_str(), *v))
            .collect();
        let out = std::process::Command::new("node")
            .args(["-e", script, rules, &serde_json::to_string(&input).unwrap()])
            .output()
            .expect("node (Debian package nodejs) is needed to run the polkit rule");
        assert!(out.status.success(), "{out:?}");
        let got: Vec<String> = serde_json::from_slice(&out.stdout).unwrap();
        for ((user, unit, verb, want), got) in cases.iter().zip(&got) {
            assert_eq!(got, want, "{user} {verb} {unit}");
        }
    }
}
