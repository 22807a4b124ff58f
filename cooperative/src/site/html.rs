//! The pages, as HTML and as the JSON beside each. Every text that is not ours goes through
//! `esc`; the Markdown pages through `markdown::render`.

use serde_json::{json, Value};

use super::svg::{self, Bar};
use super::{Lang, Site, Snapshot, PAGES};
use crate::aggregates::{Cell, Period};
use crate::ledger::{Cents, Quarter, QuarterFinances};

pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn euros(c: Cents, l: Lang) -> String {
    let s = c.to_string();
    match l {
        Lang::De => format!("{} €", s.replace('.', ",")),
        Lang::En => format!("€{s}"),
    }
}

fn num(v: f64, places: usize, l: Lang) -> String {
    let s = format!("{v:.places$}");
    match l {
        Lang::De => s.replace('.', ","),
        Lang::En => s,
    }
}

const STYLE: &str = "body{font-family:sans-serif;max-width:52rem;margin:1rem auto;padding:0 1rem;\
line-height:1.45;color:#222}nav a{margin-right:1rem}table{border-collapse:collapse}\
td,th{border-bottom:1px solid #ddd;padding:.2rem .6rem;text-align:left}td.n{text-align:right}\
.chart{width:100%;height:auto;max-width:40rem}.warn{background:#fee;padding:.5rem}\
.big{font-size:1.6rem;font-weight:bold}small{color:#555}";

fn layout(site: &Site, l: Lang, path: &str, title: &str, body: &str) -> String {
    let other = if l == Lang::De { Lang::En } else { Lang::De };
    let mut nav = format!(
        "<a href=\"/?lang={c}\">{}</a><a href=\"/energy?lang={c}\">{}</a>\
         <a href=\"/finances?lang={c}\">{}</a>",
        l.t("Übersicht", "Overview"),
        l.t("Energie", "Energy"),
        l.t("Finanzen", "Finances"),
        c = l.code()
    );
    for p in PAGES {
        nav.push_str(&format!(
            "<a href=\"/pages/{p}?lang={}\">{}</a>",
            l.code(),
            page_name(p, l)
        ));
    }
    format!(
        "<!doctype html><html lang=\"{lc}\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <title>{t} – {n}</title><style>{STYLE}</style>\
         <link rel=\"alternate\" type=\"application/atom+xml\" href=\"/feed.atom\" title=\"{fr}\">\
         </head><body><header><p><strong>{n}</strong> · \
         <a href=\"{path}?lang={oc}\" hreflang=\"{oc}\">{on}</a> · \
         <a href=\"{path}?lang={lc}&amp;format=json\">JSON</a></p><nav>{nav}</nav></header>\
         <main><h1>{t}</h1>{body}</main><footer><p><small>{foot} \
         <a href=\"/feed.atom\">Atom</a></small></p></footer></body></html>",
        lc = l.code(),
        oc = other.code(),
        on = other.t("Deutsch", "English"),
        t = esc(title),
        n = esc(&site.name),
        fr = l.t("Quartalsberichte", "Quarterly reports"),
        foot = l.t(
            "Diese Seite lädt nichts von anderswo und braucht kein JavaScript.",
            "This site loads nothing from elsewhere and needs no JavaScript."
        ),
    )
}

fn page_name(p: &str, l: Lang) -> &'static str {
    match p {
        "legal" => l.t("Rechtliche Stellung", "Legal position"),
        "content" => l.t("Umgang mit Inhalten", "Content policy"),
        _ => l.t("Wer Daten einsehen kann", "Who can access data"),
    }
}

fn errors_box(s: &Snapshot, l: Lang) -> String {
    let mut out = String::new();
    if !s.ledger_errors.is_empty() {
        out.push_str(&format!(
            "<div class=\"warn\"><p>{}</p><ul>",
            l.t(
                "Im Kassenbuch stehen fehlerhafte Zeilen; sie fehlen in den Zahlen:",
                "The ledger has bad lines; they are left out of the figures:"
            )
        ));
        for e in &s.ledger_errors {
            out.push_str(&format!("<li><code>{}</code></li>", esc(e)));
        }
        out.push_str("</ul></div>");
    }
    if let Some(e) = &s.reports_error {
        out.push_str(&format!("<p class=\"warn\">{}</p>", esc(e)));
    }
    out
}

