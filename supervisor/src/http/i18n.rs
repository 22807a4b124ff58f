//! The page's languages: which one a request gets, and every string the pages show, one
//! [`Catalogue`] per language. A string missing in one language does not compile.
//!
//! Choice: the `lang` cookie (set by the switch link, `/lang/{code}`), else the best language
//! of `Accept-Language` that we have, else English. English is the fallback because a visitor
//! whose browser asks for neither German nor English (a French-speaking aunt, a Polish
//! neighbour) more likely reads English; German browsers say `de` and get German.
//!
//! Strings with values carry `{0}`, `{1}` placeholders, filled by [`fill`].

use axum::http::{header, HeaderMap};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    En,
    De,
}

/// The fallback when neither cookie nor `Accept-Language` names a language we have.
pub const DEFAULT: Lang = Lang::En;

/// The languages in the order the switch offers them.
pub const ALL: [Lang; 2] = [Lang::De, Lang::En];

/// The cookie the switch link sets.
pub const COOKIE: &str = "lang";

impl Lang {
    /// The BCP 47 tag (`<html lang>`, `Content-Language`, the cookie's value).
    pub fn code(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::De => "de",
        }
    }

    pub fn from_code(code: &str) -> Option<Lang> {
        ALL.into_iter()
            .find(|l| l.code().eq_ignore_ascii_case(code))
    }

    pub fn t(self) -> &'static Catalogue {
        match self {
            Lang::En => &EN,
            Lang::De => &DE,
        }
    }

    /// The decimal separator.
    fn decimal(self) -> char {
        match self {
            Lang::En => '.',
            Lang::De => ',',
        }
    }

    /// `v` with `digits` decimals in this language (no grouping: `1234,5`), as the page's
    /// script formats it with `Intl.NumberFormat(lang, {useGrouping: false})`.
    pub fn num(self, v: f64, digits: usize) -> String {
        let s = format!("{v:.digits$}");
        // -0.00 reads oddly on a page.
        let s = if s.starts_with('-') && s[1..].chars().all(|c| c == '0' || c == '.') {
            s[1..].to_string()
        } else {
            s
        };
        s.replace('.', &self.decimal().to_string())
    }

    /// An amount of money: `€0.37` / `0,37 €`, as `Intl.NumberFormat(lang, {style:
    /// "currency"})` writes it (with a no-break space where it puts one).
    pub fn money(self, v: f64, currency: &str) -> String {
        let n = self.num(v, 2);
        let symbol = match currency {
            "EUR" => Some("€"),
            "USD" => Some("$"),
            "GBP" => Some("£"),
            _ => None,
        };
        match (self, symbol) {
            (Lang::En, Some(s)) => format!("{s}{n}"),
            (Lang::En, None) => format!("{currency}\u{a0}{n}"),
            (Lang::De, Some(s)) => format!("{n}\u{a0}{s}"),
            (Lang::De, None) => format!("{n}\u{a0}{currency}"),
        }
    }
}

/// A Unix time as the pages show it: the box's local time, `2026-12-07 03:15`.
pub fn local_time(s: i64) -> String {
    chrono::DateTime::from_timestamp(s, 0)
        .map(|t| {
            t.with_timezone(&chrono::Local)
                .format("%Y-%m-%d %H:%M")
                .to_string()
        })
        .unwrap_or_default()
}

/// The request's language: the `lang` cookie, else `Accept-Language`, else [`DEFAULT`].
pub fn of_request(headers: &HeaderMap) -> Lang {
    let cookie = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(cookie_lang);
    let accept = headers
        .get(header::ACCEPT_LANGUAGE)
        .and_then(|v| v.to_str().ok());
    negotiate(cookie, accept)
}

pub fn negotiate(cookie: Option<Lang>, accept_language: Option<&str>) -> Lang {
    cookie
        .or_else(|| accept_language.and_then(from_accept_language))
        .unwrap_or(DEFAULT)
}

/// The `lang` value of a `Cookie` header, if it names a language we have.
fn cookie_lang(header: &str) -> Option<Lang> {
    header.split(';').find_map(|pair| {
        let (name, value) = pair.split_once('=')?;
        (name.trim() == COOKIE)
            .then(|| Lang::from_code(value.trim().trim_matches('"')))
            .flatten()
    })
}

/// The highest-weighted language of an `Accept-Language` header that we have (`de-AT` counts
/// as `de`); the first one listed wins a tie. `None` when it names none of ours.
pub fn from_accept_language(header: &str) -> Option<Lang> {
    let mut best: Option<(Lang, f64)> = None;
    for item in header.split(',') {
        let mut parts = item.split(';');
        let tag = parts.next().unwrap_or("").trim();
        let q = parts
            .filter_map(|p| p.trim().strip_prefix("q="))
            .find_map(|v| v.trim().parse::<f64>().ok())
            .unwrap_or(1.0);
        // q=0 means "not this one"; a NaN weight is no weight.
        if q.is_nan() || q <= 0.0 {
            continue;
        }
        let primary = tag.split(['-', '_']).next().unwrap_or("");
        if let Some(lang) = Lang::from_code(primary) {
            if best.is_none_or(|(_, bq)| q > bq) {
                best = Some((lang, q));
            }
        }
    }
    best.map(|(l, _)| l)
}

