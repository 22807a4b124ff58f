//! ARCHITECTURE.md's invariants, as a test (the "tidy" test of rust-analyzer): a rule only a
//! document states drifts; this one fails, naming the file, the line and the rule.
//!
//! Pure file scanning with std only, so it builds and runs in a moment without Synapse, which
//! is why it is a test binary of its own rather than a module of `tests/it` (STYLE asks for one
//! integration-test binary; that one needs the Synapse venv and links everything).
//!
//! How a file is read: a small lexer splits it into code, comments and string literals, so a
//! rule matches code only (a comment that mentions rppal is fine), and the SQL rule sees each
//! literal whole (raw strings over many lines included). Imports are `use` trees and the paths
//! written in code (`crate::…`, `super::…`, `hearth::…` in the binaries), resolved to the
//! module they name.
//!
//! Test code: a module declared `#[cfg(test)]` at the file's top level (rustfmt puts it at
//! column 0). Inline, it runs from that attribute to the `}` at column 0 that closes it; out
//! of line (`#[cfg(test)] mod tests;`), it is that module's whole file and anything below it.
//! Test code may read the wall clock, write SQL and import across the layers (tests set up
//! and inspect the database, and one module's test may drive another); the rules on zbus,
//! rppal and reqwest hold for it too. `supervisor/tests/` is not scanned, except for the rule
//! on reqwest clients (a client made without `http_client::builder` panics wherever it is).

#![allow(clippy::unwrap_used)] // a test crate: a panic is a failed test

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};

// ---------------------------------------------------------------------------------------------
// The rules.

/// Only this file speaks D-Bus.
const ZBUS_ALLOWED: &[&str] = &["health/systemd.rs"];

/// The I2C bus and the LED's pin: the only code that knows the Pi's peripherals.
const RPPAL_ALLOWED: &[&str] = &["power/i2c.rs", "led/gpio.rs"];

/// The files that talk HTTP to somebody, each with why. Synapse's HTTP API is spoken from
/// `synapse_api.rs` alone: the probe, the directory, sign-in and the account calls ask it.
const REQWEST_ALLOWED: &[(&str, &str)] = &[
    (
        "http_client.rs",
        "the one client builder (TLS provider installed once)",
    ),
    (
        "synapse_api.rs",
        "Synapse's HTTP API, for every module that asks Synapse something",
    ),
    (
        "name/check.rs",
        "asks https://<name>/.well-known whether a name is taken",
    ),
    (
        "report/send.rs",
        "posts reports and fetches tokens at the cooperative",
    ),
    (
        "tunnel.rs",
        "enrols at the cooperative and asks its outside-in check",
    ),
    ("bin/hearth-bench.rs", "make bench's HTTP load"),
    (
        "update/mod.rs",
        "fetches a release's manifest and payloads from the cooperative",
    ),
];

/// Where reqwest clients are built: everywhere else takes `http_client::builder()`.
const CLIENT_BUILDER_ALLOWED: &[&str] = &["http_client.rs"];
const CLIENT_CONSTRUCTORS: &[&str] = &["Client::builder(", "Client::new(", "ClientBuilder::new("];

/// Modules that write SQL, each to its own tables (a directory ends in `/`).
const SQL_ALLOWED: &[(&str, &str)] = &[
    (
        "storage/",
        "power, accounting inputs, statements; every table's schema",
    ),
    ("audit/", "appends to audit_log, reads and verifies it"),
    ("accounting/directory/", "the member directory's tables"),
    ("invite/", "the invitation table"),
    (
        "backup/",
        "a restore empties Synapse's one-time keys and makes its database afresh",
    ),
    (
        "report/outbox.rs",
        "the reports' outbox, schedule, tokens and opt-in",
    ),
    (
        "budget/",
        "budgets, top-ups, the costs, the budgets' notices and throttles",
    ),
];
const SQL_WORDS: &[&str] = &[
    "SELECT", "INSERT", "UPDATE", "DELETE", "CREATE", "PRAGMA", "ALTER", "DROP", "WITH", "BEGIN",
];

/// The only file that reads the wall clock (test code may too).
const CLOCK_ALLOWED: &[&str] = &["clock.rs"];
const CLOCK_READS: &[&str] = &[
    "SystemTime::now",
    "Utc::now",
    "Local::now",
    "OffsetDateTime::now_utc",
    "OffsetDateTime::now_local",
];