fn latest_finances(s: &Snapshot) -> Option<QuarterFinances> {
    Site::report_quarters(s)
        .first()
        .map(|q| s.ledger.quarter(*q))
}

fn runway_html(f: &QuarterFinances, l: Lang) -> String {
    let secured = f.months_secured.map_or("–".to_owned(), |m| num(m, 1, l));
    let per = f
        .cost_per_account_month
        .map_or("–".to_owned(), |c| euros(c, l));
    format!(
        "<p>{}: <span class=\"big\">{secured}</span> {}<br><small>{} {} / {} {}</small></p>\
         <p>{}: <span class=\"big\">{per}</span><br><small>{} {} / {} {}</small></p>",
        l.t("Betriebskosten gesichert für", "Running costs secured for"),
        l.t("Monate", "months"),
        l.t("Rücklagen", "reserves"),
        euros(f.reserves, l),
        l.t("mittlere Monatskosten", "mean monthly costs"),
        euros(f.mean_monthly_costs, l),
        l.t("Kosten je Konto und Monat", "Cost per account and month"),
        l.t("mittlere Monatskosten", "mean monthly costs"),
        euros(f.mean_monthly_costs, l),
        f.accounts.map_or("–".to_owned(), |a| a.to_string()),
        l.t("Konten", "accounts"),
    )
}

fn supplier_html(f: &QuarterFinances, l: Lang) -> String {
    let mut out = format!(
        "<h2>{}</h2><p>{}</p>",
        l.t("Strom", "Electricity"),
        match &f.supplier {
            Some(s) => format!("{}: {}", l.t("Anbieter", "Supplier"), esc(s)),
            None => l
                .t("Kein Anbieter im Kassenbuch.", "No supplier in the ledger.")
                .to_owned(),
        }
    );
    if !f.mix.is_empty() {
        out.push_str(&svg::shares(l.t("Strommix", "Energy mix"), &f.mix));
    }
    out
}

fn cell_row(name: &str, c: &Cell, k: usize, l: Lang) -> String {
    match c {
        Cell::Published(f) => format!(
            "<tr><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>\
             <td class=\"n\">{} ± {}</td><td class=\"n\">{}</td></tr>",
            esc(name),
            f.reports,
            num(f.total_kwh, 1, l),
            num(f.mean_kwh, 2, l),
            num(f.mean_error95_kwh, 2, l),
            num(f.median_kwh, 2, l),
        ),
        Cell::Withheld => format!(
            "<tr><td>{}</td><td colspan=\"4\">{} {k} {}</td></tr>",
            esc(name),
            l.t("zurückgehalten: weniger als", "withheld: fewer than"),
            l.t("Berichte", "reports"),
        ),
    }
}

fn period_html(p: &Period, k: usize, l: Lang) -> String {
    let head = format!(
        "<tr><th></th><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr>",
        l.t("Berichte", "Reports"),
        l.t("Summe kWh", "Total kWh"),
        l.t("Mittel kWh (± 95 %)", "Mean kWh (± 95 %)"),
        l.t("Median kWh", "Median kWh"),
    );
    let mut out = format!(
        "<h3>{}</h3><table>{head}{}",
        esc(&p.period),
        cell_row(l.t("alle", "all"), &p.all, k, l)
    );
    for (name, c) in &p.by_hardware {
        out.push_str(&cell_row(
            &format!("{} {name}", l.t("Gerät", "board")),
            c,
            k,
            l,
        ));
    }
    for (name, c) in &p.by_members {
        out.push_str(&cell_row(
            &format!("{} {name}", l.t("Mitglieder", "members")),
            c,
            k,
            l,
        ));
    }
    out.push_str("</table>");
    if let Some(h) = &p.histogram {
        let step = h.bin_top_kwh / h.counts.len() as f64;
        let bars: Vec<Bar> = h
            .counts
            .iter()
            .enumerate()
            .map(|(i, c)| Bar {
                label: format!(
                    "{}–{}",
                    num(step * i as f64, 1, l),
                    num(step * (i + 1) as f64, 1, l)
                ),
                value: *c as f64,
                error: None,
            })
            .collect();
        out.push_str(&svg::bars(
            l.t(
                "Verteilung der Berichte (kWh)",
                "Distribution of the reports (kWh)",
            ),
            l.t("Berichte", "reports"),
            &bars,
            "#38c",
        ));
    }
    out
}