/// Replace `{0}`, `{1}`, … in `template` with `args`.
pub fn fill(template: &str, args: &[&str]) -> String {
    let mut out = template.to_string();
    for (i, a) in args.iter().enumerate() {
        out = out.replace(&format!("{{{i}}}"), a);
    }
    out
}

/// A heading and a sentence.
#[derive(Debug)]
pub struct Said {
    pub title: &'static str,
    pub text: &'static str,
}

/// Every string of the pages in one language.
#[derive(Debug)]
pub struct Catalogue {
    /// The "who can access the data" and "what you are getting into" pages.
    pub tr: &'static Transparency,
    // The frame of every page.
    pub skip_to_content: &'static str,
    pub nav_label: &'static str,
    pub nav_overview: &'static str,
    /// The switch link's text, in the language it switches to (shown in the other catalogue).
    pub language_name: &'static str,
    /// "Show this page in German", written in the language it switches to.
    pub switch_title: &'static str,
    pub footer_version: &'static str,
    pub footer_status_json: &'static str,
    pub footer_metrics: &'static str,
    pub offline: &'static str,
    pub updated_at: &'static str,

    // The overview: how the server is.
    pub overview_title: &'static str,
    pub server_kicker: &'static str,
    pub health_healthy: Said,
    pub health_starting: Said,
    pub health_degraded: Said,
    pub health_down: Said,
    pub health_failed: Said,
    pub health_unknown: Said,
    pub maintenance: &'static str,
    pub technical_detail: &'static str,
    pub last_restart: &'static str,
    pub led_label: &'static str,
    pub led_steady: &'static str,
    pub led_slow_blink: &'static str,
    pub led_double_blink: &'static str,
    pub led_fast_blink: &'static str,
    pub led_failure: &'static str,
    pub led_maintenance: &'static str,
    pub led_off: &'static str,
    pub led_absent: &'static str,
    pub led_none: &'static str,

    // Warnings about the device.
    pub warnings_label: &'static str,
    /// {0}: free space, e.g. "1.2 GB".
    pub warn_disk: Said,
    /// {0}: degrees Celsius.
    pub warn_hot: Said,
    pub warn_under_voltage: Said,
    pub warn_under_voltage_since_boot: Said,
    pub warn_sensor_fault: Said,

    // Electricity.
    pub power_heading: &'static str,
    pub power_now: &'static str,
    pub energy_today: &'static str,
    pub energy_month: &'static str,
    pub cost_month: &'static str,
    /// {0}: the tariff, e.g. "€0.30".
    pub cost_note: &'static str,
    pub no_reading: &'static str,

    // The chart.
    pub chart_title: &'static str,
    /// {0} mean, {1} lowest, {2} highest (with units), {3} minutes measured, {4} of how many.
    pub chart_summary: &'static str,
    pub chart_empty: &'static str,
    pub chart_now: &'static str,
    /// {0}: minutes.
    pub chart_ago: &'static str,

    // The device.
    pub device_heading: &'static str,
    pub sensor_label: &'static str,
    pub sensor_ok: &'static str,
    pub sensor_simulated: &'static str,
    pub sensor_fault: &'static str,
    pub sensor_absent: &'static str,
    pub sensor_starting: &'static str,
    pub supply_label: &'static str,
    pub temperature_label: &'static str,
    pub storage_label: &'static str,
    /// {0} free, {1} total.
    pub storage_value: &'static str,
    pub database_label: &'static str,
    pub database_postgresql: &'static str,
    pub database_sqlite: &'static str,
}

impl Catalogue {
    pub fn health(&self, state: &str) -> &Said {
        match state {
            "healthy" => &self.health_healthy,
            "starting" => &self.health_starting,
            "degraded" => &self.health_degraded,
            "down" => &self.health_down,
            "failed" => &self.health_failed,
            _ => &self.health_unknown,
        }
    }

    pub fn led(&self, pattern: &str) -> &'static str {
        match pattern {
            "steady" => self.led_steady,
            "slow_blink" => self.led_slow_blink,
            "double_blink" => self.led_double_blink,
            "fast_blink" => self.led_fast_blink,
            "failure" => self.led_failure,
            "maintenance" => self.led_maintenance,
            _ => self.led_off,
        }
    }

    pub fn sensor(&self, state: &str) -> &'static str {
        match state {
            "ok" => self.sensor_ok,
            "simulated" => self.sensor_simulated,
            "fault" => self.sensor_fault,
            "absent" => self.sensor_absent,
            _ => self.sensor_starting,
        }
    }
}

