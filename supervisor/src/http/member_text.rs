//! The strings of the signed-in pages (sign-in, statement, access log), German and English.
//! Kept apart from the overview's catalogue in `i18n`; one struct per language, so a missing
//! string does not compile.

use super::i18n::Lang;
use crate::audit::Action;

#[derive(Debug)]
pub struct MemberText {
    pub nav_statement: &'static str,
    pub nav_audit: &'static str,
    pub sign_in: &'static str,
    pub sign_out: &'static str,
    pub signed_in_as: &'static str,
    pub role_server_admin: &'static str,
    pub role_household_admin: &'static str,
    pub role_member: &'static str,

    pub signin_title: &'static str,
    pub signin_lead: &'static str,
    pub signin_user: &'static str,
    pub signin_user_hint: &'static str,
    pub signin_password: &'static str,
    pub signin_wrong: &'static str,
    /// {0}: seconds.
    pub signin_limited: &'static str,
    pub signin_unavailable: &'static str,
    pub signin_bad: &'static str,
    pub signin_cross_site: &'static str,
    pub signin_privacy: &'static str,

    pub statement_title: &'static str,
    /// {0}: the month.
    pub statement_so_far: &'static str,
    /// {0}: the month.
    pub statement_closed: &'static str,
    pub statement_none: &'static str,
    pub months_label: &'static str,
    pub yours: &'static str,
    pub base: &'static str,
    pub base_note: &'static str,
    pub direct: &'static str,
    pub direct_note: &'static str,
    pub shared: &'static str,
    pub shared_note: &'static str,
    pub total: &'static str,
    pub cost: &'static str,
    pub media: &'static str,
    pub member: &'static str,
    pub members: &'static str,
    pub households: &'static str,
    pub household: &'static str,
    pub device: &'static str,
    pub measured: &'static str,
    pub other_services: &'static str,
    pub estimated: &'static str,
    pub unattributed: &'static str,
    pub base_load: &'static str,
    /// {0}: watts, {1}: how it was found.
    pub base_load_value: &'static str,
    pub by_day: &'static str,
    pub by_day_empty: &'static str,
    pub by_month: &'static str,
    pub by_month_empty: &'static str,
    pub views_audited: &'static str,
    pub not_a_member: &'static str,

    pub setup_title: &'static str,
    pub setup_lead: &'static str,
    pub setup_done: &'static str,
    pub setup_code: &'static str,
    pub setup_user: &'static str,
    pub setup_password: &'static str,
    pub setup_password2: &'static str,
    pub setup_submit: &'static str,
    pub setup_wrong_code: &'static str,
    pub setup_bad_user: &'static str,
    pub setup_bad_password: &'static str,
    pub setup_user_exists: &'static str,

    pub audit_title: &'static str,
    pub audit_lead: &'static str,
    pub audit_head: &'static str,
    pub audit_time: &'static str,
    pub audit_actor: &'static str,
    pub audit_action: &'static str,
    pub audit_subject: &'static str,
    pub audit_detail: &'static str,
    pub audit_older: &'static str,
    pub audit_empty: &'static str,
    pub audit_system: &'static str,
    pub audit_cli: &'static str,
    pub actions: [&'static str; 11],
}

impl MemberText {
    pub fn of(lang: Lang) -> &'static MemberText {
        match lang {
            Lang::De => &DE,
            Lang::En => &EN,
        }
    }

    pub fn role(&self, role: super::session::Role) -> &'static str {
        match role {
            super::session::Role::ServerAdmin => self.role_server_admin,
            super::session::Role::HouseholdAdmin => self.role_household_admin,
            super::session::Role::Member => self.role_member,
        }
    }

    pub fn action(&self, a: Action) -> &'static str {
        let i = Action::ALL.iter().position(|x| *x == a).unwrap_or(0);
        self.actions[i]
    }
}

