//! `hearth-coop serve`'s configuration (TOML). Every field has the embedded default that
//! `make cooperative-run` uses on loopback; a real deployment sets its domain, addresses and
//! certificate (cooperative/README.md).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Boxes get `<label>.<domain>`; the zone's wildcard points at the edges.
    pub domain: String,
    /// The name table: a SQLite file's path (one edge; the embedded default), or a PostgreSQL
    /// URL (`postgres://…` or `postgresql://…`) that several edges share.
    pub database: PathBuf,
    pub edge: EdgeConfig,
    pub control: ControlConfig,
    pub check: CheckConfig,
    pub reports: ReportsConfig,
    pub site: SiteConfig,
    /// The backup store's accounts, when the cooperative runs one (`[store]`; none by default).
    pub store: Option<StoreConfig>,
}

/// `[store]`: the boxes' backup store, restic's REST server run with `--private-repos
/// --append-only --htpasswd-file <htpasswd>` (cooperative/README.md, "The backup store").
/// Each enrolment makes (or, for a name enrolled again, renews) the box's own account in it.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// The REST server's public base, `https://backup.coop.example/`: a box's repository is
    /// `rest:<url><label>/`.
    pub url: String,
    /// The REST server's htpasswd file, which hearth-coop keeps (one bcrypt line per box).
    pub htpasswd: PathBuf,
}

/// `[reports]`: the anonymous energy reports' collector (cooperative/README.md, "Reports").
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ReportsConfig {
    /// The blind-RSA key files (`hearth-coop reports keygen` makes one): the first signs new
    /// tokens, every one of them verifies. A missing file: the collector answers 503 and says so.
    pub key: Vec<PathBuf>,
    /// Blind signatures one box gets per key (a key is a period: a new key, new tokens).
    pub tokens_per_box: u32,
    /// Aggregates (and each of their cells) are published over at least this many reports.
    /// (The clamp of a report, with ε its noise's scale, is not a setting: it is
    /// `report_wire::Hardware::max_kwh`, the same for box and collector.)
    pub k: usize,
}

impl Default for ReportsConfig {
    fn default() -> Self {
        ReportsConfig {
            key: vec!["var/cooperative/report-key.pem".into()],
            tokens_per_box: 16,
            k: 10,
        }
    }
}

/// `[site]`: the transparency site.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SiteConfig {
    /// Plain HTTP (a reverse proxy with the cooperative's certificate in front).
    pub listen: SocketAddr,
    /// Its address from outside, for the feed's links.
    pub base_url: String,
    /// The cooperative's name, on every page.
    pub name: String,
    /// The ledger (cooperative/README.md, "The ledger").
    pub ledger: PathBuf,
    /// `<pages_dir>/<de|en>/<legal|content|access>.md`.
    pub pages_dir: PathBuf,
}

impl Default for SiteConfig {
    fn default() -> Self {
        SiteConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 9445)),
            base_url: "http://127.0.0.1:9445".into(),
            name: "Hearth-Genossenschaft (Beispiel)".into(),
            ledger: "cooperative/site/ledger.csv".into(),
            pages_dir: "cooperative/site/pages".into(),
        }
    }
}

/// `[check]`: the outside-in check boxes ask for.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CheckConfig {
    /// The CAs a box's certificate must chain to (PEM); default: the system's public CAs.
    pub ca_file: Option<PathBuf>,
    /// The port phones use.
    pub port: u16,
    /// Connect here instead of resolving the name (tests on loopback only).
    pub connect: Option<SocketAddr>,
    /// A box may ask again after this many seconds.
    pub min_interval_s: u64,
}

impl Default for CheckConfig {
    fn default() -> Self {
        CheckConfig {
            ca_file: None,
            port: 443,
            connect: None,
            min_interval_s: 10,
        }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct EdgeConfig {
    /// TLS for boxes' names, routed by SNI, never terminated (443 in a deployment).
    pub https_listen: SocketAddr,
    /// Plain HTTP for boxes' names, routed by Host (80 in a deployment).
    pub http_listen: SocketAddr,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ControlConfig {
    /// Tunnels and the API, TLS under the cooperative's own name.
    pub listen: SocketAddr,
    /// That name (on its certificate); boxes dial `name:port`.
    pub name: String,
    /// The port boxes dial, when a port mapping in front differs from `listen`'s.
    pub public_port: Option<u16>,
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Seconds without a ping after which a box's tunnel counts as dead.
    pub idle_timeout_s: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            domain: "coop.hearth.test".into(),
            database: "var/cooperative/coop.sqlite3".into(),
            edge: EdgeConfig::default(),
            control: ControlConfig::default(),
            check: CheckConfig::default(),
            reports: ReportsConfig::default(),
            site: SiteConfig::default(),
            store: None,
        }
    }
}

impl Default for EdgeConfig {
    fn default() -> Self {
        EdgeConfig {
            https_listen: SocketAddr::from(([127, 0, 0, 1], 9443)),
            http_listen: SocketAddr::from(([127, 0, 0, 1], 9080)),
        }
    }
}

impl Default for ControlConfig {
    fn default() -> Self {
        ControlConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 9444)),
            name: "relay.coop.hearth.test".into(),
            public_port: None,
            cert: "var/cooperative/control-cert.pem".into(),
            key: "var/cooperative/control-key.pem".into(),
            idle_timeout_s: 45,
        }
    }
}