pub static EN: Catalogue = Catalogue {
    tr: &TRANSPARENCY_EN,
    skip_to_content: "Skip to content",
    nav_label: "Pages",
    nav_overview: "Overview",
    language_name: "English",
    switch_title: "Show this page in English",
    footer_version: "hearth version",
    footer_status_json: "status as data",
    footer_metrics: "metrics",
    offline: "No connection to the box right now; the figures may be out of date.",
    updated_at: "Updated",

    overview_title: "Overview",
    server_kicker: "Your Matrix server",
    health_healthy: Said {
        title: "Everything is working",
        text: "Messages are delivered as usual.",
    },
    health_starting: Said {
        title: "Starting up",
        text: "The server is starting. After a power cut or an update this can take a few minutes.",
    },
    health_degraded: Said {
        title: "Working, but slowly",
        text: "Messages may take a little longer. hearth keeps an eye on it.",
    },
    health_down: Said {
        title: "Not reachable right now",
        text: "hearth is bringing the server back. This usually takes less than a minute.",
    },
    health_failed: Said {
        title: "A person is needed",
        text: "Restarting did not help. Please tell whoever looks after the box.",
    },
    health_unknown: Said {
        title: "Not watched",
        text: "Health checks are switched off in this box's settings.",
    },
    maintenance: "Maintenance: hearth restarts nothing while someone works on the box.",
    technical_detail: "Technical detail",
    last_restart: "Last restart",
    led_label: "The light on the box",
    led_steady: "steady",
    led_slow_blink: "blinks slowly",
    led_double_blink: "blinks twice, then pauses",
    led_fast_blink: "blinks fast",
    led_failure: "long, then three short flashes",
    led_maintenance: "a short flash every two seconds",
    led_off: "off",
    led_absent: "this box has no status light fitted",
    led_none: "switched off in the settings",

    warnings_label: "Warnings",
    warn_disk: Said {
        title: "Storage almost full",
        text: "Only {0} left. When it is full, the server stops. Ask whoever looks after the box to make room.",
    },
    warn_hot: Said {
        title: "The box is too hot",
        text: "{0} °C: it slows itself down. Give it some air and do not cover it.",
    },
    warn_under_voltage: Said {
        title: "The power supply is too weak",
        text: "The voltage is below 4.63 V. Use the official Raspberry Pi power supply: a weak one causes crashes and can damage the memory card.",
    },
    warn_under_voltage_since_boot: Said {
        title: "The power supply was too weak",
        text: "Since the last start the voltage dropped below 4.63 V at least once. If it happens again, use the official power supply.",
    },
    warn_sensor_fault: Said {
        title: "The power sensor does not answer",
        text: "Energy is estimated from the last readings until it answers again, and marked as estimated.",
    },

    power_heading: "Electricity",
    power_now: "Power now",
    energy_today: "Today",
    energy_month: "This month",
    cost_month: "Cost this month",
    cost_note: "The whole box at {0} per kWh. Each person's share comes with signing in.",
    no_reading: "no reading",

    chart_title: "Power over the last hour",
    chart_summary: "Average {0}, lowest {1}, highest {2}; {3} of {4} minutes measured.",
    chart_empty: "No measurements in the last hour yet. The chart fills in minute by minute.",
    chart_now: "now",
    chart_ago: "−{0} min",

    device_heading: "The box",
    sensor_label: "Power sensor",
    sensor_ok: "measuring",
    sensor_simulated: "simulated: there is no sensor, the figures come from a model",
    sensor_fault: "fault",
    sensor_absent: "not fitted on this board",
    sensor_starting: "starting",
    supply_label: "Voltage",
    temperature_label: "Temperature",
    storage_label: "Storage",
    storage_value: "{0} free of {1}",
    database_label: "Messages stored in",
    database_postgresql: "PostgreSQL",
    database_sqlite: "SQLite (chosen at first boot: this board has under 1.5 GB of memory, too \
                      little for PostgreSQL)",
};

