//! The strings of the report page (`/report`), in German and English: one [`ReportText`] per
//! language, so a string missing in one language does not compile. `{0}` is filled with
//! [`super::i18n::fill`].

use super::i18n::Lang;

pub struct ReportText {
    pub nav: &'static str,
    pub title: &'static str,
    pub lead: &'static str,
    pub contains: &'static str,
    pub never: &'static str,
    pub unlinkable: &'static str,
    pub not_allowed: &'static str,
    /// `{0}`: since when.
    pub choice_on: &'static str,
    pub choice_off: &'static str,
    pub turn_on: &'static str,
    pub turn_off: &'static str,
    pub may_not: &'static str,
    pub changed_on: &'static str,
    pub changed_off: &'static str,
    pub not_enrolled: &'static str,
    /// `{0}`: how many.
    pub tokens: &'static str,
    pub preview_title: &'static str,
    /// `{0}`: the month.
    pub stage_draft: &'static str,
    pub stage_ready: &'static str,
    pub stage_so_far: &'static str,
    pub not_sent_off: &'static str,
    pub not_sent_not_allowed: &'static str,
    /// `{0}`: why.
    pub preview_failed: &'static str,
    pub outbox_title: &'static str,
    pub outbox_none: &'static str,
    pub col_month: &'static str,
    pub col_state: &'static str,
    pub col_when: &'static str,
    pub col_attempts: &'static str,
    pub col_error: &'static str,
    pub state_draft: &'static str,
    pub state_ready: &'static str,
    pub state_delivered: &'static str,
    /// `{0}`: when.
    pub next_attempt: &'static str,
    pub delivered_at: &'static str,
}

impl ReportText {
    pub fn of(lang: Lang) -> &'static ReportText {
        match lang {
            Lang::De => &DE,
            Lang::En => &EN,
        }
    }

    /// An outbox row's state in words.
    pub fn state(&self, state: &str) -> &'static str {
        match state {
            "delivered" => self.state_delivered,
            "ready" => self.state_ready,
            _ => self.state_draft,
        }
    }
}

static EN: ReportText = ReportText {
    nav: "Energy report",
    title: "The monthly energy report",
    lead: "Once a month this box can tell the cooperative how much energy it used, so that the \
        cooperative can publish what running hearth costs and who supplies the energy. It is sent \
        only if a server admin switches it on here.",
    contains: "What it says: the month's energy, limited to what the board can use at most, with \
        random noise added and rounded; the kind of board; the number of members as a range \
        (1, 2–5, 6–10, 11 or more); the share of the month it ran; Synapse's version; the \
        electricity supplier if it was set in the configuration.",
    never: "What it never says: names, households, the server's name or address, messages, or \
        anything finer than the whole month. It leaves at a random moment in the first three days \
        of the next month, whatever it says.",
    unlinkable: "It carries a token the cooperative signed without seeing it (blind signature): \
        the cooperative can tell that a member box sent it, not which one.",
    not_allowed: "The configuration does not allow reports ([report] enabled = false): nothing is \
        sent, whatever is chosen here.",
    choice_on: "This box sends the report, since {0}.",
    choice_off: "This box sends no report.",
    turn_on: "Send the monthly report",
    turn_off: "Stop sending",
    may_not: "Only server admins may change this.",
    changed_on: "Switched on: each month's report is sent in the first three days of the next \
        month.",
    changed_off: "Switched off: no more reports are sent. What was sent stays with the \
        cooperative, without a name.",
    not_enrolled: "The box is not enrolled at a cooperative (a name under the cooperative's \
        domain, on the setup page): reports wait here until it is.",
    tokens: "Unused tokens: {0}",
    preview_title: "The next report, exactly as it is sent",
    stage_draft: "The report of {0} is made and waits to be sent; its token is added when it \
        is sent.",
    stage_ready: "The report of {0} is ready to be sent, token included.",
    stage_so_far: "The report of {0} so far: it is made in the first three days of the next \
        month, with fresh noise; its token is added when it is sent.",
    not_sent_off: "Nothing is sent while the report is switched off.",
    not_sent_not_allowed: "Nothing is sent: the configuration does not allow it.",
    preview_failed: "The preview could not be made: {0}",
    outbox_title: "Made and sent",
    outbox_none: "No report has been made yet.",
    col_month: "Month",
    col_state: "State",
    col_when: "When",
    col_attempts: "Attempts",
    col_error: "Last error",
    state_draft: "made",
    state_ready: "ready",
    state_delivered: "delivered",
    next_attempt: "next attempt {0}",
    delivered_at: "delivered {0}",
};

