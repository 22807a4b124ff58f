//! The cooperative's ledger: the file its treasurer keeps, from which the transparency site
//! draws the finances, the months of running costs secured, the cost per account and month and
//! the energy supplier with its mix (cooperative/README.md, "The ledger").
//!
//! One CSV file, one booking a line, five columns (a header line naming them is allowed, `#`
//! starts a comment line):
//!
//! ```text
//! date,kind,category,amount,note
//! 2025-01-31,income,membership fees,1180.00,"Beiträge Januar, 118 Konten"
//! 2025-01-31,expense,hosting,210.00,
//! 2025-03-31,reserve,bank,4200.00,Rücklage am Quartalsende
//! 2025-01-01,accounts,,118,
//! 2025-01-01,supplier,Elektrizitätswerke Schönau,,
//! 2025-01-01,mix,wind,52,
//! ```
//!
//! `kind` is one of `income`, `expense` (amounts in euros, a dot before at most two decimals),
//! `reserve` (the balance of the reserve `category` on that date: the latest balance of each
//! category counts), `accounts` (how many accounts the cooperative pays for from that date),
//! `supplier` (the energy supplier, named in `category`, from that date) and `mix` (the share in
//! percent of the source `category` in the supplier's mix; the rows of one date are one mix and
//! add up to 100). A mistake is `file:line:field: what is wrong`, and the page still shows the
//! rest. Pure: no IO, no clock (the caller reads the file and says what today is).

use std::collections::BTreeMap;
use std::fmt;

/// Euros as whole cents: money is never a float here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, serde::Serialize)]
#[serde(transparent)]
pub struct Cents(pub i64);

impl fmt::Display for Cents {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let a = self.0.unsigned_abs();
        write!(f, "{sign}{}.{:02}", a / 100, a % 100)
    }
}

impl std::ops::Add for Cents {
    type Output = Cents;
    fn add(self, o: Cents) -> Cents {
        Cents(self.0.saturating_add(o.0))
    }
}

impl std::iter::Sum for Cents {
    fn sum<I: Iterator<Item = Cents>>(iter: I) -> Cents {
        iter.fold(Cents(0), |a, b| a + b)
    }
}

/// A calendar date, as written in the ledger (`YYYY-MM-DD`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Date {
    pub year: i32,
    pub month: u32,
    pub day: u32,
}

impl Date {
    pub fn parse(s: &str) -> Option<Date> {
        let b = s.as_bytes();
        if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
            return None;
        }
        let num = |r: std::ops::Range<usize>| -> Option<u32> {
            let t = &s[r];
            t.bytes()
                .all(|c| c.is_ascii_digit())
                .then(|| t.parse().ok())?
        };
        let (year, month, day) = (num(0..4)? as i32, num(5..7)?, num(8..10)?);
        if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
            return None;
        }
        Some(Date { year, month, day })
    }

    pub fn month(&self) -> Month {
        Month {
            year: self.year,
            month: self.month,
        }
    }
}

impl fmt::Display for Date {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }
}

fn days_in_month(year: i32, month: u32) -> u32 {
    match month {
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// A calendar month (`YYYY-MM`): the finest time the site speaks of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Month {
    pub year: i32,
    pub month: u32,
}

impl Month {
    pub fn parse(s: &str) -> Option<Month> {
        Date::parse(&format!("{s}-01")).map(|d| d.month())
    }
    pub fn quarter(&self) -> Quarter {
        Quarter {
            year: self.year,
            q: (self.month - 1) / 3 + 1,
        }
    }
    pub fn prev(&self) -> Month {
        if self.month == 1 {
            Month {
                year: self.year - 1,
                month: 12,
            }
        } else {
            Month {
                year: self.year,
                month: self.month - 1,
            }
        }
    }
}

impl fmt::Display for Month {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}", self.year, self.month)
    }
}

/// A calendar quarter (`YYYY-Qn`): the period of the cooperative's report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Quarter {
    pub year: i32,
    pub q: u32,
}

impl Quarter {
    pub fn parse(s: &str) -> Option<Quarter> {
        let (y, q) = s.split_once("-Q")?;
        let year: i32 = (y.len() == 4).then(|| y.parse().ok())??;
        let q: u32 = q.parse().ok().filter(|q| (1..=4).contains(q))?;
        Some(Quarter { year, q })
    }
    pub fn months(&self) -> [Month; 3] {
        let m = |i| Month {
            year: self.year,
            month: (self.q - 1) * 3 + i,
        };
        [m(1), m(2), m(3)]
    }
    /// The last day, when the quarter's report can be written.
    pub fn end(&self) -> Date {
        let m = self.q * 3;
        Date {
            year: self.year,
            month: m,
            day: days_in_month(self.year, m),
        }
    }
}