pub static DE: Catalogue = Catalogue {
    tr: &TRANSPARENCY_DE,
    skip_to_content: "Zum Inhalt springen",
    nav_label: "Seiten",
    nav_overview: "Übersicht",
    language_name: "Deutsch",
    switch_title: "Diese Seite auf Deutsch anzeigen",
    footer_version: "hearth Version",
    footer_status_json: "Status als Daten",
    footer_metrics: "Messwerte",
    offline: "Gerade keine Verbindung zum Gerät; die Zahlen sind vielleicht nicht aktuell.",
    updated_at: "Stand",

    overview_title: "Übersicht",
    server_kicker: "Euer Matrix-Server",
    health_healthy: Said {
        title: "Alles in Ordnung",
        text: "Nachrichten werden wie gewohnt zugestellt.",
    },
    health_starting: Said {
        title: "Startet gerade",
        text: "Der Server fährt hoch. Nach einem Stromausfall oder einem Update kann das ein paar Minuten dauern.",
    },
    health_degraded: Said {
        title: "Läuft, aber langsam",
        text: "Nachrichten brauchen vielleicht etwas länger. hearth behält das im Blick.",
    },
    health_down: Said {
        title: "Gerade nicht erreichbar",
        text: "hearth startet den Server neu. Das dauert meist weniger als eine Minute.",
    },
    health_failed: Said {
        title: "Ein Mensch wird gebraucht",
        text: "Neustarten hat nicht geholfen. Bitte sagt der Person Bescheid, die sich um das Gerät kümmert.",
    },
    health_unknown: Said {
        title: "Nicht überwacht",
        text: "Die Überwachung ist in den Einstellungen dieses Geräts ausgeschaltet.",
    },
    maintenance: "Wartung: hearth startet nichts neu, solange jemand am Gerät arbeitet.",
    technical_detail: "Technische Angabe",
    last_restart: "Letzter Neustart",
    led_label: "Das Licht am Gerät",
    led_steady: "leuchtet ruhig",
    led_slow_blink: "blinkt langsam",
    led_double_blink: "blinkt zweimal, dann Pause",
    led_fast_blink: "blinkt schnell",
    led_failure: "lang, dann dreimal kurz",
    led_maintenance: "alle zwei Sekunden ein kurzes Aufblitzen",
    led_off: "aus",
    led_absent: "an diesem Gerät ist kein Statuslicht angeschlossen",
    led_none: "in den Einstellungen ausgeschaltet",

    warnings_label: "Warnungen",
    warn_disk: Said {
        title: "Speicher fast voll",
        text: "Nur noch {0} frei. Ist er voll, hält der Server an. Bittet die Person, die sich um das Gerät kümmert, Platz zu schaffen.",
    },
    warn_hot: Said {
        title: "Das Gerät ist zu heiß",
        text: "{0} °C: es bremst sich selbst. Gebt ihm Luft und deckt es nicht ab.",
    },
    warn_under_voltage: Said {
        title: "Das Netzteil ist zu schwach",
        text: "Die Spannung liegt unter 4,63 V. Nehmt das offizielle Raspberry-Pi-Netzteil: ein schwaches führt zu Abstürzen und kann die Speicherkarte beschädigen.",
    },
    warn_under_voltage_since_boot: Said {
        title: "Das Netzteil war zu schwach",
        text: "Seit dem letzten Start lag die Spannung mindestens einmal unter 4,63 V. Passiert das wieder, nehmt das offizielle Netzteil.",
    },
    warn_sensor_fault: Said {
        title: "Der Stromsensor antwortet nicht",
        text: "Bis er wieder antwortet, wird der Verbrauch aus den letzten Messungen geschätzt und als geschätzt ausgewiesen.",
    },

    power_heading: "Strom",
    power_now: "Leistung jetzt",
    energy_today: "Heute",
    energy_month: "Diesen Monat",
    cost_month: "Kosten diesen Monat",
    cost_note: "Das ganze Gerät zu {0} je kWh. Den Anteil jeder Person gibt es nach der Anmeldung.",
    no_reading: "kein Messwert",

    chart_title: "Leistung in der letzten Stunde",
    chart_summary: "Im Mittel {0}, niedrigster Wert {1}, höchster {2}; {3} von {4} Minuten gemessen.",
    chart_empty: "In der letzten Stunde gibt es noch keine Messungen. Das Diagramm füllt sich Minute für Minute.",
    chart_now: "jetzt",
    chart_ago: "−{0} Min.",

    device_heading: "Das Gerät",
    sensor_label: "Stromsensor",
    sensor_ok: "misst",
    sensor_simulated: "simuliert: es gibt keinen Sensor, die Werte stammen aus einem Modell",
    sensor_fault: "Störung",
    sensor_absent: "an diesem Gerät nicht angeschlossen",
    sensor_starting: "startet",
    supply_label: "Spannung",
    temperature_label: "Temperatur",
    storage_label: "Speicher",
    storage_value: "{0} frei von {1}",
    database_label: "Nachrichten gespeichert in",
    database_postgresql: "PostgreSQL",
    database_sqlite: "SQLite (beim ersten Start gewählt: dieses Gerät hat weniger als 1,5 GB \
                      Arbeitsspeicher, zu wenig für PostgreSQL)",
};

