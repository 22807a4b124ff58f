//! The strings of the updates page (`/update`), in German and English: one [`UpdateText`] per
//! language, so a string missing in one language does not compile. `{0}` is filled with
//! [`super::i18n::fill`].

use super::i18n::Lang;

pub struct UpdateText {
    pub lead: &'static str,
    /// `{0}`: the version, `{1}`: the slot.
    pub running: &'static str,
    pub last_title: &'static str,
    pub never: &'static str,
    /// `{0}`: version, `{1}`: when.
    pub writing: &'static str,
    /// `{0}`: version, `{1}`: minutes.
    pub trial: &'static str,
    /// `{0}`: version, `{1}`: when, `{2}`: the version before.
    pub committed: &'static str,
    /// `{0}`: version, `{1}`: when, `{2}`: why.
    pub rolled_back: &'static str,
    /// `{0}`: version, `{1}`: when, `{2}`: why.
    pub interrupted: &'static str,
    pub available_title: &'static str,
    /// `{0}`: version, `{1}`: release date.
    pub available: &'static str,
    pub up_to_date: &'static str,
    pub not_checked: &'static str,
    pub off: &'static str,
    /// `{0}`: the error.
    pub check_failed: &'static str,
    pub tonight: &'static str,
    /// `{0}`: until when.
    pub postponed: &'static str,
    pub update_now: &'static str,
    pub postpone: &'static str,
    pub resume: &'static str,
    pub started: &'static str,
    pub postponed_done: &'static str,
    pub resumed: &'static str,
    pub may_not: &'static str,
    pub how: &'static str,
}

pub static EN: UpdateText = UpdateText {
    lead: "Updates keep this server patched. A new release is written into the other half of the card and started once on trial; it is kept only when Synapse runs well on it, otherwise the box goes back to the release before, with the data as it was.",
    running: "This server runs hearth {0} (card half {1}).",
    last_title: "The last update",
    never: "No update has run on this server yet.",
    writing: "Release {0} is being written into the other half of the card (since {1}).",
    trial: "Release {0} is on trial: it is kept once Synapse has run well on it for {1} minutes.",
    committed: "Updated to release {0} on {1} (before: {2}).",
    rolled_back: "The update to release {0} was rolled back on {1}; the release before runs again, with the data as it was before the update. Why: {2}",
    interrupted: "Writing release {0} stopped on {1}; nothing changed. Why: {2}",
    available_title: "Available",
    available: "Release {0} ({1}) is available.",
    up_to_date: "This server runs the newest release.",
    not_checked: "Not looked for new releases yet.",
    off: "Updates are off: no source of releases is set (one line in /etc/hearth/update-source).",
    check_failed: "Could not look for new releases: {0}",
    tonight: "It is installed tonight, at a random time between 02:30 and 05:30.",
    postponed: "Postponed by a server admin until {0}.",
    update_now: "Update now",
    postpone: "Postpone a week",
    resume: "Do not postpone",
    started: "The update has started. The server restarts on its own; the chat is away for a few minutes.",
    postponed_done: "Updates are postponed for a week.",
    resumed: "Updates are no longer postponed.",
    may_not: "Only a server admin can start or postpone updates.",
    how: "Every release is signed by the cooperative; this box checks the signature with its own key before it writes a byte.",
};

pub static DE: UpdateText = UpdateText {
    lead: "Aktualisierungen halten diesen Server auf dem neuesten Stand. Eine neue Version wird in die andere Hälfte der Karte geschrieben und einmal zur Probe gestartet; sie bleibt nur, wenn Synapse darauf gut läuft, sonst kehrt die Box zur Version davor zurück, mit den Daten wie vorher.",
    running: "Dieser Server läuft mit hearth {0} (Kartenhälfte {1}).",
    last_title: "Die letzte Aktualisierung",
    never: "Auf diesem Server lief noch keine Aktualisierung.",
    writing: "Version {0} wird in die andere Hälfte der Karte geschrieben (seit {1}).",
    trial: "Version {0} läuft zur Probe: sie bleibt, sobald Synapse {1} Minuten lang gut darauf lief.",
    committed: "Am {1} auf Version {0} aktualisiert (vorher: {2}).",
    rolled_back: "Die Aktualisierung auf Version {0} wurde am {1} zurückgenommen; die Version davor läuft wieder, mit den Daten wie vor der Aktualisierung. Grund: {2}",
    interrupted: "Das Schreiben von Version {0} brach am {1} ab; nichts hat sich geändert. Grund: {2}",
    available_title: "Verfügbar",
    available: "Version {0} ({1}) ist verfügbar.",
    up_to_date: "Dieser Server hat die neueste Version.",
    not_checked: "Noch nicht nach neuen Versionen gesucht.",
    off: "Aktualisierungen sind aus: keine Quelle für Versionen eingestellt (eine Zeile in /etc/hearth/update-source).",
    check_failed: "Die Suche nach neuen Versionen schlug fehl: {0}",
    tonight: "Sie wird heute Nacht installiert, zu einer zufälligen Zeit zwischen 02:30 und 05:30.",
    postponed: "Von einer Server-Administratorin bis {0} verschoben.",
    update_now: "Jetzt aktualisieren",
    postpone: "Eine Woche verschieben",
    resume: "Nicht mehr verschieben",
    started: "Die Aktualisierung hat begonnen. Der Server startet von selbst neu; der Chat ist ein paar Minuten weg.",
    postponed_done: "Aktualisierungen sind eine Woche verschoben.",
    resumed: "Aktualisierungen sind nicht mehr verschoben.",
    may_not: "Nur Server-Administratoren können Aktualisierungen starten oder verschieben.",
    how: "Jede Version ist von der Genossenschaft signiert; diese Box prüft die Signatur mit ihrem eigenen Schlüssel, bevor sie ein Byte schreibt.",
};

impl UpdateText {
    pub fn of(lang: Lang) -> &'static UpdateText {
        match lang {
            Lang::De => &DE,
            Lang::En => &EN,
        }
    }
}