static DE: ReportText = ReportText {
    nav: "Energiebericht",
    title: "Der monatliche Energiebericht",
    lead: "Einmal im Monat kann diese Box der Genossenschaft sagen, wie viel Energie sie \
        verbraucht hat, damit die Genossenschaft veröffentlichen kann, was der Betrieb von hearth \
        kostet und wer die Energie liefert. Er wird nur gesendet, wenn ein Server-Admin ihn hier \
        einschaltet.",
    contains: "Was er sagt: die Energie des Monats, begrenzt auf das, was die Platine höchstens \
        verbrauchen kann, mit zufälligem Rauschen und gerundet; die Art der Platine; die Zahl der \
        Mitglieder als Bereich (1, 2–5, 6–10, 11 oder mehr); den Anteil des Monats, in dem sie \
        lief; die Version von Synapse; den Stromlieferanten, wenn er in der Konfiguration \
        eingetragen ist.",
    never: "Was er nie sagt: Namen, Haushalte, den Namen oder die Adresse des Servers, \
        Nachrichten oder irgendetwas feiner als den ganzen Monat. Er geht zu einem zufälligen \
        Zeitpunkt in den ersten drei Tagen des Folgemonats hinaus, gleich was er sagt.",
    unlinkable: "Er trägt eine Marke, die die Genossenschaft unterschrieben hat, ohne sie zu \
        sehen (blinde Signatur): Die Genossenschaft erkennt, dass eine Mitglieds-Box ihn \
        geschickt hat, aber nicht welche.",
    not_allowed: "Die Konfiguration erlaubt keine Berichte ([report] enabled = false): Es wird \
        nichts gesendet, gleich was hier gewählt ist.",
    choice_on: "Diese Box sendet den Bericht, seit {0}.",
    choice_off: "Diese Box sendet keinen Bericht.",
    turn_on: "Monatsbericht senden",
    turn_off: "Nicht mehr senden",
    may_not: "Nur Server-Admins dürfen das ändern.",
    changed_on: "Eingeschaltet: Der Bericht jedes Monats wird in den ersten drei Tagen des \
        Folgemonats gesendet.",
    changed_off: "Ausgeschaltet: Es werden keine Berichte mehr gesendet. Was gesendet wurde, \
        bleibt bei der Genossenschaft, ohne Namen.",
    not_enrolled: "Die Box ist bei keiner Genossenschaft angemeldet (ein Name unter der Domain \
        der Genossenschaft, auf der Einrichtungsseite): Berichte warten hier, bis sie es ist.",
    tokens: "Unbenutzte Marken: {0}",
    preview_title: "Der nächste Bericht, genau so, wie er gesendet wird",
    stage_draft: "Der Bericht für {0} ist erstellt und wartet auf den Versand; seine Marke kommt \
        beim Senden dazu.",
    stage_ready: "Der Bericht für {0} ist versandbereit, mit Marke.",
    stage_so_far: "Der Bericht für {0} bis jetzt: Er wird in den ersten drei Tagen des \
        Folgemonats erstellt, mit neuem Rauschen; seine Marke kommt beim Senden dazu.",
    not_sent_off: "Solange der Bericht ausgeschaltet ist, wird nichts gesendet.",
    not_sent_not_allowed: "Es wird nichts gesendet: Die Konfiguration erlaubt es nicht.",
    preview_failed: "Die Vorschau ließ sich nicht erstellen: {0}",
    outbox_title: "Erstellt und gesendet",
    outbox_none: "Noch kein Bericht erstellt.",
    col_month: "Monat",
    col_state: "Stand",
    col_when: "Wann",
    col_attempts: "Versuche",
    col_error: "Letzter Fehler",
    state_draft: "erstellt",
    state_ready: "bereit",
    state_delivered: "zugestellt",
    next_attempt: "nächster Versuch {0}",
    delivered_at: "zugestellt {0}",
};