fn noise_note(k: usize, l: Lang) -> String {
    format!(
        "<p><small>{} {k} {}</small></p>",
        l.t(
            "Jeder Bericht ist auf das Maximum seines Geräts begrenzt, gerundet und mit \
             Laplace-Rauschen der Skala Maximum/ε versehen. „± 95 %“ ist die Schranke dieses \
             Rauschens für den Mittelwert (1,96 · √(Σ 2b²) / n). Gruppen und Zellen mit weniger als",
            "Each report is clamped to its board's maximum, rounded and noised with Laplace noise \
             of scale maximum/ε. \"± 95 %\" is that noise's bound for the mean \
             (1.96 · √(Σ 2b²) / n). Groups and cells with fewer than"
        ),
        l.t(
            "Berichten werden nicht veröffentlicht.",
            "reports are not published."
        )
    )
}

fn energy_chart(s: &Snapshot, l: Lang) -> String {
    let bars: Vec<Bar> = s
        .aggregates
        .months
        .iter()
        .rev()
        .filter_map(|p| {
            p.all.figures().map(|f| Bar {
                label: p.period.clone(),
                value: f.mean_kwh,
                error: Some(f.mean_error95_kwh),
            })
        })
        .collect();
    if bars.is_empty() {
        return format!(
            "<p>{}</p>",
            l.t(
                "Noch kein Monat mit genug Berichten.",
                "No month with enough reports yet."
            )
        );
    }
    svg::bars(
        l.t(
            "Mittlerer Verbrauch einer Box je Monat (kWh, ± 95 %)",
            "Mean energy of a box per month (kWh, ± 95 %)",
        ),
        "kWh",
        &bars,
        "#38c",
    )
}

pub fn overview(site: &Site, s: &Snapshot, l: Lang) -> (Value, String) {
    let f = latest_finances(s);
    let energy = s
        .aggregates
        .quarters
        .iter()
        .find(|p| p.all.figures().is_some());
    let mut body = errors_box(s, l);
    match &f {
        Some(f) => {
            body.push_str(&format!(
                "<h2>{} {}</h2>",
                l.t("Stand", "As of"),
                esc(&f.quarter)
            ));
            body.push_str(&runway_html(f, l));
            body.push_str(&format!(
                "<p>{}: {} · {}: {} · {}: {} · <a href=\"/reports/{q}?lang={lc}\">{}</a></p>",
                l.t("Einnahmen", "Income"),
                euros(f.income_total, l),
                l.t("Ausgaben", "Expenses"),
                euros(f.expenses_total, l),
                l.t("Ergebnis", "Result"),
                euros(f.result, l),
                l.t("Quartalsbericht", "Quarterly report"),
                q = esc(&f.quarter),
                lc = l.code(),
            ));
            body.push_str(&supplier_html(f, l));
        }
        None => body.push_str(&format!(
            "<p>{}</p>",
            l.t(
                "Noch kein abgeschlossenes Quartal im Kassenbuch.",
                "No finished quarter in the ledger yet."
            )
        )),
    }
    body.push_str(&format!("<h2>{}</h2>", l.t("Energie", "Energy")));
    body.push_str(&energy_chart(s, l));
    let html = layout(site, l, "/", l.t("Transparenz", "Transparency"), &body);
    let json = json!({
        "cooperative": site.name,
        "lang": l,
        "latest_quarter": f,
        "energy_latest_quarter": energy,
        "ledger_errors": s.ledger_errors,
        "k": site.k,
    });
    (json, html)
}