/// The strings of "who can access the data" (`/access`) and "what you are getting into"
/// (`/about`).
#[derive(Debug)]
pub struct Transparency {
    pub nav_access: &'static str,
    pub nav_about: &'static str,

    pub access_title: &'static str,
    pub access_lead: &'static str,
    pub os_heading: &'static str,
    pub os_intro: &'static str,
    pub os_missing: &'static str,
    /// {0}: why.
    pub os_bad: &'static str,
    /// {0}: when it was gathered.
    pub os_stale: &'static str,
    pub gathered: &'static str,
    pub col_account: &'static str,
    pub col_login: &'static str,
    pub col_password: &'static str,
    pub col_groups: &'static str,
    pub root_note: &'static str,
    pub yes: &'static str,
    pub no: &'static str,
    pub password_set: &'static str,
    pub password_locked: &'static str,
    pub password_empty: &'static str,
    pub password_unknown: &'static str,
    pub no_accounts: &'static str,
    pub sudoers_heading: &'static str,
    pub sudoers_ignored: &'static str,
    pub none: &'static str,
    pub ssh_heading: &'static str,
    pub ssh_not_installed: &'static str,
    pub ssh_enabled: &'static str,
    pub ssh_disabled: &'static str,
    pub ssh_passwords_yes: &'static str,
    pub ssh_passwords_no: &'static str,
    /// {0}: sshd's PermitRootLogin value.
    pub ssh_root: &'static str,
    /// {0}: the command.
    pub ssh_command: &'static str,
    pub ssh_match: &'static str,
    /// {0}: the file, {1}: the accounts.
    pub keys_file: &'static str,
    pub col_type: &'static str,
    pub col_fingerprint: &'static str,
    pub col_comment: &'static str,
    pub col_options: &'static str,
    pub keys_none: &'static str,
    pub problems_heading: &'static str,

    pub synapse_heading: &'static str,
    pub synapse_intro: &'static str,
    pub synapse_not_read: &'static str,
    /// {0}: why.
    pub synapse_error: &'static str,
    pub synapse_none: &'static str,
    pub admin_member: &'static str,
    pub admin_supervisor: &'static str,
    /// {0}: why the account is not a member.
    pub admin_other: &'static str,
    /// {0}: the sync's time.
    pub synced: &'static str,

    pub token_heading: &'static str,
    pub token_intro: &'static str,
    pub col_use: &'static str,
    pub col_endpoint: &'static str,
    pub col_audited: &'static str,
    /// {0}: days.
    pub col_calls: &'static str,
    pub audited_each_call: &'static str,
    pub audited_daily: &'static str,
    pub audited_no: &'static str,
    pub use_whoami: &'static str,
    pub use_database_probe: &'static str,
    pub use_directory_list: &'static str,
    pub use_account_details: &'static str,
    pub use_media_statistics: &'static str,
    pub use_notice_admins: &'static str,
    pub use_server_notice: &'static str,
    pub use_create_account: &'static str,
    pub use_deactivate_account: &'static str,
    pub use_reset_password: &'static str,
    pub use_slow_messages: &'static str,
    pub use_restore_messages: &'static str,
    pub other_calls: &'static str,
    /// {0}: why.
    pub counts_missing: &'static str,
    pub json_link: &'static str,

    pub about_title: &'static str,
    pub about_intro: &'static str,
    pub about_template_note: &'static str,
    /// {0}: the language's name.
    pub about_other_language: &'static str,
    /// {0}: why.
    pub about_error: &'static str,
}

impl Transparency {
    pub fn password(&self, state: &str) -> &'static str {
        match state {
            "set" => self.password_set,
            "locked" => self.password_locked,
            "empty" => self.password_empty,
            _ => self.password_unknown,
        }
    }

    pub fn audited(&self, a: crate::health::probe::Audited) -> &'static str {
        use crate::health::probe::Audited;
        match a {
            Audited::EachCall => self.audited_each_call,
            Audited::Daily => self.audited_daily,
            Audited::No => self.audited_no,
        }
    }

    /// The words for a `health::probe::TOKEN_USES` id (the id itself for one not worded).
    pub fn token_use<'a>(&self, id: &'a str) -> &'a str {
        match id {
            "whoami" => self.use_whoami,
            "database_probe" => self.use_database_probe,
            "directory_list" => self.use_directory_list,
            "account_details" => self.use_account_details,
            "media_statistics" => self.use_media_statistics,
            "notice_admins" => self.use_notice_admins,
            "server_notice" => self.use_server_notice,
            "create_account" => self.use_create_account,
            "deactivate_account" => self.use_deactivate_account,
            "reset_password" => self.use_reset_password,
            "slow_messages" => self.use_slow_messages,
            "restore_messages" => self.use_restore_messages,
            other => other,
        }
    }
}

