//! The strings of the name step on `/setup` and of the "is the box reachable" section, in
//! German and English: one [`NameText`] per language, so a string missing in one language does
//! not compile. `{0}`, `{1}` are filled with [`super::i18n::fill`].

use super::i18n::{fill, Lang, Said};
use crate::name::Refusal;

pub struct NameText {
    pub name_title: &'static str,
    pub name_lead: &'static str,
    pub choice_legend: &'static str,
    pub choice_cooperative: &'static str,
    pub cooperative_label: &'static str,
    pub cooperative_later: &'static str,
    pub choice_own: &'static str,
    pub own_domain: &'static str,
    pub own_hint: &'static str,
    pub check: &'static str,
    pub cooperative_unavailable: &'static str,
    pub cooperative_bad_label: &'static str,
    pub cooperative_token: &'static str,
    pub cooperative_token_missing: &'static str,

    pub confirm_title: &'static str,
    /// `{0}`: the name.
    pub confirm_lead: &'static str,
    /// `{0}`: the addresses.
    pub confirm_resolves: &'static str,
    pub confirm_never: &'static str,
    pub confirm_understood: &'static str,
    pub confirm_submit: &'static str,
    pub confirm_back: &'static str,
    pub confirm_missing: &'static str,

    /// `{0}`: the name.
    pub progress_title: &'static str,
    pub progress_lead: &'static str,
    pub progress_name: &'static str,
    pub progress_synapse: &'static str,
    pub progress_running: &'static str,
    pub progress_done: &'static str,
    pub progress_reload: &'static str,
    pub reload_now: &'static str,
    /// `{0}`: the job's result, `{1}`: the unit.
    pub job_refused: &'static str,
    /// `{0}`: the error.
    pub job_error: &'static str,
    pub name_first: &'static str,
    pub audit_failed: &'static str,

    pub refused_empty: &'static str,
    pub refused_port: &'static str,
    pub refused_ip: &'static str,
    pub refused_localhost: &'static str,
    pub refused_local: &'static str,
    /// `{0}`: the character.
    pub refused_character: &'static str,
    pub refused_one_label: &'static str,
    pub refused_empty_label: &'static str,
    /// `{0}`: the label.
    pub refused_label_too_long: &'static str,
    /// `{0}`: the label.
    pub refused_hyphen: &'static str,
    pub refused_too_long: &'static str,
    /// `{0}`: the resolver's answer.
    pub refused_unresolved: &'static str,
    /// `{0}`: where a Matrix server answered.
    pub refused_taken: &'static str,

    /// "Restore from a backup" instead of a new name (`setup_restore`).
    pub restore_offer: &'static str,
    pub restore_link: &'static str,
    pub restore_title: &'static str,
    pub restore_lead: &'static str,
    pub restore_source: &'static str,
    /// `{0}`: where the disk's backup is.
    pub restore_usb: &'static str,
    pub restore_usb_missing: &'static str,
    pub restore_cooperative: &'static str,
    pub restore_repository: &'static str,
    pub restore_credentials: &'static str,
    pub restore_key: &'static str,
    pub restore_key_hint: &'static str,
    pub restore_submit: &'static str,
    pub restore_back: &'static str,
    /// `{0}`: the root side's error.
    pub restore_failed: &'static str,
    pub restore_no_usb: &'static str,
    pub restore_bad_repository: &'static str,
    pub restore_bad_key: &'static str,
    pub restore_bad_credentials: &'static str,
    /// `{0}`: why.
    pub restore_start_failed: &'static str,
    pub restoring_title: &'static str,
    pub restoring_lead: &'static str,

    /// The overview's words while the box waits for its name.
    pub waiting: Said,
    pub waiting_link: &'static str,