/// `app` is the owner: it imports everything, and nothing but the binary's `main` imports it.
const APP_IMPORTERS_ALLOWED: &[&str] = &["app/", "main.rs"];

/// storage/ sits below the modules that write the database: from the crate it imports only
/// itself, units and the plain types of what it stores, from modules that do not import it.
const STORAGE_MAY_IMPORT: &[&str] = &[
    "storage",
    "units",
    "meter::buckets",
    "meter::integrator",
    "meter::live",
    "accounting::accesslog",
    "accounting::model",
];
/// Modules storage imports from (or that are below it): none of them imports storage. (The
/// access-log parser is a crate of its own, `hearth-accesslog`: it cannot.)
const BELOW_STORAGE: &[&str] = &["meter", "accounting::model", "units"];

// ---------------------------------------------------------------------------------------------
// The test.

#[test]
fn the_architecture_holds() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let src = load_tree(&root.join("src"));
    assert!(
        src.iter().any(|f| f.rel == "health/systemd.rs") && src.len() > 50,
        "the scanner found too few files in {}",
        root.join("src").display()
    );
    let tests = load_tree(&root.join("tests"));
    let found: Vec<String> = (check(&src).iter())
        .map(|v| format!("supervisor/src/{v}"))
        .chain(
            check_client_builders(&tests, &[])
                .iter()
                .map(|v| format!("supervisor/tests/{v}")),
        )
        .chain(
            stale_allowances(&src)
                .into_iter()
                .map(|s| format!("supervisor/src/{s}")),
        )
        .collect();
    assert!(
        found.is_empty(),
        "ARCHITECTURE.md's invariants are broken (the rules are at the top of {}):\n{}",
        file!(),
        found.join("\n")
    );
}

#[derive(Debug, PartialEq)]
struct Violation {
    file: String,
    line: usize,
    rule: &'static str,
    what: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}: {}: {}",
            self.file, self.line, self.rule, self.what
        )
    }
}

fn check(files: &[Source]) -> Vec<Violation> {
    let mut out = Vec::new();
    let names = |list: &[(&'static str, &'static str)]| list.iter().map(|(f, _)| *f).collect();
    let reqwest: Vec<&str> = names(REQWEST_ALLOWED);
    let sql: Vec<&str> = names(SQL_ALLOWED);
    for f in files {
        let mut v = |line: usize, rule: &'static str, what: String| {
            out.push(Violation {
                file: f.rel.clone(),
                line,
                rule,
                what,
            })
        };
        for (i, l) in f.lines.iter().enumerate() {
            let n = i + 1;
            for (krate, allowed, rule) in [
                (
                    "zbus",
                    ZBUS_ALLOWED,
                    "only health/systemd.rs speaks D-Bus (zbus)",
                ),
                (
                    "rppal",
                    RPPAL_ALLOWED,
                    "only power/i2c.rs and led/gpio.rs know rppal",
                ),
                (
                    "reqwest",
                    &reqwest[..],
                    "reqwest only in the files REQWEST_ALLOWED names",
                ),
            ] {
                if has_word(&l.code, krate) && !allows(allowed, &f.rel) {
                    v(n, rule, format!("uses {krate}"));
                }
            }
            if !l.test && !allows(CLOCK_ALLOWED, &f.rel) {
                for read in CLOCK_READS {
                    if has_path(&l.code, read) {
                        v(n, "only clock.rs reads the wall clock", read.to_string());
                    }
                }
            }
        }
        for s in &f.strings {
            if !s.test && !allows(&sql, &f.rel) {
                if let Some(word) = sql_start(&s.text) {
                    v(
                        s.line,
                        "SQL only in the modules SQL_ALLOWED names",
                        format!("{word} …"),
                    );
                }
            }
        }
        for (line, path) in f.imports.iter().filter(|(l, _)| !f.lines[l - 1].test) {
            let first = path.first().map(String::as_str);
            if first == Some("app") && !allows(APP_IMPORTERS_ALLOWED, &f.rel) {
                v(*line, "nothing but main.rs imports app", path.join("::"));
            }
            if f.rel.starts_with("storage/") && !STORAGE_MAY_IMPORT.iter().any(|m| under(path, m)) {
                v(
                    *line,
                    "storage/ imports only STORAGE_MAY_IMPORT",
                    path.join("::"),
                );
            }
            if under(path, "storage") && BELOW_STORAGE.iter().any(|m| under(&f.module, m)) {
                v(
                    *line,
                    "what storage/ imports does not import storage",
                    path.join("::"),
                );
            }
        }
    }
    out.extend(check_client_builders(files, CLIENT_BUILDER_ALLOWED));
    out
}