impl Config {
    /// Reads `path`; a mistake is one line naming the file, the line and the field.
    pub fn load(path: &Path) -> anyhow::Result<Config> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        Config::parse(&text).map_err(|e| anyhow::anyhow!("{}:{e}", path.display()))
    }

    /// Parses TOML text; errors read `LINE: message`.
    pub fn parse(text: &str) -> Result<Config, String> {
        let mut c: Config = toml::from_str(text).map_err(|e| {
            let line = e
                .span()
                .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1)
                .unwrap_or(1);
            let mut message = e.message().trim().replace('\n', " ");
            if message.contains("unknown field `clamp_kwh`") {
                // An older config: the clamp is no longer the collector's to set.
                message.push_str(
                    " (reports.clamp_kwh is gone: the clamp is each board class's supply rating \
                     × the month's hours, from report-wire, as the boxes apply it; delete it)",
                );
            }
            format!("{line}: {message}")
        })?;
        if !hearth_tunnel::proto::valid_name(&c.domain) {
            return Err(format!(
                "{}: domain: {:?} is not a DNS name",
                line_of(text, "domain"),
                c.domain
            ));
        }
        if !hearth_tunnel::proto::valid_name(&c.control.name) {
            return Err(format!(
                "{}: control.name: {:?} is not a DNS name",
                line_of(text, "name"),
                c.control.name
            ));
        }
        if let Err(e) = crate::store::Database::from_setting(&c.database) {
            return Err(format!("{}: database: {e}", line_of(text, "database")));
        }
        if c.control.idle_timeout_s < 5 {
            return Err(format!(
                "{}: control.idle_timeout_s: at least 5",
                line_of(text, "idle_timeout_s")
            ));
        }
        if c.reports.k < 2 {
            return Err(format!("{}: reports.k: at least 2", line_of(text, "k")));
        }
        if !(1..=1000).contains(&c.reports.tokens_per_box) {
            return Err(format!(
                "{}: reports.tokens_per_box: 1 to 1000",
                line_of(text, "tokens_per_box")
            ));
        }
        if let Some(store) = &mut c.store {
            let line = line_of(text, "url");
            store.url = store_url(&store.url).map_err(|e| format!("{line}: store.url: {e}"))?;
            if store.htpasswd.as_os_str().is_empty() || store.htpasswd.file_name().is_none() {
                return Err(format!(
                    "{}: store.htpasswd: not a file's path",
                    line_of(text, "htpasswd")
                ));
            }
        }
        Ok(c)
    }

    /// What boxes dial (the bound port when `listen`'s is 0: see `start`).
    pub fn tunnel_endpoint(&self) -> String {
        format!(
            "{}:{}",
            self.control.name,
            self.control
                .public_port
                .unwrap_or(self.control.listen.port())
        )
    }
}

/// The store's base address, ending in `/`: `http(s)://host[:port][/path]/`, nothing else
/// (no user, query or fragment: a box's repository is this and its label).
fn store_url(url: &str) -> Result<String, String> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or_else(|| {
            format!("{url:?} is not an address such as \"https://backup.coop.example/\"")
        })?;
    let host = rest.split('/').next().unwrap_or("");
    if host.is_empty() || rest.contains(['@', '?', '#', ' ']) {
        return Err(format!(
            "{url:?} is not an address such as \"https://backup.coop.example/\""
        ));
    }
    Ok(if url.ends_with('/') {
        url.to_owned()
    } else {
        format!("{url}/")
    })
}