pub static TRANSPARENCY_EN: Transparency = Transparency {
    nav_access: "Access",
    nav_about: "Fine print",

    access_title: "Who can access the data",
    access_lead: "Generated from the system, not written by hand. Three ways lead to the data: logging in to the box itself, being an admin of the Matrix server, and the supervisor's own admin key.",
    os_heading: "Logging in to the box",
    os_intro: "Whoever logs in to the box as root, or becomes root through an admin group, can read everything on it: the database, unencrypted rooms, pictures and files. These accounts can log in.",
    os_missing: "The inventory has not run since the box started. It runs as root at start, whenever accounts or keys change, and daily.",
    os_bad: "The inventory cannot be read: {0}",
    os_stale: "This inventory is from {0}; it should be renewed every day. Ask whoever looks after the box whether its timer runs.",
    gathered: "Gathered",
    col_account: "Account",
    col_login: "Login shell",
    col_password: "Password",
    col_groups: "Admin groups (can become root)",
    root_note: "root: may do everything",
    yes: "yes",
    no: "no",
    password_set: "set",
    password_locked: "locked: no password login",
    password_empty: "EMPTY: no password needed",
    password_unknown: "unknown",
    no_accounts: "No account can log in.",
    sudoers_heading: "Files in /etc/sudoers.d (more sudo rules)",
    sudoers_ignored: "ignored by sudo",
    none: "none",
    ssh_heading: "SSH (logging in over the network)",
    ssh_not_installed: "No SSH server is installed.",
    ssh_enabled: "The SSH server starts with the box.",
    ssh_disabled: "The SSH server is installed but does not start with the box.",
    ssh_passwords_yes: "It accepts passwords.",
    ssh_passwords_no: "It accepts keys only, no passwords.",
    ssh_root: "Root login: {0}",
    ssh_command: "Keys may also come from a command the inventory cannot look into: {0}",
    ssh_match: "Match blocks in the SSH server's settings may change this for some users or addresses.",
    keys_file: "{0} lets in: {1}",
    col_type: "Type",
    col_fingerprint: "Fingerprint",
    col_comment: "Comment",
    col_options: "Restricted",
    keys_none: "No keys.",
    problems_heading: "Lines the inventory could not read",

    synapse_heading: "Admins of the Matrix server",
    synapse_intro: "A server admin can, through Synapse's admin API, read and change every account and every unencrypted room, see who is in which room, and reset passwords. Encrypted messages stay unreadable to them too.",
    synapse_not_read: "Not read yet; the list appears within a minute of the start.",
    synapse_error: "Cannot be read: {0}",
    synapse_none: "No server admins.",
    admin_member: "member",
    admin_supervisor: "the supervisor's own account: hearth itself, for the uses below",
    admin_other: "not a member: {0}",
    synced: "As of the directory sync at {0}.",

    token_heading: "What the supervisor's own admin key is used for",
    token_intro: "hearth holds an admin token for its own account, readable only by the supervisor. This is every use its code makes of it; the calls about a person are in the audit log, and that person sees them.",
    col_use: "What for",
    col_endpoint: "Call",
    col_audited: "Logged",
    col_calls: "Calls in the last {0} days",
    audited_each_call: "every call, about the person",
    audited_daily: "once a day",
    audited_no: "not logged",
    use_whoami: "Which account the token belongs to",
    use_database_probe: "Health check: does the database answer (every few seconds)",
    use_directory_list: "Member directory: the list of accounts (members, admins)",
    use_account_details: "Member directory: details of a new account (does a bridge own it); invitations: is a user name taken",
    use_media_statistics: "Storage each member uses (for the storage cost)",
    use_notice_admins: "Server notices: which admins to tell when the box needs a person",
    use_server_notice: "Server notices: sending that message",
    use_create_account: "Invitations: creating the invited member's account",
    use_deactivate_account: "Accounts: a server admin deactivates an account on the page",
    use_reset_password: "Accounts: a server admin sets a new password on the page",
    use_slow_messages: "Budgets: a member whose budget is used up has their messages slowed",
    use_restore_messages: "Budgets: the member's messages go at the usual rate again",
    other_calls: "Logged calls no use above explains",
    counts_missing: "The counts cannot be read: {0}",
    json_link: "This page as data",

    about_title: "What you are getting into",
    about_intro: "Written by whoever runs this server, or hearth's templates until they write their own.",
    about_template_note: "This is the template that comes with hearth; the operator has not written their own yet.",
    about_other_language: "This page is only written in {0}.",
    about_error: "This page cannot be shown: {0}",
};