fn check_client_builders(files: &[Source], allowed: &[&str]) -> Vec<Violation> {
    let mut out = Vec::new();
    for f in files {
        if !allows(allowed, &f.rel) {
            let uses_reqwest = f.lines.iter().any(|l| has_word(&l.code, "reqwest"));
            for (i, l) in f.lines.iter().enumerate() {
                for c in CLIENT_CONSTRUCTORS {
                    if uses_reqwest && has_path(&l.code, c) {
                        out.push(Violation {
                            file: f.rel.clone(),
                            line: i + 1,
                            rule: "every reqwest client comes from http_client::builder()",
                            what: c.trim_end_matches('(').to_string(),
                        });
                    }
                }
            }
        }
    }
    out
}

/// An allowance nothing uses any more is a rule that says more than is true: each allowed
/// file (or directory) must still do what it is allowed to.
fn stale_allowances(files: &[Source]) -> Vec<String> {
    let mut out = Vec::new();
    let in_code = |allowed: &str, hit: &dyn Fn(&str) -> bool| {
        files
            .iter()
            .filter(|f| allows(&[allowed], &f.rel))
            .any(|f| f.lines.iter().any(|l| hit(&l.code)))
    };
    let mut stale = |allowed: &str, what: &str, used: bool| {
        if !used {
            out.push(format!(
                "{allowed}: allowed to {what}, but does not: drop the allowance"
            ));
        }
    };
    for (krate, allowed) in [
        ("zbus", ZBUS_ALLOWED.to_vec()),
        ("rppal", RPPAL_ALLOWED.to_vec()),
        ("reqwest", REQWEST_ALLOWED.iter().map(|(f, _)| *f).collect()),
    ] {
        for a in allowed {
            stale(
                a,
                &format!("use {krate}"),
                in_code(a, &|c| has_word(c, krate)),
            );
        }
    }
    for a in CLIENT_BUILDER_ALLOWED {
        let hit = |c: &str| CLIENT_CONSTRUCTORS.iter().any(|k| has_path(c, k));
        stale(a, "build reqwest clients", in_code(a, &hit));
    }
    for a in CLOCK_ALLOWED {
        let hit = |c: &str| CLOCK_READS.iter().any(|k| has_path(c, k));
        stale(a, "read the wall clock", in_code(a, &hit));
    }
    for (a, _) in SQL_ALLOWED {
        let used = files.iter().filter(|f| allows(&[a], &f.rel)).any(|f| {
            f.strings
                .iter()
                .any(|s| !s.test && sql_start(&s.text).is_some())
        });
        stale(a, "hold SQL", used);
    }
    out
}

/// `rel` is one of `allowed`: a file, or a directory ending in `/`.
fn allows(allowed: &[&str], rel: &str) -> bool {
    allowed
        .iter()
        .any(|a| rel == *a || (a.ends_with('/') && rel.starts_with(a)))
}

/// The module path `path` is `module` or inside it (`"meter::live"` is under `"meter"`).
fn under(path: &[String], module: &str) -> bool {
    let m: Vec<&str> = module.split("::").collect();
    path.len() >= m.len() && path.iter().zip(&m).all(|(a, b)| a == b)
}

fn is_ident(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// `word` stands alone in `code` (not part of a longer identifier).
fn has_word(code: &str, word: &str) -> bool {
    code.match_indices(word).any(|(i, _)| {
        let before = code[..i].chars().next_back();
        let after = code[i + word.len()..].chars().next();
        !before.is_some_and(is_ident) && !after.is_some_and(is_ident)
    })
}

/// `path` (like `Utc::now`) starts a path segment in `code`: `chrono::Utc::now` matches,
/// `MyUtc::now` does not.
fn has_path(code: &str, path: &str) -> bool {
    code.match_indices(path)
        .any(|(i, _)| !code[..i].chars().next_back().is_some_and(is_ident))
}

/// The SQL keyword a string literal begins with, if it does.
/// The SQL word a literal starts with, when more follows it: a word alone is not a statement
/// (`"DELETE"` is also an HTTP method).
fn sql_start(text: &str) -> Option<&'static str> {
    let text = text.trim_start();
    let first: String = text
        .chars()
        .take_while(|c| c.is_ascii_alphabetic())
        .collect();
    if text[first.len()..].trim().is_empty() {
        return None;
    }
    SQL_WORDS.iter().copied().find(|w| first == *w)
}