/// The line where `key` is set (1 when it is not, i.e. the default is wrong).
fn line_of(text: &str, key: &str) -> usize {
    text.lines()
        .position(|l| l.trim_start().starts_with(key) && l.contains('='))
        .map_or(1, |i| i + 1)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn empty_is_the_embedded_default() {
        assert_eq!(Config::parse("").unwrap(), Config::default());
        assert_eq!(
            Config::default().tunnel_endpoint(),
            "relay.coop.hearth.test:9444"
        );
    }

    #[test]
    fn mistakes_name_the_line_and_the_field() {
        let e = Config::parse("domain = \"coop.example\"\n[edge]\nhttps_listen = \"nowhere\"\n")
            .unwrap_err();
        assert!(e.starts_with("3: ") && e.contains("invalid"), "{e}");
        let e = Config::parse("[control]\nidle = 3\n").unwrap_err();
        assert!(e.starts_with("2: ") && e.contains("idle"), "{e}");
        let e = Config::parse("\ndomain = \"Not A Name\"\n").unwrap_err();
        assert_eq!(e, "2: domain: \"Not A Name\" is not a DNS name");
        assert!(!e.contains('\n'));
    }

    #[test]
    fn a_config_that_still_sets_clamp_kwh_is_refused_on_its_line() {
        for text in [
            "domain = \"coop.example\"\n[reports]\nk = 10\n[reports.clamp_kwh]\npi3 = 9.3\n",
            "domain = \"coop.example\"\n[reports]\nk = 10\nclamp_kwh = { pi3 = 9.3 }\n",
        ] {
            let e = Config::parse(text).unwrap_err();
            assert!(e.starts_with("4: unknown field `clamp_kwh`"), "{e}");
            assert!(e.contains("supply rating"), "{e}");
            assert!(!e.contains('\n'), "{e}");
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hearth-coop.toml");
        std::fs::write(&path, "[reports]\n[reports.clamp_kwh]\npi5 = 20.1\n").unwrap();
        let e = Config::load(&path).unwrap_err().to_string();
        assert!(
            e.starts_with(&format!("{}:2: unknown field `clamp_kwh`", path.display())),
            "{e}"
        );
    }

    #[test]
    fn the_store_is_optional_its_url_ends_in_a_slash_and_mistakes_name_the_line() {
        assert_eq!(Config::parse("").unwrap().store, None);
        let c = Config::parse(
            "domain = \"coop.example\"\n[store]\nurl = \"https://backup.coop.example\"\n\
             htpasswd = \"/var/lib/hearth-coop/store/htpasswd\"\n",
        )
        .unwrap();
        assert_eq!(
            c.store,
            Some(StoreConfig {
                url: "https://backup.coop.example/".into(),
                htpasswd: "/var/lib/hearth-coop/store/htpasswd".into(),
            })
        );
        let e = Config::parse("[store]\nurl = \"ftp://x/\"\nhtpasswd = \"/h\"\n").unwrap_err();
        assert!(
            e.starts_with("2: store.url: \"ftp://x/\" is not an address"),
            "{e}"
        );
        let e =
            Config::parse("[store]\nurl = \"https://u:p@x/\"\nhtpasswd = \"/h\"\n").unwrap_err();
        assert!(e.starts_with("2: store.url:"), "{e}");
        let e = Config::parse("[store]\nurl = \"https://x/\"\nhtpasswd = \"/h\"\nuser = 1\n")
            .unwrap_err();
        assert!(e.starts_with("4: unknown field `user`"), "{e}");
        let e = Config::parse("domain = \"coop.example\"\n[store]\nurl = \"https://x/\"\n")
            .unwrap_err();
        assert!(e.contains("missing field `htpasswd`"), "{e}");
        assert!(!e.contains('\n'));
    }

    #[test]
    fn the_database_is_a_path_or_a_postgresql_url() {
        let c = Config::parse("database = \"/var/lib/hearth-coop/coop.sqlite3\"\n").unwrap();
        assert!(matches!(
            crate::store::Database::from_setting(&c.database),
            Ok(crate::store::Database::Sqlite(_))
        ));
        for url in [
            "postgresql://coop@10.0.0.5/coop",
            "postgres://coop:pw@db.internal:5432/coop?connect_timeout=5",
            "postgresql://coop@%2Frun%2Fpostgresql/coop",
        ] {
            let c = Config::parse(&format!("database = \"{url}\"\n")).unwrap();
            assert!(matches!(
                crate::store::Database::from_setting(&c.database),
                Ok(crate::store::Database::Postgres(_))
            ));
        }
        let e = Config::parse(
            "domain = \"coop.example\"\ndatabase = \"postgresql://coop@db:x/coop\"\n",
        )
        .unwrap_err();
        assert!(e.starts_with("2: database: not a PostgreSQL URL"), "{e}");
        assert!(!e.contains('\n'));
    }
}