pub static EN: MemberText = MemberText {
    nav_statement: "Statement",
    nav_audit: "Access log",
    sign_in: "Sign in",
    sign_out: "Sign out",
    signed_in_as: "Signed in as",
    role_server_admin: "server admin",
    role_household_admin: "household admin",
    role_member: "member",

    signin_title: "Sign in",
    signin_lead: "With your Matrix account: the same name and password as in your Matrix app.",
    signin_user: "Matrix user name",
    signin_user_hint: "e.g. alice",
    signin_password: "Password",
    signin_wrong: "Wrong user name or password.",
    signin_limited: "Too many attempts. Please try again in {0} seconds.",
    signin_unavailable: "The Matrix server is not answering. Please try again shortly.",
    signin_bad: "Please fill in both fields.",
    signin_cross_site: "Signing in from another web site is not allowed.",
    signin_privacy: "Your password goes to this server's Matrix server and nowhere else; this page keeps no Matrix key. Signing in and failed attempts are written to the access log.",

    statement_title: "Statement",
    statement_so_far: "{0} so far — not closed yet",
    statement_closed: "{0} — closed; these figures no longer change",
    statement_none: "There is no statement for this month yet.",
    months_label: "Month",
    yours: "Your share",
    base: "Base load",
    base_note: "What the device uses just by being on, shared equally by everyone.",
    direct: "Your own use",
    direct_note: "The work the server did for your requests.",
    shared: "Shared work",
    shared_note: "Work for nobody in particular (federation, maintenance), shared equally.",
    total: "Total",
    cost: "Cost",
    media: "Media stored",
    member: "Member",
    members: "Members",
    households: "Households",
    household: "Household",
    device: "The whole device",
    measured: "Measured",
    other_services: "Other services on the device",
    estimated: "Of it estimated (sensor gaps)",
    unattributed: "Unattributed",
    base_load: "Base load",
    base_load_value: "{0} ({1})",
    by_day: "Energy by day",
    by_day_empty: "No days measured yet.",
    by_month: "Energy by month",
    by_month_empty: "No month is closed yet.",
    views_audited: "Whenever an admin views your figures it is written to the access log, and you see it there.",
    not_a_member: "Your account is not counted as a member (yet): members are synced from the Matrix server every few minutes.",

    setup_title: "First start",
    setup_lead: "Welcome. Enter the setup code from the file hearth-setup.txt on the SD card's boot partition (or from the screen of the box), then choose the name and password of the first Matrix account: it becomes the server's administrator. The code works once.",
    setup_done: "This box is set up. Sign in with your Matrix account.",
    setup_code: "Setup code",
    setup_user: "Your Matrix user name",
    setup_password: "Password (at least 10 characters)",
    setup_password2: "Password again",
    setup_submit: "Create the account",
    setup_wrong_code: "That is not the setup code.",
    setup_bad_user: "Use lower-case letters, digits and . _ = - / for the user name.",
    setup_bad_password: "The passwords differ or are shorter than 10 characters.",
    setup_user_exists: "That user name is taken; choose another.",

    audit_title: "Access log",
    audit_lead: "Every access to member data is written here, each entry sealed with the hash of the one before: changing, removing or reordering an entry breaks the chain, and `hearth-supervisor audit verify` names the first bad one. You see the entries about you.",
    audit_head: "Newest seal of the whole log — note it down to check later that nothing was cut off",
    audit_time: "Time",
    audit_actor: "Who",
    audit_action: "What",
    audit_subject: "About",
    audit_detail: "Details",
    audit_older: "Older entries",
    audit_empty: "No entries you may see yet.",
    audit_system: "the supervisor",
    audit_cli: "an administrator on the device",
    actions: [
        "viewed a statement",
        "viewed access-log entries",
        "exported data",
        "changed a household",
        "changed a limit",
        "asked the Matrix server's admin interface",
        "was refused access",
        "signed in",
        "a sign-in was refused",
        "switched maintenance mode",
        "chose the server's permanent name",
    ],
};