// ---------------------------------------------------------------------------------------------
// Reading the tree.

/// One source file: its lines' code (comments removed, string contents blanked), its string
/// literals, and the module paths it refers to.
struct Source {
    /// Relative to the scanned root, with `/`: `http/setup.rs`.
    rel: String,
    /// Its module path in the library (`["http", "setup"]`); empty for the crate roots.
    module: Vec<String>,
    lines: Vec<Line>,
    strings: Vec<Str>,
    /// `(line, absolute module path)` for every `use` and every `crate::`/`super::` path.
    imports: Vec<(usize, Vec<String>)>,
}

#[derive(Debug, Default)]
struct Line {
    code: String,
    test: bool,
}

#[derive(Debug)]
struct Str {
    line: usize,
    text: String,
    test: bool,
}

fn load_tree(dir: &Path) -> Vec<Source> {
    let mut paths = Vec::new();
    walk(dir, &mut paths);
    paths.sort();
    let mut files: Vec<Source> = paths
        .iter()
        .map(|p| {
            let rel = p
                .strip_prefix(dir)
                .unwrap()
                .to_string_lossy()
                .replace('\\', "/");
            let text = std::fs::read_to_string(p).unwrap();
            Source::parse(&rel, &text)
        })
        .collect();
    // Out-of-line test modules: `#[cfg(test)] mod tests;` in `a/b.rs` is `a/b/tests.rs` (or
    // `a/b/tests/mod.rs`), and everything under `a/b/tests/`.
    let mut test_prefixes = BTreeSet::new();
    for f in &files {
        for name in test_modules_declared(&f.lines) {
            let dir = module_dir(&f.rel);
            test_prefixes.insert(format!("{dir}{name}.rs"));
            test_prefixes.insert(format!("{dir}{name}/"));
        }
    }
    for f in &mut files {
        if test_prefixes
            .iter()
            .any(|p| f.rel == *p || (p.ends_with('/') && f.rel.starts_with(p)))
        {
            f.lines.iter_mut().for_each(|l| l.test = true);
            f.strings.iter_mut().for_each(|s| s.test = true);
        }
    }
    files
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            walk(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The directory a file's child modules live in: `a/mod.rs` → `a/`, `a/b.rs` → `a/b/`.
fn module_dir(rel: &str) -> String {
    let (dir, file) = rel.rsplit_once('/').map_or(("", rel), |(d, f)| (d, f));
    let dir = if dir.is_empty() {
        String::new()
    } else {
        format!("{dir}/")
    };
    match file {
        "mod.rs" | "lib.rs" | "main.rs" => dir,
        f => format!("{dir}{}/", f.trim_end_matches(".rs")),
    }
}

/// The library's module path of a file: `a/b.rs` and `a/b/mod.rs` → `["a", "b"]`.
fn module_path(rel: &str) -> Vec<String> {
    let stem = rel.trim_end_matches(".rs");
    let mut parts: Vec<String> = stem.split('/').map(String::from).collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        parts.pop();
    }
    parts
}

/// The names of `#[cfg(test)] mod NAME;` at the top level.
fn test_modules_declared(lines: &[Line]) -> Vec<String> {
    (0..lines.len())
        .filter_map(|i| test_mod_at(lines, i))
        .filter(|(_, inline, _)| !inline)
        .map(|(name, _, _)| name)
        .collect()
}

/// At line `i`, `#[cfg(test)]` at column 0, then (past other attributes and blank lines) a
/// module: its name, whether it is inline, and the line that declares it.
fn test_mod_at(lines: &[Line], i: usize) -> Option<(String, bool, usize)> {
    if lines[i].code.trim_end() != "#[cfg(test)]" {
        return None;
    }
    let j = (i + 1..lines.len()).find(|&j| {
        let code = lines[j].code.trim();
        !code.is_empty() && !code.starts_with("#[")
    })?;
    mod_decl(&lines[j].code).map(|(name, inline)| (name, inline, j))
}

/// `mod NAME {` or `pub(crate) mod NAME;` at column 0: the name, and whether it is inline.
fn mod_decl(code: &str) -> Option<(String, bool)> {
    let rest = code
        .strip_prefix("pub ")
        .or_else(|| code.strip_prefix("pub(crate) "));
    let rest = rest.unwrap_or(code).strip_prefix("mod ")?;
    let name: String = rest.chars().take_while(|c| is_ident(*c)).collect();
    let after = rest[name.len()..].trim();
    match after {
        "{" => Some((name, true)),
        ";" => Some((name, false)),
        _ => None,
    }
}

impl Source {
    fn parse(rel: &str, text: &str) -> Source {
        let (mut lines, mut strings) = lex(text);
        // Inline test modules: from `#[cfg(test)]` + `mod NAME {` at column 0 to the `}` at
        // column 0 that closes it.
        let mut i = 0;
        while i < lines.len() {
            if let Some((_, true, decl)) = test_mod_at(&lines, i) {
                let start = i;
                let end = (decl + 1..lines.len())
                    .find(|&j| lines[j].code.trim_end() == "}")
                    .unwrap_or_else(|| {
                        panic!(
                            "{rel}:{}: a #[cfg(test)] module without its closing `}}` at column 0",
                            i + 1
                        )
                    });
                lines[start..=end].iter_mut().for_each(|l| l.test = true);
                for s in &mut strings {
                    if (start + 1..=end + 1).contains(&s.line) {
                        s.test = true;
                    }
                }
                i = end;
            }
            i += 1;
        }
        let module = module_path(rel);
        let imports = imports(rel, &module, &lines);
        Source {
            rel: rel.to_string(),
            module,
            lines,
            strings,
            imports,
        }
    }
}

/// Splits Rust source into per-line code (comments dropped, string and char literals blanked
/// to `""`/`' '`) and the string literals with the line each starts on.
fn lex(text: &str) -> (Vec<Line>, Vec<Str>) {
    let c: Vec<char> = text.chars().collect();
    let mut lines = vec![Line::default()];
    let mut strings = Vec::new();
    let mut i = 0;
    let newline = |lines: &mut Vec<Line>| lines.push(Line::default());
    while i < c.len() {
        let prev_ident = i > 0 && is_ident(c[i - 1]);
        match c[i] {
            '\n' => {
                newline(&mut lines);
                i += 1;
            }
            '/' if c.get(i + 1) == Some(&'/') => {
                while i < c.len() && c[i] != '\n' {
                    i += 1;
                }
            }
            '/' if c.get(i + 1) == Some(&'*') => {
                let mut depth = 0;
                while i < c.len() {
                    if c[i] == '/' && c.get(i + 1) == Some(&'*') {
                        depth += 1;
                        i += 2;
                    } else if c[i] == '*' && c.get(i + 1) == Some(&'/') {
                        depth -= 1;
                        i += 2;
                        if depth == 0 {
                            break;
                        }
                    } else {
                        if c[i] == '\n' {
                            newline(&mut lines);
                        }
                        i += 1;
                    }
                }
            }
            // Raw strings: r"…", r#"…"#, br#"…"# (not the raw identifier r#type).
            'r' | 'b' if !prev_ident && raw_string_at(&c, i).is_some() => {
                let (hashes, body) = raw_string_at(&c, i).unwrap();
                let line = lines.len();
                let close: Vec<char> = std::iter::once('"')
                    .chain("#".repeat(hashes).chars())
                    .collect();
                let mut j = body;
                while j < c.len() && !c[j..].starts_with(&close) {
                    j += 1;
                }
                let s: String = c[body..j.min(c.len())].iter().collect();
                for _ in s.matches('\n') {
                    newline(&mut lines);
                }
                strings.push(Str {
                    line,
                    text: s,
                    test: false,
                });
                lines.last_mut().unwrap().code.push_str("\"\"");
                i = j + close.len();
            }
            '"' => {
                let line = lines.len();
                let mut s = String::new();
                i += 1;
                while i < c.len() && c[i] != '"' {
                    if c[i] == '\\' {
                        s.push(c[i]);
                        i += 1;
                    }
                    if let Some(&ch) = c.get(i) {
                        if ch == '\n' {
                            newline(&mut lines);
                        }
                        s.push(ch);
                    }
                    i += 1;
                }
                strings.push(Str {
                    line,
                    text: s,
                    test: false,
                });
                lines.last_mut().unwrap().code.push_str("\"\"");
                i += 1;
            }
            // A char literal ('x', '\n', '\''), else a lifetime or label ('a).
            '\'' => {
                let end = if c.get(i + 1) == Some(&'\\') {
                    (i + 3..c.len()).find(|&j| c[j] == '\'')
                } else if c.get(i + 2) == Some(&'\'') {
                    Some(i + 2)
                } else {
                    None
                };
                match end {
                    Some(e) => {
                        lines.last_mut().unwrap().code.push_str("' '");
                        i = e + 1;
                    }
                    None => {
                        lines.last_mut().unwrap().code.push('\'');
                        i += 1;
                    }
                }
            }
            ch => {
                lines.last_mut().unwrap().code.push(ch);
                i += 1;
            }
        }
    }
    (lines, strings)
}

/// At `i`, `r"`, `r#"`, `br"`, `br##"`…: the number of `#`s and where the body starts.
fn raw_string_at(c: &[char], i: usize) -> Option<(usize, usize)> {
    let mut j = i;
    if c[j] == 'b' {
        j += 1;
    }
    if c.get(j) != Some(&'r') {
        return None;
    }
    j += 1;
    let hashes = c[j..].iter().take_while(|&&h| h == '#').count();
    (c.get(j + hashes) == Some(&'"')).then_some((hashes, j + hashes + 1))
}

/// Every module path a file refers to, absolute in the library: `use` trees (joined over
/// lines up to their `;`) and `crate::`/`super::`/`self::` paths in code; in the binaries
/// (`main.rs`, `bin/`), `hearth::` is the library.
fn imports(rel: &str, module: &[String], lines: &[Line]) -> Vec<(usize, Vec<String>)> {
    let binary = rel == "main.rs" || rel.starts_with("bin/");
    let resolve = |segments: Vec<String>| -> Option<Vec<String>> {
        let mut segs = segments.into_iter().peekable();
        let mut base: Vec<String> = match segs.peek().map(String::as_str) {
            Some("crate") if !binary => Vec::new(),
            Some("hearth") if binary => Vec::new(),
            Some("self") => module.to_vec(),
            Some("super") => module.to_vec(),
            _ => return None,
        };
        if segs.peek().map(String::as_str) == Some("super") {
            while segs.peek().map(String::as_str) == Some("super") {
                segs.next();
                base.pop();
            }
        } else {
            segs.next();
        }
        base.extend(segs.filter(|s| s != "self" && s != "*"));
        Some(base)
    };
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let code = lines[i].code.trim_start();
        let code = code
            .strip_prefix("pub ")
            .or_else(|| code.strip_prefix("pub(crate) "))
            .or_else(|| code.strip_prefix("pub(super) "))
            .unwrap_or(code);
        if let Some(rest) = code.strip_prefix("use ") {
            let start = i;
            let mut tree = rest.to_string();
            while !tree.contains(';') && i + 1 < lines.len() {
                i += 1;
                tree.push_str(&lines[i].code);
            }
            let tree = tree.split(';').next().unwrap_or("");
            for path in expand_use(tree) {
                if let Some(p) = resolve(path.split("::").map(String::from).collect()) {
                    out.push((start + 1, p));
                }
            }
        } else {
            for (k, _) in lines[i].code.match_indices("::") {
                let head_start = lines[i].code[..k]
                    .rfind(|ch: char| !is_ident(ch))
                    .map_or(0, |p| p + 1);
                let head = &lines[i].code[head_start..k];
                let prev = lines[i].code[..head_start].chars().next_back();
                if matches!(head, "crate" | "super" | "self" | "hearth") && prev != Some(':') {
                    let path: Vec<String> = lines[i].code[head_start..]
                        .split("::")
                        .map(|s| s.chars().take_while(|c| is_ident(*c)).collect::<String>())
                        .take_while(|s| !s.is_empty())
                        .collect();
                    if let Some(p) = resolve(path) {
                        out.push((i + 1, p));
                    }
                }
            }
        }
        i += 1;
    }
    out
}