pub static TRANSPARENCY_DE: Transparency = Transparency {
    nav_access: "Zugriff",
    nav_about: "Kleingedrucktes",

    access_title: "Wer kann auf die Daten zugreifen",
    access_lead: "Aus dem System erzeugt, nicht von Hand geschrieben. Drei Wege führen zu den Daten: die Anmeldung am Gerät selbst, Admin des Matrix-Servers zu sein, und der eigene Admin-Schlüssel des Supervisors.",
    os_heading: "Anmelden am Gerät",
    os_intro: "Wer sich als root am Gerät anmeldet oder über eine Admin-Gruppe root wird, kann alles darauf lesen: die Datenbank, unverschlüsselte Räume, Bilder und Dateien. Diese Konten können sich anmelden.",
    os_missing: "Die Bestandsaufnahme ist seit dem Start des Geräts noch nicht gelaufen. Sie läuft als root beim Start, bei jeder Änderung an Konten oder Schlüsseln und täglich.",
    os_bad: "Die Bestandsaufnahme kann nicht gelesen werden: {0}",
    os_stale: "Diese Bestandsaufnahme ist vom {0}; sie sollte täglich erneuert werden. Fragt die Person, die sich um das Gerät kümmert, ob der Timer läuft.",
    gathered: "Erhoben",
    col_account: "Konto",
    col_login: "Anmelde-Shell",
    col_password: "Passwort",
    col_groups: "Admin-Gruppen (kann root werden)",
    root_note: "root: darf alles",
    yes: "ja",
    no: "nein",
    password_set: "gesetzt",
    password_locked: "gesperrt: keine Anmeldung per Passwort",
    password_empty: "LEER: kein Passwort nötig",
    password_unknown: "unbekannt",
    no_accounts: "Kein Konto kann sich anmelden.",
    sudoers_heading: "Dateien in /etc/sudoers.d (weitere sudo-Regeln)",
    sudoers_ignored: "von sudo ignoriert",
    none: "keine",
    ssh_heading: "SSH (Anmeldung über das Netz)",
    ssh_not_installed: "Es ist kein SSH-Server installiert.",
    ssh_enabled: "Der SSH-Server startet mit dem Gerät.",
    ssh_disabled: "Der SSH-Server ist installiert, startet aber nicht mit dem Gerät.",
    ssh_passwords_yes: "Er nimmt Passwörter an.",
    ssh_passwords_no: "Er nimmt nur Schlüssel an, keine Passwörter.",
    ssh_root: "Anmeldung als root: {0}",
    ssh_command: "Schlüssel können auch von einem Befehl kommen, in den die Bestandsaufnahme nicht hineinsieht: {0}",
    ssh_match: "Match-Blöcke in den Einstellungen des SSH-Servers können das für manche Nutzer oder Adressen ändern.",
    keys_file: "{0} lässt herein: {1}",
    col_type: "Typ",
    col_fingerprint: "Fingerabdruck",
    col_comment: "Kommentar",
    col_options: "Eingeschränkt",
    keys_none: "Keine Schlüssel.",
    problems_heading: "Zeilen, die die Bestandsaufnahme nicht lesen konnte",

    synapse_heading: "Admins des Matrix-Servers",
    synapse_intro: "Server-Admins können über die Admin-Schnittstelle von Synapse jedes Konto und jeden unverschlüsselten Raum lesen und ändern, sehen, wer in welchem Raum ist, und Passwörter zurücksetzen. Verschlüsselte Nachrichten bleiben auch für sie unlesbar.",
    synapse_not_read: "Noch nicht gelesen; die Liste erscheint innerhalb einer Minute nach dem Start.",
    synapse_error: "Kann nicht gelesen werden: {0}",
    synapse_none: "Keine Server-Admins.",
    admin_member: "Mitglied",
    admin_supervisor: "das eigene Konto des Supervisors: hearth selbst, für die Zwecke unten",
    admin_other: "kein Mitglied: {0}",
    synced: "Stand des Abgleichs um {0}.",

    token_heading: "Wofür der eigene Admin-Schlüssel des Supervisors benutzt wird",
    token_intro: "hearth hat für sein eigenes Konto einen Admin-Token, den nur der Supervisor lesen kann. Das ist jede Verwendung in seinem Code; Aufrufe, die eine Person betreffen, stehen im Prüfprotokoll, und diese Person sieht sie.",
    col_use: "Wofür",
    col_endpoint: "Aufruf",
    col_audited: "Protokolliert",
    col_calls: "Aufrufe in den letzten {0} Tagen",
    audited_each_call: "jeder Aufruf, bei der Person",
    audited_daily: "einmal am Tag",
    audited_no: "nicht protokolliert",
    use_whoami: "Zu welchem Konto der Token gehört",
    use_database_probe: "Gesundheitsprüfung: antwortet die Datenbank (alle paar Sekunden)",
    use_directory_list: "Mitgliederverzeichnis: die Liste der Konten (Mitglieder, Admins)",
    use_account_details: "Mitgliederverzeichnis: Angaben zu einem neuen Konto (gehört es einer Brücke); Einladungen: ist ein Benutzername vergeben",
    use_media_statistics: "Speicher, den jedes Mitglied belegt (für die Speicherkosten)",
    use_notice_admins: "Servermitteilungen: welche Admins Bescheid bekommen, wenn das Gerät einen Menschen braucht",
    use_server_notice: "Servermitteilungen: diese Nachricht senden",
    use_create_account: "Einladungen: das Konto des eingeladenen Mitglieds anlegen",
    use_deactivate_account: "Konten: ein Server-Admin deaktiviert auf der Seite ein Konto",
    use_reset_password: "Konten: ein Server-Admin setzt auf der Seite ein neues Passwort",
    use_slow_messages: "Budgets: die Nachrichten eines Mitglieds mit aufgebrauchtem Budget werden verlangsamt",
    use_restore_messages: "Budgets: die Nachrichten des Mitglieds gehen wieder im üblichen Tempo",
    other_calls: "Protokollierte Aufrufe, die keine Verwendung oben erklärt",
    counts_missing: "Die Zahlen können nicht gelesen werden: {0}",
    json_link: "Diese Seite als Daten",

    about_title: "Worauf ihr euch einlasst",
    about_intro: "Geschrieben von den Menschen, die diesen Server betreiben, oder die Vorlagen von hearth, bis sie eigene schreiben.",
    about_template_note: "Das ist die Vorlage, die hearth mitbringt; der Betreiber hat noch keine eigene geschrieben.",
    about_other_language: "Diese Seite gibt es nur auf {0}.",
    about_error: "Diese Seite kann nicht angezeigt werden: {0}",
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_language_picks_the_best_language_we_have() {
        let check = |header: &str, want: Option<Lang>| {
            assert_eq!(from_accept_language(header), want, "{header:?}");
        };
        check("de-DE,de;q=0.9,en-US;q=0.8,en;q=0.7", Some(Lang::De));
        check("en-GB,en;q=0.9,de;q=0.8", Some(Lang::En));
        check("fr-FR,fr;q=0.9,de;q=0.5,en;q=0.4", Some(Lang::De));
        check(
            "fr-CH, fr;q=0.9, en;q=0.8, de;q=0.7, *;q=0.5",
            Some(Lang::En),
        );
        check("de-AT", Some(Lang::De));
        check("en;q=0.5,de;q=0.6", Some(Lang::De));
        check("de;q=0,en;q=0.1", Some(Lang::En));
        check("fr, it", None);
        check("", None);
        check(";;;,,q=", None);
    }

    #[test]
    fn the_cookie_wins_over_the_browser_and_english_is_the_fallback() {
        assert_eq!(negotiate(Some(Lang::En), Some("de-DE")), Lang::En);
        assert_eq!(negotiate(None, Some("de-DE")), Lang::De);
        assert_eq!(negotiate(None, Some("fr")), Lang::En);
        assert_eq!(negotiate(None, None), Lang::En);
        let mut h = HeaderMap::new();
        h.insert(header::ACCEPT_LANGUAGE, "en-US".parse().unwrap());
        h.insert(header::COOKIE, "theme=dark; lang=de".parse().unwrap());
        assert_eq!(of_request(&h), Lang::De);
        // An unknown value in the cookie is ignored, not an error.
        h.insert(header::COOKIE, "lang=xx".parse().unwrap());
        assert_eq!(of_request(&h), Lang::En);
    }

    #[test]
    fn numbers_and_money_read_as_each_language_writes_them() {
        assert_eq!(Lang::De.num(3.2149, 2), "3,21");
        assert_eq!(Lang::En.num(3.2149, 2), "3.21");
        assert_eq!(Lang::En.num(-0.0001, 2), "0.00");
        assert_eq!(Lang::De.money(0.374, "EUR"), "0,37\u{a0}€");
        assert_eq!(Lang::En.money(0.374, "EUR"), "€0.37");
        assert_eq!(Lang::En.money(1.5, "CHF"), "CHF\u{a0}1.50");
    }

    #[test]
    fn every_placeholder_is_in_both_languages() {
        let pairs = [
            (EN.warn_disk.text, DE.warn_disk.text, 1),
            (EN.warn_hot.text, DE.warn_hot.text, 1),
            (EN.cost_note, DE.cost_note, 1),
            (EN.chart_summary, DE.chart_summary, 5),
            (EN.chart_ago, DE.chart_ago, 1),
            (EN.storage_value, DE.storage_value, 2),
        ];
        for (en, de, n) in pairs {
            for i in 0..n {
                let p = format!("{{{i}}}");
                assert!(en.contains(&p) && de.contains(&p), "{p} in {en:?} / {de:?}");
            }
            let filled = fill(en, &["x"; 5]);
            assert!(!filled.contains('{'), "{filled}");
        }
    }
}