    pub reach_title: &'static str,
    pub reach_lead: &'static str,
    pub reach_name: &'static str,
    pub reach_resolves: &'static str,
    /// `{0}`: the addresses.
    pub reach_resolves_to: &'static str,
    /// `{0}`: the resolver's answer.
    pub reach_unresolved: &'static str,
    pub reach_not_checked: &'static str,
    /// `{0}`: local time.
    pub reach_checked_at: &'static str,
    pub reach_certificate: &'static str,
    /// `{0}`: issuer, `{1}`: valid until.
    pub reach_cert_ca: &'static str,
    /// `{0}`: valid until.
    pub reach_cert_placeholder: &'static str,
    /// `{0}`: why.
    pub reach_cert_unreadable: &'static str,
    pub reach_cert_expired: &'static str,
    pub reach_acme: &'static str,
    /// `{0}`: local time, `{1}`: message.
    pub reach_acme_ok: &'static str,
    /// `{0}`: local time, `{1}`: message.
    pub reach_acme_failed: &'static str,
    pub reach_acme_none: &'static str,
    pub reach_outside: &'static str,
    pub reach_outside_text: &'static str,
    pub reach_outside_waiting: &'static str,
    pub reach_outside_ok: &'static str,
    pub reach_outside_failed: &'static str,
    pub reach_outside_unasked: &'static str,
    pub reach_tunnel: &'static str,
    /// `{0}`: the edge, `{1}`: since (local time).
    pub reach_tunnel_up: &'static str,
    /// `{0}`: the last error.
    pub reach_tunnel_connecting: &'static str,
    /// `{0}`: the cooperative's reason.
    pub reach_tunnel_refused: &'static str,
    pub reach_tunnel_starting: &'static str,
    /// `{0}`: why it cannot be read.
    pub reach_tunnel_unknown: &'static str,
}

impl NameText {
    pub fn of(lang: Lang) -> &'static NameText {
        match lang {
            Lang::De => &DE,
            Lang::En => &EN,
        }
    }

    /// Why a name is refused, in words a person can act on.
    pub fn refusal(&self, r: &Refusal) -> String {
        match r {
            Refusal::Empty => self.refused_empty.into(),
            Refusal::Port => self.refused_port.into(),
            Refusal::IpLiteral => self.refused_ip.into(),
            Refusal::Localhost => self.refused_localhost.into(),
            Refusal::DotLocal => self.refused_local.into(),
            Refusal::Character(c) => fill(self.refused_character, &[&c.to_string()]),
            Refusal::OneLabel => self.refused_one_label.into(),
            Refusal::EmptyLabel => self.refused_empty_label.into(),
            Refusal::LabelTooLong(l) => fill(self.refused_label_too_long, &[l]),
            Refusal::Hyphen(l) => fill(self.refused_hyphen, &[l]),
            Refusal::TooLong => self.refused_too_long.into(),
            Refusal::Unresolved(why) => fill(self.refused_unresolved, &[why]),
            Refusal::Taken(at) => fill(self.refused_taken, &[at]),
        }
    }
}