pub fn energy(site: &Site, s: &Snapshot, l: Lang) -> (Value, String) {
    let mut body = errors_box(s, l);
    body.push_str(&format!(
        "<p>{}</p>",
        l.t(
            "Boxen, deren Familien zugestimmt haben, senden einmal im Monat einen anonymen \
             Bericht: den Stromverbrauch des Monats (begrenzt, gerundet, verrauscht), die \
             Geräteklasse und die Mitgliederzahl als Spanne. Kein Bericht nennt eine Familie, \
             einen Server oder eine Adresse, und keiner lässt sich einer Box zuordnen.",
            "Boxes whose families agreed send one anonymous report a month: the month's energy \
             (clamped, rounded, noised), the board's class and the number of members as a range. \
             No report names a family, a server or an address, and none can be tied to a box."
        )
    ));
    body.push_str(&energy_chart(s, l));
    body.push_str(&noise_note(site.k, l));
    body.push_str(&format!("<h2>{}</h2>", l.t("Quartale", "Quarters")));
    for p in &s.aggregates.quarters {
        body.push_str(&period_html(p, site.k, l));
    }
    body.push_str(&format!("<h2>{}</h2>", l.t("Monate", "Months")));
    for p in &s.aggregates.months {
        body.push_str(&period_html(p, site.k, l));
    }
    let html = layout(site, l, "/energy", l.t("Energie", "Energy"), &body);
    let json = json!({
        "lang": l,
        "noise": "Laplace, scale b = clamp_kwh / epsilon per report, clamp_kwh = max_watts[hardware] * hours of the report's month / 1000; mean_error95_kwh = 1.96 * sqrt(sum 2 b^2) / n",
        "max_watts": report_wire::Hardware::ALL
            .iter()
            .map(|h| (h.as_str(), h.max_watts()))
            .collect::<std::collections::BTreeMap<_, _>>(),
        "aggregates": s.aggregates,
    });
    (json, html)
}

fn quarter_table(f: &QuarterFinances, l: Lang) -> String {
    let mut out = format!(
        "<table><tr><th>{}</th><th>{}</th></tr>",
        l.t("Einnahmen", "Income"),
        l.t("Betrag", "Amount")
    );
    for (c, a) in &f.income {
        out.push_str(&format!(
            "<tr><td>{}</td><td class=\"n\">{}</td></tr>",
            esc(c),
            euros(*a, l)
        ));
    }
    out.push_str(&format!(
        "<tr><th>{}</th><th>{}</th></tr>",
        l.t("Ausgaben", "Expenses"),
        ""
    ));
    for (c, a) in &f.expenses {
        out.push_str(&format!(
            "<tr><td>{}</td><td class=\"n\">{}</td></tr>",
            esc(c),
            euros(*a, l)
        ));
    }
    out.push_str(&format!(
        "<tr><th>{}</th><th class=\"n\">{}</th></tr><tr><td>{}</td><td class=\"n\">{}</td></tr></table>",
        l.t("Ergebnis", "Result"),
        euros(f.result, l),
        l.t("Rücklagen am Quartalsende", "Reserves at the quarter's end"),
        euros(f.reserves, l),
    ));
    out
}

pub fn finances(site: &Site, s: &Snapshot, l: Lang) -> (Value, String) {
    let mut body = errors_box(s, l);
    let flows = s.ledger.months();
    let rows: Vec<(String, f64, f64)> = flows
        .iter()
        .rev()
        .take(12)
        .rev()
        .map(|m| {
            (
                m.month.clone(),
                m.income.0 as f64 / 100.0,
                m.expenses.0 as f64 / 100.0,
            )
        })
        .collect();
    if !rows.is_empty() {
        body.push_str(&svg::pairs(
            l.t(
                "Einnahmen und Ausgaben je Monat",
                "Income and expenses per month",
            ),
            "€",
            &rows,
            (l.t("Einnahmen", "income"), l.t("Ausgaben", "expenses")),
        ));
    }
    let quarters: Vec<QuarterFinances> = s
        .ledger
        .quarters()
        .into_iter()
        .rev()
        .map(|q| s.ledger.quarter(q))
        .collect();
    for f in &quarters {
        body.push_str(&format!("<h2>{}</h2>", esc(&f.quarter)));
        body.push_str(&quarter_table(f, l));
        body.push_str(&runway_html(f, l));
    }
    let html = layout(site, l, "/finances", l.t("Finanzen", "Finances"), &body);
    let json = json!({
        "lang": l,
        "months": flows,
        "quarters": quarters,
        "ledger_errors": s.ledger_errors,
        "amounts": "cents",
    });
    (json, html)
}