impl fmt::Display for Quarter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-Q{}", self.year, self.q)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Entry {
    Income { category: String, amount: Cents },
    Expense { category: String, amount: Cents },
    Reserve { category: String, balance: Cents },
    Accounts(u32),
    Supplier(String),
    Mix { source: String, percent: f64 },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    pub date: Date,
    pub entry: Entry,
    pub note: String,
}

/// A bad line: `file:line:field: message` when shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerError {
    pub line: usize,
    pub field: &'static str,
    pub message: String,
}

impl LedgerError {
    pub fn show(&self, file: &str) -> String {
        format!("{file}:{}:{}: {}", self.line, self.field, self.message)
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Ledger {
    pub lines: Vec<Line>,
}

const FIELDS: [&str; 5] = ["date", "kind", "category", "amount", "note"];

/// Splits one CSV line: commas, fields in double quotes may hold commas and `""` for a quote.
fn split(line: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut field = String::new();
    let mut chars = line.chars().peekable();
    let mut quoted = false;
    let mut was_quoted = false;
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => field.push(c),
            (false, '"') if field.trim().is_empty() && !was_quoted => {
                field.clear();
                quoted = true;
                was_quoted = true;
            }
            (false, '"') => return Err("a quote inside an unquoted field".into()),
            (false, ',') => {
                out.push(std::mem::take(&mut field));
                was_quoted = false;
            }
            (false, c) if was_quoted && !c.is_whitespace() => {
                return Err("text after a quoted field's closing quote".into())
            }
            (false, c) => field.push(c),
        }
    }
    if quoted {
        return Err("a quoted field is not closed".into());
    }
    out.push(field);
    Ok(out)
}

/// `1180`, `1180.5`, `1180.50` euros; no thousands separators, no decimal comma.
pub fn parse_euros(s: &str) -> Option<Cents> {
    let (whole, frac) = s.split_once('.').unwrap_or((s, ""));
    if whole.is_empty()
        || whole.len() > 12
        || !whole.bytes().all(|b| b.is_ascii_digit())
        || frac.len() > 2
        || !frac.bytes().all(|b| b.is_ascii_digit())
        || (s.contains('.') && frac.is_empty())
    {
        return None;
    }
    let whole: i64 = whole.parse().ok()?;
    let frac: i64 = match frac.len() {
        0 => 0,
        1 => frac.parse::<i64>().ok()? * 10,
        _ => frac.parse().ok()?,
    };
    Some(Cents(whole * 100 + frac))
}

impl Ledger {
    /// Parses the whole file; every bad line is reported (not only the first), and the good
    /// lines are kept, so the site can show what it has and what is wrong.
    pub fn parse(text: &str) -> (Ledger, Vec<LedgerError>) {
        let mut ledger = Ledger::default();
        let mut errors = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let n = i + 1;
            let t = raw.trim();
            if t.is_empty() || t.starts_with('#') {
                continue;
            }
            let err = |field: &'static str, message: String| LedgerError {
                line: n,
                field,
                message,
            };
            let fields = match split(t) {
                Ok(f) => f,
                Err(m) => {
                    errors.push(err("line", m));
                    continue;
                }
            };
            if fields.iter().map(|f| f.trim()).eq(FIELDS) {
                continue; // the header
            }
            if fields.len() < 4 || fields.len() > 5 {
                errors.push(err(
                    "line",
                    format!(
                        "{} fields; expected date,kind,category,amount,note (note may be left out)",
                        fields.len()
                    ),
                ));
                continue;
            }
            let get = |i: usize| fields.get(i).map(|f| f.trim()).unwrap_or("");
            match parse_line(get(0), get(1), get(2), get(3)) {
                Ok((date, entry)) => ledger.lines.push(Line {
                    date,
                    entry,
                    note: get(4).to_owned(),
                }),
                Err((field, message)) => errors.push(err(field, message)),
            }
        }
        ledger.lines.sort_by_key(|l| l.date); // stable: the file's order within a day
        if let Err(e) = check_mixes(&ledger, text) {
            errors.push(e);
        }
        (ledger, errors)
    }
}