/// `a::{b, c::{d, e as f}}` → `a::b`, `a::c::d`, `a::c::e`.
fn expand_use(tree: &str) -> Vec<String> {
    let tree = tree.trim();
    let Some(open) = tree.find('{') else {
        let path = tree.split(" as ").next().unwrap_or(tree).trim();
        return vec![path.to_string()];
    };
    let prefix = tree[..open].trim();
    let inner = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
    let mut parts = Vec::new();
    let (mut depth, mut from) = (0, 0);
    for (k, ch) in inner.char_indices() {
        match ch {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&inner[from..k]);
                from = k + 1;
            }
            _ => {}
        }
    }
    parts.push(&inner[from..]);
    parts
        .into_iter()
        .filter(|p| !p.trim().is_empty())
        .flat_map(expand_use)
        .map(|p| format!("{prefix}{p}"))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// The scanner, tested: every rule fires on a small snippet, so the check cannot pass silently.

fn check_one(rel: &str, text: &str) -> Vec<Violation> {
    check(&[Source::parse(rel, text)])
}

fn rules_of(found: &[Violation]) -> Vec<(usize, &'static str)> {
    found.iter().map(|v| (v.line, v.rule)).collect()
}

#[test]
fn each_rule_fires() {
    let cases: &[(&str, &str, &str)] = &[
        ("health/monitor.rs", "use zbus::Connection;", "zbus"),
        (
            "power/hwmon.rs",
            "let bus = rppal::i2c::I2c::new();",
            "rppal",
        ),
        ("led/mod.rs", "use rppal::gpio::Gpio;", "rppal"),
        ("http/pages.rs", "let r = reqwest::get(url);", "reqwest"),
        (
            "report/send.rs",
            "let c = reqwest::Client::builder();",
            "http_client::builder",
        ),
        (
            "tunnel.rs",
            "use reqwest::Client;\nlet c = Client::new();",
            "http_client::builder",
        ),
        ("http/pages.rs", "let t = SystemTime::now();", "wall clock"),
        (
            "accountant/cpu.rs",
            "let t = chrono::Utc::now();",
            "wall clock",
        ),
        (
            "http/setup.rs",
            "Frame::new(lang, Page::Setup, Local::now())",
            "wall clock",
        ),
        (
            "report/gather.rs",
            "conn.execute(\"INSERT INTO x VALUES (1)\", [])",
            "SQL",
        ),
        (
            "accountant/close.rs",
            "let q = \"  select 1\";\nlet r = \"SELECT 1\";",
            "SQL",
        ),
        (
            "http/mod.rs",
            "conn.execute_batch(r#\"\n    CREATE TABLE t (a);\n\"#)",
            "SQL",
        ),
        ("meter/live.rs", "let s = r##\"PRAGMA x\"##;", "SQL"),
        (
            "accountant/journal.rs",
            "use crate::app::wall_ms_now;",
            "app",
        ),
        ("http/mod.rs", "let n = crate::app::wall_ms_now();", "app"),
        (
            "accountant/mod.rs",
            "use crate::{\n    app,\n    units::Watts,\n};",
            "app",
        ),
        (
            "storage/mod.rs",
            "M::up(crate::audit::SCHEMA),",
            "storage/ imports",
        ),
        (
            "storage/mod.rs",
            "use crate::accounting::directory::SCHEMA;",
            "storage/ imports",
        ),
        (
            "storage/mod.rs",
            "use super::super::http::Web;",
            "storage/ imports",
        ),
        (
            "meter/live.rs",
            "use crate::storage::EnergySums;",
            "does not import storage",
        ),
        (
            "accounting/model.rs",
            "use crate::{storage, units};",
            "does not import storage",
        ),
    ];
    for (rel, text, rule) in cases {
        let found = check_one(rel, text);
        assert!(
            found
                .iter()
                .any(|v| v.rule.contains(rule) || v.what.contains(rule)),
            "{rel}: {text:?} should break the {rule} rule, found {found:?}"
        );
    }
}