pub fn quarter(site: &Site, s: &Snapshot, q: Quarter, l: Lang) -> (Value, String) {
    let f = s.ledger.quarter(q);
    let energy = s
        .aggregates
        .quarters
        .iter()
        .find(|p| p.period == q.to_string());
    let mut body = errors_box(s, l);
    body.push_str(&format!("<h2>{}</h2>", l.t("Finanzen", "Finances")));
    body.push_str(&quarter_table(&f, l));
    body.push_str(&runway_html(&f, l));
    body.push_str(&supplier_html(&f, l));
    body.push_str(&format!(
        "<h2>{}</h2>",
        l.t("Energie der Boxen", "The boxes' energy")
    ));
    match energy {
        Some(p) => body.push_str(&period_html(p, site.k, l)),
        None => body.push_str(&format!(
            "<p>{}</p>",
            l.t(
                "Keine Berichte in diesem Quartal.",
                "No reports in this quarter."
            )
        )),
    }
    body.push_str(&noise_note(site.k, l));
    let title = format!("{} {q}", l.t("Quartalsbericht", "Quarterly report"));
    let html = layout(site, l, &format!("/reports/{q}"), &title, &body);
    let json = json!({ "lang": l, "quarter": q.to_string(), "finances": f, "energy": energy });
    (json, html)
}

pub fn markdown_page(
    site: &Site,
    name: &str,
    written_in: Lang,
    text: &str,
    l: Lang,
) -> (Value, String) {
    let (title, rendered) = super::markdown::render(text);
    let title = title.unwrap_or_else(|| page_name(name, l).to_owned());
    let mut body = String::new();
    if written_in != l {
        body.push_str(&format!(
            "<p><small>{}</small></p>",
            l.t(
                "Diese Seite gibt es nur auf Englisch.",
                "This page exists in German only."
            )
        ));
    }
    body.push_str(&rendered);
    let html = layout(site, l, &format!("/pages/{name}"), &title, &body);
    let json = json!({ "page": name, "lang": written_in, "title": title, "markdown": text, "html": rendered });
    (json, html)
}

/// The Atom feed (RFC 4287) of the quarterly reports, newest first; each entry links the
/// report in both languages.
pub fn atom(site: &Site, s: &Snapshot) -> String {
    let base = site.base_url.trim_end_matches('/');
    let quarters = Site::report_quarters(s);
    let stamp = |q: &Quarter| {
        let d = q.end();
        format!("{d}T23:59:59Z")
    };
    let updated = quarters
        .first()
        .map(stamp)
        .unwrap_or_else(|| "1970-01-01T00:00:00Z".to_owned());
    let mut out = format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<feed xmlns=\"http://www.w3.org/2005/Atom\">\
         <title>{n} – Quartalsberichte / quarterly reports</title>\
         <id>{b}/feed.atom</id><updated>{updated}</updated>\
         <link rel=\"self\" href=\"{b}/feed.atom\"/><link href=\"{b}/\"/>\
         <author><name>{n}</name></author>",
        n = esc(&site.name),
        b = esc(base)
    );
    for q in &quarters {
        let f = s.ledger.quarter(*q);
        let secured = f
            .months_secured
            .map_or("–".to_owned(), |m| format!("{m:.1}"));
        let summary = format!(
            "Einnahmen {} €, Ausgaben {} €, Rücklagen {} €, gesichert für {secured} Monate. / \
             Income €{}, expenses €{}, reserves €{}, secured for {secured} months.",
            f.income_total,
            f.expenses_total,
            f.reserves,
            f.income_total,
            f.expenses_total,
            f.reserves
        );
        out.push_str(&format!(
            "<entry><title>Quartalsbericht / Quarterly report {q}</title>\
             <id>{b}/reports/{q}</id><updated>{u}</updated>\
             <link href=\"{b}/reports/{q}?lang=de\" hreflang=\"de\"/>\
             <link rel=\"alternate\" href=\"{b}/reports/{q}?lang=en\" hreflang=\"en\"/>\
             <summary>{s}</summary></entry>",
            b = esc(base),
            u = stamp(q),
            s = esc(&summary),
        ));
    }
    out.push_str("</feed>\n");
    out
}