fn parse_line(
    date: &str,
    kind: &str,
    category: &str,
    amount: &str,
) -> Result<(Date, Entry), (&'static str, String)> {
    let date = Date::parse(date).ok_or((
        "date",
        format!("{date:?} is not a date (YYYY-MM-DD, e.g. 2025-03-31)"),
    ))?;
    let euros = || {
        parse_euros(amount).ok_or((
            "amount",
            format!(
                "{amount:?} is not an amount in euros (digits, a dot and at most two decimals, \
                 no thousands separator: 1180.50)"
            ),
        ))
    };
    let named = |what: &str| {
        if category.is_empty() {
            Err(("category", format!("a {kind} line names its {what} here")))
        } else {
            Ok(category.to_owned())
        }
    };
    let entry = match kind {
        "income" => Entry::Income {
            category: named("category")?,
            amount: euros()?,
        },
        "expense" => Entry::Expense {
            category: named("category")?,
            amount: euros()?,
        },
        "reserve" => Entry::Reserve {
            category: if category.is_empty() {
                "reserve".to_owned()
            } else {
                category.to_owned()
            },
            balance: euros()?,
        },
        "accounts" => Entry::Accounts(amount.parse().ok().filter(|n| *n > 0).ok_or((
            "amount",
            format!("{amount:?} is not a number of accounts (a whole number, at least 1)"),
        ))?),
        "supplier" => {
            if !amount.is_empty() {
                return Err(("amount", "a supplier line has no amount".into()));
            }
            Entry::Supplier(named("supplier")?)
        }
        "mix" => Entry::Mix {
            source: named("energy source")?,
            percent: amount
                .parse::<f64>()
                .ok()
                .filter(|p| p.is_finite() && (0.0..=100.0).contains(p))
                .ok_or((
                    "amount",
                    format!("{amount:?} is not a share in percent (0 to 100)"),
                ))?,
        },
        other => {
            return Err((
                "kind",
                format!(
                    "{other:?} is not a kind (income, expense, reserve, accounts, supplier, mix)"
                ),
            ))
        }
    };
    Ok((date, entry))
}

/// The mix rows of one date add up to 100 (± 0.5 for rounding).
fn check_mixes(ledger: &Ledger, text: &str) -> Result<(), LedgerError> {
    let mut sums: BTreeMap<Date, f64> = BTreeMap::new();
    for l in &ledger.lines {
        if let Entry::Mix { percent, .. } = l.entry {
            *sums.entry(l.date).or_default() += percent;
        }
    }
    for (date, sum) in sums {
        if (sum - 100.0).abs() > 0.5 {
            let d = date.to_string();
            let line = text
                .lines()
                .position(|l| l.trim_start().starts_with(&d) && l.contains(",mix,"))
                .map_or(1, |i| i + 1);
            return Err(LedgerError {
                line,
                field: "amount",
                message: format!("the mix of {d} adds up to {sum}%, not 100%"),
            });
        }
    }
    Ok(())
}

/// One quarter's finances.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct QuarterFinances {
    pub quarter: String,
    pub income: BTreeMap<String, Cents>,
    pub expenses: BTreeMap<String, Cents>,
    pub income_total: Cents,
    pub expenses_total: Cents,
    /// Income less expenses.
    pub result: Cents,
    /// The reserves at the quarter's end (the latest balance of each reserve).
    pub reserves: Cents,
    /// Mean monthly expenses over the 12 months up to the quarter's end (fewer when the
    /// ledger is younger; only months with a booking count).
    pub mean_monthly_costs: Cents,
    /// Reserves over mean monthly costs; `None` without costs.
    pub months_secured: Option<f64>,
    /// Accounts at the quarter's end.
    pub accounts: Option<u32>,
    /// Mean monthly costs over the accounts: what one account costs a month.
    pub cost_per_account_month: Option<Cents>,
    /// Supplier and mix in force at the quarter's end.
    pub supplier: Option<String>,
    pub mix: Vec<(String, f64)>,
}

struct State {
    reserves: Cents,
    accounts: Option<u32>,
    supplier: Option<String>,
    mix: Vec<(String, f64)>,
}

/// Per month: income and expenses, for the chart.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct MonthFlow {
    pub month: String,
    pub income: Cents,
    pub expenses: Cents,
}