#[test]
fn what_the_rules_allow() {
    let cases: &[(&str, &str)] = &[
        ("health/systemd.rs", "use zbus::Connection;"),
        ("power/i2c.rs", "inner: Option<rppal::i2c::I2c>,"),
        ("led/gpio.rs", "let pin = rppal::gpio::Gpio::new()?;"),
        ("http_client.rs", "reqwest::Client::builder()"),
        ("name/check.rs", "let c = crate::http_client::builder().build();"),
        ("clock.rs", "Utc::now()"),
        ("storage/schema.rs", "const X: &str = r#\"\nCREATE TABLE t (a);\n\"#;"),
        ("audit/mod.rs", "conn.execute(\"INSERT INTO audit_log …\", [])"),
        ("report/outbox.rs", "const ROW: &str = \"SELECT month FROM report_outbox\";"),
        ("main.rs", "rt.block_on(hearth::app::run(config))?;"),
        ("storage/mod.rs", "use crate::meter::buckets::{Agg, Minutes};\nuse self::schema::X;"),
        ("meter/buckets.rs", "use crate::units::Watts;"),
        // Comments, doc comments and strings are not code.
        ("led/mod.rs", "//! backends: rppal GPIO\n/// uses `zbus::Connection`\nlet x = 1; // reqwest"),
        ("http/pages.rs", "let s = \"SystemTime::now and rppal::gpio\";"),
        ("http/pages.rs", "/* Utc::now()\n   /* nested */ SystemTime::now() */"),
        ("http/i18n.rs", "title: \"Select your language\",\ntext: \"with friends\","),
        // An HTTP method is not a statement.
        ("synapse_api.rs", "Method::Delete => \"DELETE\","),
        ("http/pages.rs", "fn f<'a>(x: &'a str) -> char { '\"' }\nlet t = Utc2::now();"),
        // Test code may read the clock and write SQL, inline or in its own file.
        (
            "report/gather.rs",
            "fn f() {}\n\n#[cfg(test)]\nmod tests {\n    fn t() {\n        let t = Utc::now();\n        c.execute(\"DELETE FROM x\", []);\n    }\n}",
        ),
    ];
    for (rel, text) in cases {
        assert_eq!(check_one(rel, text), vec![], "{rel}: {text:?}");
    }
}