pub static EN: NameText = NameText {
    name_title: "Choose the server's name",
    name_lead: "Your Matrix addresses will end in this name (@anna:family.example.org), and your phones reach the box by it, at home and away. Choose carefully: a Matrix server's name can never be changed.",
    choice_legend: "Which name?",
    choice_cooperative: "A name under the cooperative's domain",
    cooperative_label: "Your name",
    cooperative_later: "Available when the cooperative's relay is set up. Until then, use your own domain.",
    choice_own: "Your family's own domain",
    own_domain: "Domain (e.g. family.example.org)",
    own_hint: "Point the domain (an A or AAAA record) at your home connection first, and forward ports 80 and 443 to this box.",
    check: "Check the name",
    cooperative_unavailable: "Names under the cooperative's domain are not available yet.",
    cooperative_bad_label: "Use lower-case letters, digits and hyphens (no dots) for your name under the cooperative's domain.",
    cooperative_token: "Enrolment code from the cooperative",
    cooperative_token_missing: "Enter the enrolment code the cooperative gave you: it lets this box take the name.",

    confirm_title: "Confirm the name",
    confirm_lead: "The server will be called {0}.",
    confirm_resolves: "The name resolves to {0}.",
    confirm_never: "This name can never change. Every account and every message will carry it. Another name later means a new server, and everyone starts over.",
    confirm_understood: "I understand that this name can never change.",
    confirm_submit: "Set up the server with this name",
    confirm_back: "Choose another name",
    confirm_missing: "Please confirm that you understand the name can never change.",

    progress_title: "Setting up {0}",
    progress_lead: "The box writes the name, prepares Synapse and asks for a certificate. The first start takes a few minutes.",
    progress_name: "The name",
    progress_synapse: "Synapse",
    progress_running: "being set up…",
    progress_done: "written",
    progress_reload: "This page reloads by itself every 5 seconds.",
    reload_now: "Reload now",
    job_refused: "The box refused the name ({0}). The reason is in its journal: journalctl -u '{1}'. Check the name and try again.",
    job_error: "The box could not be asked to set the name up: {0}",
    name_first: "Choose the server's name first.",
    audit_failed: "The audit log cannot be written, so nothing was changed.",

    refused_empty: "Enter a name.",
    refused_port: "Enter the name alone, without https:// and without a port.",
    refused_ip: "Enter a name, not an IP address: phones find a server by its name, and addresses change.",
    refused_localhost: "localhost is only this box itself: nobody else could reach it.",
    refused_local: "Names ending in .local work only inside your home network: phones away from home could not reach the box.",
    refused_character: "The name contains \u{201c}{0}\u{201d}: use lower-case letters a–z, digits, hyphens and dots (for umlauts, the xn-- form).",
    refused_one_label: "That is not a full name: it needs at least one dot, like family.example.org.",
    refused_empty_label: "The name has two dots in a row, or starts or ends with a dot.",
    refused_label_too_long: "The part \u{201c}{0}\u{201d} is longer than 63 characters.",
    refused_hyphen: "The part \u{201c}{0}\u{201d} starts or ends with a hyphen.",
    refused_too_long: "The name is too long.",
    refused_unresolved: "The name does not resolve ({0}). Point it at your home connection first, wait a few minutes, and try again.",
    refused_taken: "A Matrix server already answers for this name ({0}). Choose another.",

    restore_offer: "Had a server before and its card died? Bring it back instead of starting over.",
    restore_link: "Restore from a backup",
    restore_title: "Restore the server from a backup",
    restore_lead: "The box brings back the server as it was at its last backup: the same name, accounts and passwords, rooms, messages, pictures, households and access log. Phones sign in again with the old passwords.",
    restore_source: "Where is the backup?",
    restore_usb: "On the USB disk plugged into the box ({0})",
    restore_usb_missing: "No backup disk found: plug in the USB disk with the backup, wait a few seconds and reload this page.",
    restore_cooperative: "In the cooperative's store",
    restore_repository: "The store's address (rest:https://…, from the cooperative)",
    restore_credentials: "The store's user and password (user:password, from the cooperative)",
    restore_key: "Recovery key (from the printed page)",
    restore_key_hint: "The key was shown once when backups were set up. Without it nobody can read the backup, not the cooperative, not us.",
    restore_submit: "Restore the server",
    restore_back: "Set up a new server instead",
    restore_failed: "The restore did not work: {0}",
    restore_no_usb: "No backup was found on a USB disk. Plug it in, or choose the cooperative's store.",
    restore_bad_repository: "Enter the store's address as the cooperative gave it: it starts with rest:https://",
    restore_bad_key: "Enter the recovery key on one line, as printed.",
    restore_bad_credentials: "Enter the store's user and password as user:password, or leave the field empty.",
    restore_start_failed: "The box could not begin the restore: {0}",
    restoring_title: "Restoring the server",
    restoring_lead: "The box reads the backup, checks it and puts everything back. This takes a few minutes; do not unplug the box.",

    waiting: Said {
        title: "Ready to be set up",
        text: "The box is waiting for its name. Open the setup and enter the setup code from hearth-setup.txt on the SD card's boot partition.",
    },
    waiting_link: "Open the setup",

    reach_title: "Reachable?",
    reach_lead: "What the box itself can check about its name. It says what it checked, and nothing more.",
    reach_name: "Server name",
    reach_resolves: "Name in the DNS",
    reach_resolves_to: "resolves to {0}",
    reach_unresolved: "does not resolve: {0}",
    reach_not_checked: "not checked yet",
    reach_checked_at: "checked from this box at {0}",
    reach_certificate: "Certificate",
    reach_cert_ca: "issued by {0}, valid until {1}",
    reach_cert_placeholder: "a self-signed placeholder (valid until {0}): phones will not trust it until the certificate authority issues one",
    reach_cert_unreadable: "cannot be read: {0}",
    reach_cert_expired: "expired",
    reach_acme: "Last certificate request",
    reach_acme_ok: "{0}: succeeded ({1})",
    reach_acme_failed: "{0}: failed ({1})",
    reach_acme_none: "none yet",
    reach_outside: "Reachable from outside",
    reach_outside_text: "not checked: the cooperative looks from outside at only boxes named under the cooperative's domain. Checked here: the name resolves from this box, and which certificate the box serves.",
    reach_outside_waiting: "not checked yet: the cooperative looks a few seconds after the tunnel is up, then every 15 minutes",
    reach_outside_ok: "yes: the cooperative reached the box at {0} as a phone would (the name resolves to {1}, the certificate is valid until {2}, Matrix answers)",
    reach_outside_failed: "no: {0} (the cooperative looked at {1})",
    reach_outside_unasked: "not known: the cooperative could not be asked ({0}, at {1})",
    reach_tunnel: "Tunnel to the cooperative",
    reach_tunnel_up: "connected to {0} since {1}",
    reach_tunnel_connecting: "not connected, trying again ({0})",
    reach_tunnel_refused: "refused by the cooperative: {0}",
    reach_tunnel_starting: "starting",
    reach_tunnel_unknown: "state unknown: {0}",
};