impl Ledger {
    pub fn quarters(&self) -> Vec<Quarter> {
        let mut q: Vec<Quarter> = self
            .lines
            .iter()
            .map(|l| l.date.month().quarter())
            .collect();
        q.dedup();
        q
    }

    pub fn months(&self) -> Vec<MonthFlow> {
        let mut by: BTreeMap<Month, (Cents, Cents)> = BTreeMap::new();
        for l in &self.lines {
            match &l.entry {
                Entry::Income { amount, .. } => by.entry(l.date.month()).or_default().0 += *amount,
                Entry::Expense { amount, .. } => by.entry(l.date.month()).or_default().1 += *amount,
                _ => {}
            }
        }
        by.into_iter()
            .map(|(m, (income, expenses))| MonthFlow {
                month: m.to_string(),
                income,
                expenses,
            })
            .collect()
    }

    /// The state of things on `date`: reserves, accounts, supplier and mix then.
    fn state_on(&self, date: Date) -> State {
        let mut reserves: BTreeMap<&str, Cents> = BTreeMap::new();
        let (mut accounts, mut supplier) = (None, None);
        let mut mix: (Option<Date>, Vec<(String, f64)>) = (None, Vec::new());
        for l in self.lines.iter().take_while(|l| l.date <= date) {
            match &l.entry {
                Entry::Reserve { category, balance } => {
                    reserves.insert(category, *balance);
                }
                Entry::Accounts(n) => accounts = Some(*n),
                Entry::Supplier(s) => supplier = Some(s.clone()),
                Entry::Mix { source, percent } => {
                    if mix.0 != Some(l.date) {
                        mix = (Some(l.date), Vec::new());
                    }
                    mix.1.push((source.clone(), *percent));
                }
                _ => {}
            }
        }
        State {
            reserves: reserves.values().copied().sum(),
            accounts,
            supplier,
            mix: mix.1,
        }
    }

    pub fn quarter(&self, q: Quarter) -> QuarterFinances {
        let months = q.months();
        let (mut income, mut expenses) = (BTreeMap::new(), BTreeMap::new());
        for l in &self.lines {
            if !months.contains(&l.date.month()) {
                continue;
            }
            match &l.entry {
                Entry::Income { category, amount } => {
                    *income.entry(category.clone()).or_insert(Cents(0)) += *amount
                }
                Entry::Expense { category, amount } => {
                    *expenses.entry(category.clone()).or_insert(Cents(0)) += *amount
                }
                _ => {}
            }
        }
        let income_total: Cents = income.values().copied().sum();
        let expenses_total: Cents = expenses.values().copied().sum();
        let end = q.end();
        let State {
            reserves,
            accounts,
            supplier,
            mix,
        } = self.state_on(end);
        // The 12 months up to the quarter's end, those with a booked expense.
        let mut window = Vec::new();
        let mut m = end.month();
        for _ in 0..12 {
            window.push(m);
            m = m.prev();
        }
        let flows = self.months();
        let costs: Vec<Cents> = flows
            .iter()
            .filter(|f| f.expenses.0 > 0 && window.iter().any(|w| w.to_string() == f.month))
            .map(|f| f.expenses)
            .collect();
        let mean_monthly_costs = if costs.is_empty() {
            Cents(0)
        } else {
            Cents(costs.iter().map(|c| c.0).sum::<i64>() / costs.len() as i64)
        };
        let months_secured = (mean_monthly_costs.0 > 0)
            .then(|| (reserves.0 as f64 / mean_monthly_costs.0 as f64 * 10.0).round() / 10.0);
        let cost_per_account_month = accounts
            .filter(|_| mean_monthly_costs.0 > 0)
            .map(|n| Cents((mean_monthly_costs.0 as f64 / f64::from(n)).round() as i64));
        QuarterFinances {
            quarter: q.to_string(),
            income,
            expenses,
            income_total,
            expenses_total,
            result: Cents(income_total.0 - expenses_total.0),
            reserves,
            mean_monthly_costs,
            months_secured,
            accounts,
            cost_per_account_month,
            supplier,
            mix,
        }
    }
}