#[test]
fn an_allowance_nothing_uses_is_stale() {
    let files = [
        Source::parse("health/systemd.rs", "use zbus::Connection;"),
        Source::parse("http_client.rs", "// reqwest::Client::builder()"),
        Source::parse("storage/mod.rs", "const Q: &str = \"SELECT 1\";"),
        Source::parse("audit/mod.rs", "const Q: &str = \"select 1\";"),
    ];
    let stale = stale_allowances(&files);
    assert!(
        !stale.iter().any(|s| s.starts_with("health/systemd.rs")),
        "{stale:#?}"
    );
    assert!(
        !stale.iter().any(|s| s.starts_with("storage/:")),
        "{stale:#?}"
    );
    for expected in [
        "power/i2c.rs: allowed to use rppal",
        "http_client.rs: allowed to use reqwest",
        "http_client.rs: allowed to build reqwest clients",
        "clock.rs: allowed to read the wall clock",
        "audit/: allowed to hold SQL",
    ] {
        assert!(
            stale.iter().any(|s| s.starts_with(expected)),
            "{expected}: {stale:#?}"
        );
    }
}

#[test]
fn test_code_ends_with_its_module() {
    let text =
        "#[cfg(test)]\npub(crate) mod tests {\n    let t = Utc::now();\n}\nfn f() { Utc::now() }";
    assert_eq!(
        rules_of(&check_one("name/reach.rs", text)),
        vec![(5, "only clock.rs reads the wall clock")]
    );
    // A test module's own file, and files below it.
    let dir = std::env::temp_dir().join(format!("hearth-arch-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("a/tests")).unwrap();
    std::fs::write(dir.join("a/mod.rs"), "#[cfg(test)]\nmod tests;\nmod b;\n").unwrap();
    std::fs::write(dir.join("a/tests.rs"), "let t = Utc::now();\n").unwrap();
    std::fs::write(dir.join("a/tests/more.rs"), "let t = Utc::now();\n").unwrap();
    std::fs::write(dir.join("a/b.rs"), "let t = Utc::now();\n").unwrap();
    let found = check(&load_tree(&dir));
    std::fs::remove_dir_all(&dir).unwrap();
    let files: Vec<&str> = found.iter().map(|v| v.file.as_str()).collect();
    assert_eq!(files, vec!["a/b.rs"]);
}

#[test]
fn violations_name_file_line_and_rule() {
    let found = check_one(
        "http/pages.rs",
        "fn a() {}\nlet t = std::time::SystemTime::now();",
    );
    assert_eq!(
        found.iter().map(ToString::to_string).collect::<Vec<_>>(),
        vec!["http/pages.rs:2: only clock.rs reads the wall clock: SystemTime::now"]
    );
    let found = check_one(
        "http/mod.rs",
        "let x = 1;\nlet q = r#\"\nSELECT 1\"#;\nlet y = 2;",
    );
    assert_eq!(
        rules_of(&found),
        vec![(2, "SQL only in the modules SQL_ALLOWED names")]
    );
}

#[test]
fn use_trees_expand() {
    assert_eq!(
        expand_use("crate::{app::{self, run},\n    units::Watts, storage}"),
        vec![
            "crate::app::self",
            "crate::app::run",
            "crate::units::Watts",
            "crate::storage"
        ]
    );
    assert_eq!(expand_use("super::x::Y as Z"), vec!["super::x::Y"]);
}