pub static DE: MemberText = MemberText {
    nav_statement: "Abrechnung",
    nav_audit: "Zugriffsprotokoll",
    sign_in: "Anmelden",
    sign_out: "Abmelden",
    signed_in_as: "Angemeldet als",
    role_server_admin: "Server-Admin",
    role_household_admin: "Haushalts-Admin",
    role_member: "Mitglied",

    signin_title: "Anmelden",
    signin_lead: "Mit Ihrem Matrix-Konto: derselbe Name und dasselbe Passwort wie in Ihrer Matrix-App.",
    signin_user: "Matrix-Benutzername",
    signin_user_hint: "z. B. alice",
    signin_password: "Passwort",
    signin_wrong: "Benutzername oder Passwort falsch.",
    signin_limited: "Zu viele Versuche. Bitte in {0} Sekunden erneut versuchen.",
    signin_unavailable: "Der Matrix-Server antwortet gerade nicht. Bitte gleich noch einmal versuchen.",
    signin_bad: "Bitte beide Felder ausfüllen.",
    signin_cross_site: "Die Anmeldung von einer anderen Website aus ist nicht erlaubt.",
    signin_privacy: "Ihr Passwort geht an den Matrix-Server dieses Geräts und sonst nirgendwohin; diese Seite behält keinen Matrix-Schlüssel. Anmeldungen und Fehlversuche stehen im Zugriffsprotokoll.",

    statement_title: "Abrechnung",
    statement_so_far: "{0} bis jetzt — noch nicht abgeschlossen",
    statement_closed: "{0} — abgeschlossen; diese Zahlen ändern sich nicht mehr",
    statement_none: "Für diesen Monat gibt es noch keine Abrechnung.",
    months_label: "Monat",
    yours: "Ihr Anteil",
    base: "Grundlast",
    base_note: "Was das Gerät schon durchs Eingeschaltetsein braucht, zu gleichen Teilen für alle.",
    direct: "Eigene Nutzung",
    direct_note: "Die Arbeit, die der Server für Ihre Anfragen getan hat.",
    shared: "Gemeinsame Arbeit",
    shared_note: "Arbeit für niemanden im Besonderen (Föderation, Wartung), zu gleichen Teilen.",
    total: "Gesamt",
    cost: "Kosten",
    media: "Gespeicherte Medien",
    member: "Mitglied",
    members: "Mitglieder",
    households: "Haushalte",
    household: "Haushalt",
    device: "Das ganze Gerät",
    measured: "Gemessen",
    other_services: "Andere Dienste auf dem Gerät",
    estimated: "Davon geschätzt (Sensorlücken)",
    unattributed: "Nicht zugeordnet",
    base_load: "Grundlast",
    base_load_value: "{0} ({1})",
    by_day: "Energie nach Tagen",
    by_day_empty: "Noch keine Tage gemessen.",
    by_month: "Energie nach Monaten",
    by_month_empty: "Noch kein Monat abgeschlossen.",
    views_audited: "Jedes Mal, wenn ein Admin Ihre Zahlen ansieht, steht das im Zugriffsprotokoll, und Sie sehen es dort.",
    not_a_member: "Ihr Konto zählt (noch) nicht als Mitglied: Mitglieder werden alle paar Minuten vom Matrix-Server übernommen.",

    setup_title: "Erster Start",
    setup_lead: "Willkommen. Geben Sie den Einrichtungscode aus der Datei hearth-setup.txt auf der Boot-Partition der SD-Karte ein (oder vom Bildschirm des Geräts) und wählen Sie Namen und Passwort des ersten Matrix-Kontos: Es wird Administrator des Servers. Der Code gilt nur einmal.",
    setup_done: "Dieses Gerät ist eingerichtet. Melden Sie sich mit Ihrem Matrix-Konto an.",
    setup_code: "Einrichtungscode",
    setup_user: "Ihr Matrix-Benutzername",
    setup_password: "Passwort (mindestens 10 Zeichen)",
    setup_password2: "Passwort wiederholen",
    setup_submit: "Konto anlegen",
    setup_wrong_code: "Das ist nicht der Einrichtungscode.",
    setup_bad_user: "Bitte nur Kleinbuchstaben, Ziffern und . _ = - / im Benutzernamen.",
    setup_bad_password: "Die Passwörter sind verschieden oder kürzer als 10 Zeichen.",
    setup_user_exists: "Dieser Benutzername ist vergeben; bitte einen anderen wählen.",

    audit_title: "Zugriffsprotokoll",
    audit_lead: "Jeder Zugriff auf Daten von Mitgliedern steht hier, jeder Eintrag versiegelt mit dem Hash des vorigen: Wer einen Eintrag ändert, löscht oder umsortiert, bricht die Kette, und `hearth-supervisor audit verify` nennt den ersten schlechten. Sie sehen die Einträge, die Sie betreffen.",
    audit_head: "Neuestes Siegel des ganzen Protokolls — notieren Sie es, um später zu prüfen, dass nichts abgeschnitten wurde",
    audit_time: "Zeit",
    audit_actor: "Wer",
    audit_action: "Was",
    audit_subject: "Betrifft",
    audit_detail: "Einzelheiten",
    audit_older: "Ältere Einträge",
    audit_empty: "Noch keine Einträge, die Sie sehen dürfen.",
    audit_system: "der Supervisor",
    audit_cli: "ein Administrator am Gerät",
    actions: [
        "hat eine Abrechnung angesehen",
        "hat Protokolleinträge angesehen",
        "hat Daten exportiert",
        "hat einen Haushalt geändert",
        "hat ein Limit geändert",
        "hat die Admin-Schnittstelle des Matrix-Servers gefragt",
        "wurde abgewiesen",
        "hat sich angemeldet",
        "eine Anmeldung wurde abgewiesen",
        "hat den Wartungsmodus umgeschaltet",
        "hat den dauerhaften Namen des Servers gewählt",
    ],
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_action_has_words_in_both_languages() {
        assert_eq!(Action::ALL.len(), EN.actions.len());
        for lang in [Lang::En, Lang::De] {
            let t = MemberText::of(lang);
            for a in Action::ALL {
                assert!(!t.action(a).is_empty());
            }
        }
        assert_eq!(EN.action(Action::Denied), "was refused access");
        assert_eq!(DE.action(Action::SignIn), "hat sich angemeldet");
    }
}