impl std::ops::AddAssign for Cents {
    fn add_assign(&mut self, o: Cents) {
        *self = *self + o;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const SAMPLE: &str = "\
date,kind,category,amount,note
# the year starts
2025-01-01,accounts,,100,
2025-01-01,supplier,Elektrizitätswerke Schönau,,
2025-01-01,mix,wind,60,
2025-01-01,mix,hydro,40,
2025-01-31,income,fees,1000.00,\"Beiträge, Januar\"
2025-01-31,expense,hosting,200,
2025-02-28,expense,hosting,200.5,
2025-03-31,expense,energy,99.50,
2025-03-31,reserve,bank,3000.00,
2025-03-31,reserve,cash,0.10,
2025-04-01,accounts,,120,
";

    #[test]
    fn a_quarter_adds_up_and_says_how_long_the_reserves_last() {
        let (l, errors) = Ledger::parse(SAMPLE);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(l.lines[4].note, "Beiträge, Januar");
        let q = l.quarter(Quarter::parse("2025-Q1").unwrap());
        assert_eq!(q.income_total, Cents(100_000));
        assert_eq!(q.expenses_total, Cents(50_000));
        assert_eq!(q.result, Cents(50_000));
        assert_eq!(q.reserves, Cents(300_010));
        // 500 € over 3 months with costs.
        assert_eq!(q.mean_monthly_costs, Cents(16_666));
        assert_eq!(q.months_secured, Some(18.0));
        assert_eq!(q.accounts, Some(100));
        assert_eq!(q.cost_per_account_month, Some(Cents(167)));
        assert_eq!(q.supplier.as_deref(), Some("Elektrizitätswerke Schönau"));
        assert_eq!(q.mix, vec![("wind".into(), 60.0), ("hydro".into(), 40.0)]);
        assert_eq!(l.quarters().len(), 2);
        assert_eq!(Cents(-1234).to_string(), "-12.34");
    }

    #[test]
    fn every_bad_line_is_named_with_its_field_and_the_rest_kept() {
        let text = "\
2025-01-31,income,fees,1000.00,
2025-02-30,income,fees,1.00,
2025-01-31,gift,fees,1.00,
2025-01-31,income,fees,\"1,00\",
2025-01-31,income,fees,1.000.00,
2025-01-31,expense,,5,
2025-01-31,accounts,,-3,
2025-01-31,income,fees
2025-01-31,income,\"fees,1,
2025-01-01,mix,wind,60,
2025-01-01,mix,sun,30,
";
        let (l, errors) = Ledger::parse(text);
        assert_eq!(l.lines.len(), 3, "{:?}", l.lines);
        let shown: Vec<String> = errors.iter().map(|e| e.show("ledger.csv")).collect();
        let want = [
            "ledger.csv:2:date:",
            "ledger.csv:3:kind:",
            "ledger.csv:4:amount:",
            "ledger.csv:5:amount:",
            "ledger.csv:6:category:",
            "ledger.csv:7:amount:",
            "ledger.csv:8:line: 3 fields",
            "ledger.csv:9:line: a quoted field is not closed",
            "ledger.csv:10:amount: the mix of 2025-01-01 adds up to 90%",
        ];
        assert_eq!(shown.len(), want.len(), "{shown:#?}");
        for (s, w) in shown.iter().zip(want) {
            assert!(s.starts_with(w), "{s} should start with {w}");
            assert!(!s.contains('\n'));
        }
    }

    #[test]
    fn euros_are_parsed_exactly() {
        for (s, c) in [
            ("0", 0),
            ("1", 100),
            ("1.5", 150),
            ("1.05", 105),
            ("12.34", 1234),
        ] {
            assert_eq!(parse_euros(s), Some(Cents(c)), "{s}");
        }
        for s in ["", "1.", ".5", "1.234", "1,5", "-1", "1 000", "1e3"] {
            assert_eq!(parse_euros(s), None, "{s}");
        }
    }

    #[test]
    fn dates_months_and_quarters() {
        assert!(Date::parse("2024-02-29").is_some());
        assert!(Date::parse("2025-02-29").is_none());
        assert!(Date::parse("2025-13-01").is_none());
        assert!(Date::parse("25-01-01").is_none());
        assert_eq!(
            Month::parse("2025-05").unwrap().quarter().to_string(),
            "2025-Q2"
        );
        assert_eq!(
            Quarter::parse("2025-Q4").unwrap().end().to_string(),
            "2025-12-31"
        );
        assert!(Quarter::parse("2025-Q5").is_none());
        assert_eq!(
            Month::parse("2025-01").unwrap().prev().to_string(),
            "2024-12"
        );
    }
}