pub static DE: NameText = NameText {
    name_title: "Den Namen des Servers wählen",
    name_lead: "Ihre Matrix-Adressen enden auf diesen Namen (@anna:familie.example.org), und Ihre Telefone erreichen das Gerät darüber, zu Hause und unterwegs. Wählen Sie mit Bedacht: Der Name eines Matrix-Servers lässt sich nie mehr ändern.",
    choice_legend: "Welcher Name?",
    choice_cooperative: "Ein Name unter der Domain der Genossenschaft",
    cooperative_label: "Ihr Name",
    cooperative_later: "Verfügbar, sobald das Relay der Genossenschaft eingerichtet ist. Bis dahin nutzen Sie Ihre eigene Domain.",
    choice_own: "Die eigene Domain der Familie",
    own_domain: "Domain (z. B. familie.example.org)",
    own_hint: "Lassen Sie die Domain zuerst (A- oder AAAA-Eintrag) auf Ihren Internetanschluss zeigen und leiten Sie die Ports 80 und 443 an dieses Gerät weiter.",
    check: "Namen prüfen",
    cooperative_unavailable: "Namen unter der Domain der Genossenschaft sind noch nicht verfügbar.",
    cooperative_bad_label: "Verwenden Sie für Ihren Namen unter der Domain der Genossenschaft Kleinbuchstaben, Ziffern und Bindestriche (keine Punkte).",
    cooperative_token: "Anmeldecode der Genossenschaft",
    cooperative_token_missing: "Geben Sie den Anmeldecode ein, den Ihnen die Genossenschaft gegeben hat: Mit ihm erhält dieses Gerät den Namen.",

    confirm_title: "Den Namen bestätigen",
    confirm_lead: "Der Server wird {0} heißen.",
    confirm_resolves: "Der Name zeigt auf {0}.",
    confirm_never: "Dieser Name lässt sich nie mehr ändern. Jedes Konto und jede Nachricht trägt ihn. Ein anderer Name später heißt: ein neuer Server, und alle fangen von vorn an.",
    confirm_understood: "Ich habe verstanden, dass sich dieser Name nie mehr ändern lässt.",
    confirm_submit: "Den Server mit diesem Namen einrichten",
    confirm_back: "Einen anderen Namen wählen",
    confirm_missing: "Bitte bestätigen Sie, dass sich der Name nie mehr ändern lässt.",

    progress_title: "{0} wird eingerichtet",
    progress_lead: "Das Gerät schreibt den Namen, bereitet Synapse vor und beantragt ein Zertifikat. Der erste Start dauert einige Minuten.",
    progress_name: "Der Name",
    progress_synapse: "Synapse",
    progress_running: "wird eingerichtet …",
    progress_done: "geschrieben",
    progress_reload: "Diese Seite lädt sich alle 5 Sekunden von selbst neu.",
    reload_now: "Jetzt neu laden",
    job_refused: "Das Gerät hat den Namen abgelehnt ({0}). Der Grund steht in seinem Journal: journalctl -u '{1}'. Prüfen Sie den Namen und versuchen Sie es erneut.",
    job_error: "Das Gerät konnte nicht gebeten werden, den Namen einzurichten: {0}",
    name_first: "Wählen Sie zuerst den Namen des Servers.",
    audit_failed: "Das Zugriffsprotokoll kann nicht geschrieben werden, daher wurde nichts geändert.",

    refused_empty: "Geben Sie einen Namen ein.",
    refused_port: "Geben Sie nur den Namen ein, ohne https:// und ohne Port.",
    refused_ip: "Geben Sie einen Namen ein, keine IP-Adresse: Telefone finden einen Server über seinen Namen, und Adressen ändern sich.",
    refused_localhost: "localhost ist nur dieses Gerät selbst: Niemand sonst könnte es erreichen.",
    refused_local: "Namen auf .local gelten nur im eigenen Heimnetz: Telefone unterwegs könnten das Gerät nicht erreichen.",
    refused_character: "Der Name enthält \u{201e}{0}\u{201c}: Verwenden Sie Kleinbuchstaben a–z, Ziffern, Bindestriche und Punkte (für Umlaute die xn--Form).",
    refused_one_label: "Das ist kein vollständiger Name: Er braucht mindestens einen Punkt, etwa familie.example.org.",
    refused_empty_label: "Der Name hat zwei Punkte hintereinander oder beginnt oder endet mit einem Punkt.",
    refused_label_too_long: "Der Teil \u{201e}{0}\u{201c} ist länger als 63 Zeichen.",
    refused_hyphen: "Der Teil \u{201e}{0}\u{201c} beginnt oder endet mit einem Bindestrich.",
    refused_too_long: "Der Name ist zu lang.",
    refused_unresolved: "Der Name lässt sich nicht auflösen ({0}). Lassen Sie ihn zuerst auf Ihren Anschluss zeigen, warten Sie einige Minuten und versuchen Sie es erneut.",
    refused_taken: "Unter diesem Namen antwortet bereits ein Matrix-Server ({0}). Wählen Sie einen anderen.",

    restore_offer: "Gab es schon einen Server, dessen Karte gestorben ist? Holen Sie ihn zurück, statt neu anzufangen.",
    restore_link: "Aus einer Sicherung wiederherstellen",
    restore_title: "Den Server aus einer Sicherung wiederherstellen",
    restore_lead: "Das Gerät holt den Server so zurück, wie er bei der letzten Sicherung war: derselbe Name, dieselben Konten und Passwörter, Räume, Nachrichten, Bilder, Haushalte und das Zugriffsprotokoll. Telefone melden sich mit den alten Passwörtern wieder an.",
    restore_source: "Wo ist die Sicherung?",
    restore_usb: "Auf der USB-Platte am Gerät ({0})",
    restore_usb_missing: "Keine Sicherungsplatte gefunden: Schließen Sie die USB-Platte mit der Sicherung an, warten Sie einige Sekunden und laden Sie diese Seite neu.",
    restore_cooperative: "Im Speicher der Genossenschaft",
    restore_repository: "Die Adresse des Speichers (rest:https://…, von der Genossenschaft)",
    restore_credentials: "Benutzer und Passwort des Speichers (benutzer:passwort, von der Genossenschaft)",
    restore_key: "Wiederherstellungsschlüssel (vom ausgedruckten Blatt)",
    restore_key_hint: "Der Schlüssel wurde einmal gezeigt, als die Sicherungen eingerichtet wurden. Ohne ihn kann niemand die Sicherung lesen, nicht die Genossenschaft, nicht wir.",
    restore_submit: "Server wiederherstellen",
    restore_back: "Stattdessen einen neuen Server einrichten",
    restore_failed: "Die Wiederherstellung hat nicht geklappt: {0}",
    restore_no_usb: "Auf keiner USB-Platte wurde eine Sicherung gefunden. Schließen Sie sie an oder wählen Sie den Speicher der Genossenschaft.",
    restore_bad_repository: "Geben Sie die Adresse des Speichers so ein, wie die Genossenschaft sie angegeben hat: Sie beginnt mit rest:https://",
    restore_bad_key: "Geben Sie den Wiederherstellungsschlüssel in einer Zeile ein, wie gedruckt.",
    restore_bad_credentials: "Geben Sie Benutzer und Passwort des Speichers als benutzer:passwort ein oder lassen Sie das Feld leer.",
    restore_start_failed: "Das Gerät konnte die Wiederherstellung nicht beginnen: {0}",
    restoring_title: "Der Server wird wiederhergestellt",
    restoring_lead: "Das Gerät liest die Sicherung, prüft sie und legt alles zurück. Das dauert einige Minuten; trennen Sie das Gerät nicht vom Strom.",

    waiting: Said {
        title: "Bereit zur Einrichtung",
        text: "Das Gerät wartet auf seinen Namen. Öffnen Sie die Einrichtung und geben Sie den Einrichtungscode aus hearth-setup.txt auf der Boot-Partition der SD-Karte ein.",
    },
    waiting_link: "Einrichtung öffnen",

    reach_title: "Erreichbar?",
    reach_lead: "Was das Gerät selbst über seinen Namen prüfen kann. Es sagt, was es geprüft hat, und nicht mehr.",
    reach_name: "Name des Servers",
    reach_resolves: "Name im DNS",
    reach_resolves_to: "zeigt auf {0}",
    reach_unresolved: "lässt sich nicht auflösen: {0}",
    reach_not_checked: "noch nicht geprüft",
    reach_checked_at: "geprüft von diesem Gerät um {0}",
    reach_certificate: "Zertifikat",
    reach_cert_ca: "ausgestellt von {0}, gültig bis {1}",
    reach_cert_placeholder: "ein selbst signierter Platzhalter (gültig bis {0}): Telefone vertrauen ihm nicht, bis die Zertifizierungsstelle eines ausstellt",
    reach_cert_unreadable: "nicht lesbar: {0}",
    reach_cert_expired: "abgelaufen",
    reach_acme: "Letzter Zertifikatsantrag",
    reach_acme_ok: "{0}: erfolgreich ({1})",
    reach_acme_failed: "{0}: fehlgeschlagen ({1})",
    reach_acme_none: "noch keiner",
    reach_outside: "Von außen erreichbar",
    reach_outside_text: "nicht geprüft: Die Genossenschaft prüft von außen nur Geräte mit einem Namen unter ihrer Domain. Hier geprüft: Der Name löst von diesem Gerät aus auf, und welches Zertifikat das Gerät ausliefert.",
    reach_outside_waiting: "noch nicht geprüft: Die Genossenschaft prüft wenige Sekunden, nachdem der Tunnel steht, dann alle 15 Minuten",
    reach_outside_ok: "ja: Die Genossenschaft hat das Gerät um {0} erreicht, wie ein Handy es täte (der Name zeigt auf {1}, das Zertifikat gilt bis {2}, Matrix antwortet)",
    reach_outside_failed: "nein: {0} (geprüft von der Genossenschaft um {1})",
    reach_outside_unasked: "unbekannt: Die Genossenschaft war nicht zu erreichen ({0}, um {1})",
    reach_tunnel: "Tunnel zur Genossenschaft",
    reach_tunnel_up: "verbunden mit {0} seit {1}",
    reach_tunnel_connecting: "nicht verbunden, neuer Versuch läuft ({0})",
    reach_tunnel_refused: "von der Genossenschaft abgelehnt: {0}",
    reach_tunnel_starting: "startet",
    reach_tunnel_unknown: "Zustand unbekannt: {0}",
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_refusal_has_words_in_both_languages() {
        let all = [
            Refusal::Empty,
            Refusal::Port,
            Refusal::IpLiteral,
            Refusal::Localhost,
            Refusal::DotLocal,
            Refusal::Character('_'),
            Refusal::OneLabel,
            Refusal::EmptyLabel,
            Refusal::LabelTooLong("x".repeat(64)),
            Refusal::Hyphen("-a".into()),
            Refusal::TooLong,
            Refusal::Unresolved("no such name".into()),
            Refusal::Taken("https://x.example/.well-known/matrix/server".into()),
        ];
        for r in &all {
            let (en, de) = (EN.refusal(r), DE.refusal(r));
            assert!(!en.is_empty() && !de.is_empty() && en != de, "{r:?}");
            assert!(!en.contains("{0}") && !de.contains("{0}"), "{r:?}");
        }
    }
}
