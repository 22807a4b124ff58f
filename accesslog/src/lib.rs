//! Synapse's access log (PRODUCT.md §4 "Access log"): lines → [`AccessRecord`]s → per-minute
//! weights ([`MinuteWeights`]). Pure: no IO, no clock, std only.
//!
//! # The line
//!
//! The appliance logs with Synapse's `precise` formatter
//! (`%(asctime)s - %(name)s - %(lineno)d - %(levelname)s - %(request)s - %(message)s`,
//! overlays/etc/matrix-synapse/log.yaml), and Synapse writes one access line per finished request
//! (`SynapseRequest._finished_processing` in synapse/http/site.py):
//!
//! ```text
//! 2026-11-26 10:00:00,123 - synapse.access.http.8008 - 123 - INFO - GET-42 - 127.0.0.1 - 8008 - {@alice:example.org} Processed request: 0.004sec/0.001sec ru=(0.003sec, 0.001sec) db=(0.000sec/0.002sec/3) 120B 200 "GET /_matrix/client/v3/sync HTTP/1.1" "Element" [0 dbevts]
//! ```
//!
//! After `Processed request:` come the processing and response-send times, `ru=(utime, stime)`,
//! `db=(sched/txn/count)`: the time waiting for a database connection, the time in database
//! transactions, and their number. A request's **weight** is `ru_utime + ru_stime + db_txn`
//! (PRODUCT.md §5). Synapse prints every figure to the millisecond, so weights are kept as
//! integer milliseconds and sum exactly.
//!
//! Every released form of that message is accepted (read from Synapse's history of site.py):
//!
//! | Synapse            | figures after `Processed request:`                                 |
//! |--------------------|--------------------------------------------------------------------|
//! | 0.9.3 – 0.11       | `12ms 120B …`: no resource usage, skipped as [`Skip::NoUsage`]      |
//! | 0.12 – 0.26        | `12ms (4ms, 1ms) (2ms/3)`: db is txn/count                         |
//! | 0.27 – 0.30        | `12ms (4ms, 1ms) (0ms/2ms/3)`: db sched/txn/count                  |
//! | 0.31               | `0.012sec (0.004sec, 0.001sec) (0.000sec/0.002sec/3)`               |
//! | 0.32 – 0.33.2      | the same, then ` [N dbevts]` at the end of the line                 |
//! | 0.33.3 – 1.149     | `0.012sec/0.001sec (…) (…)`: processing/response-send              |
//! | 1.150 –            | `0.012sec/0.001sec ru=(…) db=(…)`                                  |
//!
//! The requester between the braces is a local user, a federating server's name, or `None`
//! (unauthenticated; `-` and an empty field are taken the same way). When a server admin acts as
//! another user, both are logged, and the request is **attributed to the admin** (the first id):
//! `{@admin:x,@alice:x}` (1.23 – 1.31), `{@admin:x.@alice:x}` (1.32 – 1.42),
//! `{@admin:x|@alice:x}` (1.43 –). No version logged a device id there. Python 3 ports of 0.33
//! sometimes wrote `b'…'` around byte strings, and 0.33.3 – 1.51 sometimes `HTTPStatus.OK` for
//! the status code; both are read. The status may carry `!` (the client went away before the
//! response was sent). Anything before the timestamp is ignored, so `journalctl` output
//! (`Nov 26 10:00:00 hearth python3[812]: 2026-…`) and docker compose's `name | 2026-…` parse too.
//!
//! The request id, the client IP and the listener tag are skipped: **no client IP ever leaves
//! [`Parser`]** (PRODUCT.md §6); a record holds only the fields below.
//!
//! Timestamps are UTC: matrix-synapse.service sets `TZ=UTC`. The access line is written when the
//! request finished, so its timestamp is the request's finish time.
//!
//! # How the daemon uses it
//!
//! ```
//! use hearth_accesslog::MinuteWeights;
//!
//! let mut weights = MinuteWeights::new();
//! // For each line read from the journal of matrix-synapse.service (MESSAGE, with
//! // __REALTIME_TIMESTAMP in µs as the fallback time for messages that carry none):
//! # let (message, realtime_us) = ("2026-11-26 10:00:00,123 - synapse.access.http.8008 - 123 - INFO - GET-42 - 127.0.0.1 - 8008 - {@alice:example.org} Processed request: 0.004sec/0.001sec ru=(0.003sec, 0.001sec) db=(0.000sec/0.002sec/3) 120B 200 \"GET /_matrix/client/v3/sync HTTP/1.1\" \"Element\" [0 dbevts]", 1_795_687_200_200_000);
//! weights.ingest_journal(message, realtime_us);
//! // Every flush: persist the minutes that are over (adding to what is stored: a late line can
//! // reopen a minute), and put them back if the write fails.
//! # let now_minute_s = 1_795_687_260;
//! let done = weights.drain_before(now_minute_s);
//! assert_eq!(done[0].total_ms, 6); // R_i: 3 ms user + 1 ms system + 2 ms in transactions
//! assert_eq!(done[0].by_requester[0].0.as_ref(), "@alice:example.org");
//! # let write_failed = false;
//! if write_failed {
//!     weights.restore(done);
//! }
//! // Counters for /metrics: lines seen, access lines, skipped lines by reason.
//! assert_eq!(weights.counts().access, 1);
//! ```
//!
//! The `account` command reads a file the same way with [`MinuteWeights::ingest_line`]. Skipped
//! lines are never fatal: they are counted by [`Skip`] reason in [`IngestCounts`].

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

/// One finished request, borrowed from its line. It holds no client address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AccessRecord<'a> {
    /// When the request finished (the line's timestamp), Unix milliseconds, UTC.
    pub finished_ms: i64,
    /// Who is charged: the authenticated user, a federating server's name, or `None` for an
    /// unauthenticated request. For an admin acting as another user, the admin.
    pub requester: Option<&'a str>,
    /// The user an admin acted as (`{@admin:x|@alice:x}`), informational only.
    pub acting_as: Option<&'a str>,
    /// CPU time in user space, ms.
    pub ru_utime_ms: u64,
    /// CPU time in the kernel, ms.
    pub ru_stime_ms: u64,
    /// Time waiting for a database connection, ms (`None` before Synapse 0.27, which did not
    /// log it). Not part of the weight: waiting costs no energy.
    pub db_sched_ms: Option<u64>,
    /// Time in database transactions, ms.
    pub db_txn_ms: u64,
    pub db_txn_count: u64,
    /// Response body size in bytes.
    pub response_bytes: u64,
    pub status: u16,
    /// The status carried `!`: the client went away before the response was sent.
    pub disconnected: bool,
    /// The HTTP method as the client sent it.
    pub method: &'a str,
}

impl AccessRecord<'_> {
    /// The request's weight in ms: `ru_utime + ru_stime + db_txn` (PRODUCT.md §5).
    pub fn weight_ms(&self) -> u64 {
        self.ru_utime_ms
            .saturating_add(self.ru_stime_ms)
            .saturating_add(self.db_txn_ms)
    }

    /// Start of the UTC minute the request finished in, Unix seconds (the same labels as the
    /// power minutes of `meter::buckets`).
    pub fn minute_s(&self) -> i64 {
        minute_of(self.finished_ms)
    }
}

/// Start of the minute containing `ms` (Unix ms), in Unix seconds.
fn minute_of(ms: i64) -> i64 {
    ms.div_euclid(60_000) * 60
}

/// Why a line gave no record. Skipped lines are counted, never fatal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Skip {
    /// No Synapse log-line structure at all: blank, garbage, a stack-trace continuation (and a
    /// line of another logger behind a journalctl or docker prefix).
    NotLogLine,
    /// A Synapse log line from another logger (start-up, warnings, …).
    OtherLogger,
    /// The access logger's other message (`Received request`, at DEBUG), or, for a bare journal
    /// message, anything that is not a `Processed request` line.
    OtherMessage,
    /// An access line of Synapse 0.9.3 – 0.11, which logged no CPU or database time.
    NoUsage,
    /// An access line that does not parse: the field where it went wrong.
    Malformed(Field),
}

/// Where a malformed access line went wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Field {
    Timestamp,
    /// Logger name, line number or level.
    Prefix,
    /// An access-logger line without `} Processed request: ` (truncated, or not Synapse's).
    Message,
    Requester,
    ProcessingTime,
    RuUtime,
    RuStime,
    Db,
    ResponseBytes,
    Status,
    Request,
    /// The line stops inside the request or user agent (truncated).
    End,
}

impl Field {
    const ALL: [Field; 12] = [
        Field::Timestamp,
        Field::Prefix,
        Field::Message,
        Field::Requester,
        Field::ProcessingTime,
        Field::RuUtime,
        Field::RuStime,
        Field::Db,
        Field::ResponseBytes,
        Field::Status,
        Field::Request,
        Field::End,
    ];

    /// Snake-case name, as in the docs of `Processed request` and in metric labels.
    pub fn name(self) -> &'static str {
        match self {
            Field::Timestamp => "timestamp",
            Field::Prefix => "prefix",
            Field::Message => "message",
            Field::Requester => "requester",
            Field::ProcessingTime => "processing_time",
            Field::RuUtime => "ru_utime",
            Field::RuStime => "ru_stime",
            Field::Db => "db",
            Field::ResponseBytes => "response_bytes",
            Field::Status => "status",
            Field::Request => "request",
            Field::End => "end",
        }
    }
}

impl Skip {
    /// How many distinct reasons there are (the length of [`Skip::all`]).
    pub const COUNT: usize = 4 + Field::ALL.len();

    /// Every reason, in the order [`IngestCounts::skipped_by_reason`] reports them.
    pub fn all() -> impl Iterator<Item = Skip> {
        [
            Skip::NotLogLine,
            Skip::OtherLogger,
            Skip::OtherMessage,
            Skip::NoUsage,
        ]
        .into_iter()
        .chain(Field::ALL.into_iter().map(Skip::Malformed))
    }

    fn index(self) -> usize {
        match self {
            Skip::NotLogLine => 0,
            Skip::OtherLogger => 1,
            Skip::OtherMessage => 2,
            Skip::NoUsage => 3,
            Skip::Malformed(f) => 4 + f as usize,
        }
    }

    /// A short stable label for metrics: `not_log_line`, `malformed_ru_utime`, …
    pub fn label(self) -> String {
        match self {
            Skip::NotLogLine => "not_log_line".into(),
            Skip::OtherLogger => "other_logger".into(),
            Skip::OtherMessage => "other_message".into(),
            Skip::NoUsage => "no_usage".into(),
            Skip::Malformed(f) => format!("malformed_{}", f.name()),
        }
    }
}

impl fmt::Display for Skip {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Skip::NotLogLine => f.write_str("not a Synapse log line"),
            Skip::OtherLogger => f.write_str("not from Synapse's access logger"),
            Skip::OtherMessage => f.write_str("not a `Processed request` line"),
            Skip::NoUsage => {
                f.write_str("access line without CPU or database time (Synapse < 0.12)")
            }
            Skip::Malformed(field) => write!(f, "malformed access line: field {}", field.name()),
        }
    }
}

impl std::error::Error for Skip {}

/// Parses access lines; keeps the last date's day number so timestamps cost a few digit checks.
#[derive(Debug, Clone, Default)]
pub struct Parser {
    /// `YYYY-MM-DD` bytes of the last timestamp and its day number since 1970-01-01.
    day_cache: Option<([u8; 10], i64)>,
}

const ACCESS_LOGGER: &str = " - synapse.access.";
const PROCESSED: &str = "} Processed request: ";
/// `YYYY-MM-DD HH:MM:SS,mmm`, Python logging's default `asctime`.
const TIMESTAMP_LEN: usize = 23;

impl Parser {
    pub fn new() -> Self {
        Self::default()
    }

    /// A whole log line in the `precise` format, with its own timestamp (UTC). Anything before
    /// the timestamp (a journalctl or docker compose prefix) is ignored; a trailing `\n` or
    /// `\r\n` is allowed.
    pub fn parse_line<'a>(&mut self, line: &'a str) -> Result<AccessRecord<'a>, Skip> {
        let line = line.trim_end_matches(['\n', '\r']);
        let Some(at) = line.find(ACCESS_LOGGER) else {
            return Err(if self.starts_with_log_prefix(line) {
                Skip::OtherLogger
            } else {
                Skip::NotLogLine
            });
        };
        let malformed = Skip::Malformed;
        let ts = at
            .checked_sub(TIMESTAMP_LEN)
            .and_then(|start| line.as_bytes().get(start..at))
            .and_then(|t| self.timestamp(t))
            .ok_or(malformed(Field::Timestamp))?;
        // `http.8008 - 123 - INFO - GET-42 - <message>`: the rest of the logger's name, the
        // line number and the level are checked; the request id is left to the message, which
        // finds the requester by its brace (Synapse's own docs once dropped a space there).
        let rest = &line[at + ACCESS_LOGGER.len()..];
        let (_logger, rest) = rest.split_once(" - ").ok_or(malformed(Field::Prefix))?;
        let (lineno, rest) = rest.split_once(" - ").ok_or(malformed(Field::Prefix))?;
        let (level, message) = rest.split_once(" - ").ok_or(malformed(Field::Prefix))?;
        if lineno.is_empty()
            || !lineno.bytes().all(|b| b.is_ascii_digit())
            || level.is_empty()
            || !level.bytes().all(|b| b.is_ascii_uppercase())
        {
            return Err(malformed(Field::Prefix));
        }
        match parse_body(message, ts) {
            Err(Skip::OtherMessage) if !message.contains(" Received request: ") => {
                Err(malformed(Field::Message))
            }
            r => r,
        }
    }

    /// The message alone (`127.0.0.1 - 8008 - {@alice:example.org} Processed request: …`), as
    /// a log handler without `asctime` would hand it to the journal; `finished_ms` (Unix ms,
    /// UTC) is the caller's time for it. Anything without `} Processed request: ` is
    /// [`Skip::OtherMessage`].
    pub fn parse_message<'a>(
        &mut self,
        message: &'a str,
        finished_ms: i64,
    ) -> Result<AccessRecord<'a>, Skip> {
        parse_body(message.trim_end_matches(['\n', '\r']), finished_ms)
    }

    /// A journal entry's `MESSAGE` with its `__REALTIME_TIMESTAMP` (µs): a whole line (the
    /// appliance's configuration) is read with its own timestamp, which is when the request
    /// finished; a bare message gets the journal's time.
    pub fn parse_journal<'a>(
        &mut self,
        message: &'a str,
        realtime_us: u64,
    ) -> Result<AccessRecord<'a>, Skip> {
        if message.contains(ACCESS_LOGGER) {
            self.parse_line(message)
        } else {
            let ms = i64::try_from(realtime_us / 1000).unwrap_or(i64::MAX);
            self.parse_message(message, ms)
        }
    }

    /// Does the line start like a Synapse log line (`<timestamp> - `)?
    fn starts_with_log_prefix(&mut self, line: &str) -> bool {
        let b = line.as_bytes();
        b.get(TIMESTAMP_LEN..TIMESTAMP_LEN + 3) == Some(b" - ")
            && self.timestamp(&b[..TIMESTAMP_LEN]).is_some()
    }

    /// `YYYY-MM-DD HH:MM:SS,mmm` → Unix ms.
    fn timestamp(&mut self, t: &[u8]) -> Option<i64> {
        if t.len() != TIMESTAMP_LEN
            || t[4] != b'-'
            || t[7] != b'-'
            || t[10] != b' '
            || t[13] != b':'
            || t[16] != b':'
            || t[19] != b','
        {
            return None;
        }
        let day = match self.day_cache {
            Some((date, day)) if date[..] == t[..10] => day,
            _ => {
                let y = digits(&t[0..4])?;
                let m = digits(&t[5..7])?;
                let d = digits(&t[8..10])?;
                if !(1..=12).contains(&m) || d < 1 || d > days_in_month(y, m) {
                    return None;
                }
                let day = days_from_civil(y, m, d);
                let mut date = [0u8; 10];
                date.copy_from_slice(&t[..10]);
                self.day_cache = Some((date, day));
                day
            }
        };
        let h = digits(&t[11..13])?;
        let mi = digits(&t[14..16])?;
        let s = digits(&t[17..19])?;
        let ms = digits(&t[20..23])?;
        if h > 23 || mi > 59 || s > 59 {
            return None;
        }
        Some(((day * 24 + h) * 60 + mi) * 60_000 + s * 1000 + ms)
    }
}

/// A whole line with a fresh [`Parser`]; see [`Parser::parse_line`].
pub fn parse_line(line: &str) -> Result<AccessRecord<'_>, Skip> {
    Parser::new().parse_line(line)
}

/// A bare message with the caller's finish time; see [`Parser::parse_message`].
pub fn parse_message(message: &str, finished_ms: i64) -> Result<AccessRecord<'_>, Skip> {
    Parser::new().parse_message(message, finished_ms)
}

/// ASCII digits → number; `None` for anything else.
fn digits(b: &[u8]) -> Option<i64> {
    b.iter().try_fold(0i64, |n, &c| {
        c.is_ascii_digit().then(|| n * 10 + i64::from(c - b'0'))
    })
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// How the figures of one line are written.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Unit {
    /// `%.3fsec` (Synapse 0.31 on).
    Sec,
    /// `%dms` (0.9.3 – 0.30).
    Ms,
}

/// A cursor over the figures after `Processed request: `.
struct Cursor<'a> {
    s: &'a str,
    i: usize,
}

impl<'a> Cursor<'a> {
    fn rest(&self) -> &'a str {
        self.s.get(self.i..).unwrap_or("")
    }

    fn eat(&mut self, lit: &str) -> bool {
        let hit = self.rest().starts_with(lit);
        if hit {
            self.i += lit.len();
        }
        hit
    }

    fn peek(&self) -> Option<u8> {
        self.s.as_bytes().get(self.i).copied()
    }

    /// Up to 15 ASCII digits (no overflow, whatever the input).
    fn uint(&mut self) -> Option<u64> {
        let start = self.i;
        let mut n: u64 = 0;
        while let Some(c) = self.peek().filter(u8::is_ascii_digit) {
            if self.i - start == 15 {
                return None;
            }
            n = n * 10 + u64::from(c - b'0');
            self.i += 1;
        }
        (self.i > start).then_some(n)
    }

    /// A signed figure with its unit, in ms: `0.004sec`, `-0.000sec`, `12ms`. `unit` is the
    /// line's unit, or `None` for the first figure, which decides it.
    fn figure(&mut self, unit: Option<Unit>) -> Option<(i64, Unit)> {
        let start = self.i;
        let r = self.figure_inner(unit);
        if r.is_none() {
            self.i = start;
        }
        r
    }

    fn figure_inner(&mut self, unit: Option<Unit>) -> Option<(i64, Unit)> {
        let negative = self.eat("-");
        let whole = self.uint()?;
        let (ms, found) = if self.eat(".") {
            let start = self.i;
            let frac = self.uint()?;
            if self.i - start != 3 {
                return None;
            }
            if !self.eat("sec") {
                return None;
            }
            (whole * 1000 + frac, Unit::Sec)
        } else {
            if !self.eat("ms") {
                return None;
            }
            (whole, Unit::Ms)
        };
        if unit.is_some_and(|u| u != found) {
            return None;
        }
        let ms = i64::try_from(ms).ok()?;
        Some((if negative { -ms } else { ms }, found))
    }

    /// A figure that must not be negative (`-0.000sec`, a rounding of a tiny negative, is 0).
    fn usage(&mut self, unit: Unit) -> Option<u64> {
        self.figure(Some(unit))
            .and_then(|(ms, _)| u64::try_from(ms).ok())
    }
}

/// `<ip> - <tag> - {<requester>} Processed request: <figures> "<request>" "<agent>" [n dbevts]`.
fn parse_body(message: &str, finished_ms: i64) -> Result<AccessRecord<'_>, Skip> {
    use Field::*;
    let bad = Skip::Malformed;
    let p = message.find(PROCESSED).ok_or(Skip::OtherMessage)?;
    // The IP and the tag are skipped, never looked at: the requester starts at the first
    // ` - {` (neither an address nor a port holds a brace).
    let head = &message[..p];
    let brace = head.find(" - {").ok_or(bad(Requester))?;
    let (requester, acting_as) = requester(&head[brace + 4..]).ok_or(bad(Requester))?;

    let mut c = Cursor {
        s: &message[p + PROCESSED.len()..],
        i: 0,
    };
    let (_, unit) = c.figure(None).ok_or(bad(ProcessingTime))?;
    if unit == Unit::Sec && c.eat("/") {
        c.figure(Some(unit)).ok_or(bad(ProcessingTime))?;
    }
    if !c.eat(" ") {
        return Err(bad(ProcessingTime));
    }
    let labelled = c.eat("ru=(");
    if !labelled && !c.eat("(") {
        // 0.9.3 – 0.11: straight on to `120B 200 "GET …`.
        return Err(if c.uint().is_some() && c.eat("B ") {
            Skip::NoUsage
        } else {
            bad(RuUtime)
        });
    }
    let ru_utime_ms = c.usage(unit).ok_or(bad(RuUtime))?;
    if !c.eat(", ") {
        return Err(bad(RuUtime));
    }
    let ru_stime_ms = c.usage(unit).ok_or(bad(RuStime))?;
    if !c.eat(")") {
        return Err(bad(RuStime));
    }
    if !(if labelled {
        c.eat(" db=(")
    } else {
        c.eat(" (")
    }) {
        return Err(bad(Db));
    }
    let first = c.usage(unit).ok_or(bad(Db))?;
    if !c.eat("/") {
        return Err(bad(Db));
    }
    // `sched/txn/count` (0.27 on) or `txn/count` (0.12 – 0.26).
    let (db_sched_ms, db_txn_ms) = match c.usage(unit) {
        Some(txn) if c.eat("/") => (Some(first), txn),
        Some(_) => return Err(bad(Db)),
        None => (None, first),
    };
    let db_txn_count = c.uint().ok_or(bad(Db))?;
    if !c.eat(") ") {
        return Err(bad(Db));
    }
    let response_bytes = c.uint().ok_or(bad(ResponseBytes))?;
    if !c.eat("B ") {
        return Err(bad(ResponseBytes));
    }
    let (status, disconnected) = status(&mut c).ok_or(bad(Status))?;
    if !c.eat(" \"") {
        return Err(bad(Status));
    }
    let rest = c.rest();
    let (method, _) = rest.split_once(' ').ok_or(bad(Request))?;
    let method = unbyte(method);
    if method.is_empty() || method.contains('"') {
        return Err(bad(Request));
    }
    // The URI and user agent are not needed, but a line that stops before the agent's closing
    // quote (and `[n dbevts]`, if begun) was cut short.
    let sep = rest.find("\" \"").ok_or(bad(End))?;
    let agent_end = match rest.strip_suffix(" dbevts]") {
        Some(t) => t.rsplit_once(" [").map(|(a, _)| a).ok_or(bad(End))?,
        None => rest,
    };
    if !agent_end.ends_with('"') || agent_end.len() <= sep + 3 {
        return Err(bad(End));
    }
    Ok(AccessRecord {
        finished_ms,
        requester,
        acting_as,
        ru_utime_ms,
        ru_stime_ms,
        db_sched_ms,
        db_txn_ms,
        db_txn_count,
        response_bytes,
        status,
        disconnected,
        method,
    })
}

/// Python 3 ports of Synapse 0.33 sometimes logged byte strings as `b'…'`.
fn unbyte(s: &str) -> &str {
    s.strip_prefix("b'")
        .and_then(|s| s.strip_suffix('\''))
        .unwrap_or(s)
}

/// The braces' content → (charged, acting as). `None` when it cannot be read.
fn requester(raw: &str) -> Option<(Option<&str>, Option<&str>)> {
    let raw = unbyte(raw);
    if raw.is_empty() || raw == "None" || raw == "-" {
        return Some((None, None));
    }
    // An admin acting as a user: `|` since 1.43; `.` (1.32 – 1.42) and `,` (1.23 – 1.31)
    // between two user ids. A server name never holds `|`, `.@` or `,@`.
    let split = raw.split_once('|').or_else(|| {
        if raw.starts_with('@') {
            raw.split_once(".@")
                .or_else(|| raw.split_once(",@"))
                .map(|(a, _)| (a, &raw[a.len() + 1..]))
        } else {
            None
        }
    });
    match split {
        Some((admin, user)) if !admin.is_empty() && !user.is_empty() => {
            Some((Some(admin), Some(user)))
        }
        Some(_) => None,
        None => Some((Some(raw), None)),
    }
}

/// `200`, `200!`, `!200` (as Synapse's docs print it), `HTTPStatus.OK` (0.33.3 – 1.51).
fn status(c: &mut Cursor<'_>) -> Option<(u16, bool)> {
    let mut disconnected = c.eat("!");
    let code = if c.eat("HTTPStatus.") {
        let rest = c.rest();
        let len = rest
            .bytes()
            .take_while(|b| b.is_ascii_uppercase() || *b == b'_')
            .count();
        c.i += len;
        http_status_code(&rest[..len])?
    } else {
        let start = c.i;
        let n = c.uint()?;
        if c.i - start != 3 || n < 100 {
            return None;
        }
        u16::try_from(n).ok()?
    };
    disconnected |= c.eat("!");
    Some((code, disconnected))
}

/// Python's `http.HTTPStatus` names (3.5 – 3.13 spellings).
fn http_status_code(name: &str) -> Option<u16> {
    Some(match name {
        "CONTINUE" => 100,
        "SWITCHING_PROTOCOLS" => 101,
        "PROCESSING" => 102,
        "EARLY_HINTS" => 103,
        "OK" => 200,
        "CREATED" => 201,
        "ACCEPTED" => 202,
        "NON_AUTHORITATIVE_INFORMATION" => 203,
        "NO_CONTENT" => 204,
        "RESET_CONTENT" => 205,
        "PARTIAL_CONTENT" => 206,
        "MULTI_STATUS" => 207,
        "ALREADY_REPORTED" => 208,
        "IM_USED" => 226,
        "MULTIPLE_CHOICES" => 300,
        "MOVED_PERMANENTLY" => 301,
        "FOUND" => 302,
        "SEE_OTHER" => 303,
        "NOT_MODIFIED" => 304,
        "USE_PROXY" => 305,
        "TEMPORARY_REDIRECT" => 307,
        "PERMANENT_REDIRECT" => 308,
        "BAD_REQUEST" => 400,
        "UNAUTHORIZED" => 401,
        "PAYMENT_REQUIRED" => 402,
        "FORBIDDEN" => 403,
        "NOT_FOUND" => 404,
        "METHOD_NOT_ALLOWED" => 405,
        "NOT_ACCEPTABLE" => 406,
        "PROXY_AUTHENTICATION_REQUIRED" => 407,
        "REQUEST_TIMEOUT" => 408,
        "CONFLICT" => 409,
        "GONE" => 410,
        "LENGTH_REQUIRED" => 411,
        "PRECONDITION_FAILED" => 412,
        "REQUEST_ENTITY_TOO_LARGE" | "CONTENT_TOO_LARGE" => 413,
        "REQUEST_URI_TOO_LONG" | "URI_TOO_LONG" => 414,
        "UNSUPPORTED_MEDIA_TYPE" => 415,
        "REQUESTED_RANGE_NOT_SATISFIABLE" | "RANGE_NOT_SATISFIABLE" => 416,
        "EXPECTATION_FAILED" => 417,
        "IM_A_TEAPOT" => 418,
        "MISDIRECTED_REQUEST" => 421,
        "UNPROCESSABLE_ENTITY" | "UNPROCESSABLE_CONTENT" => 422,
        "LOCKED" => 423,
        "FAILED_DEPENDENCY" => 424,
        "TOO_EARLY" => 425,
        "UPGRADE_REQUIRED" => 426,
        "PRECONDITION_REQUIRED" => 428,
        "TOO_MANY_REQUESTS" => 429,
        "REQUEST_HEADER_FIELDS_TOO_LARGE" => 431,
        "UNAVAILABLE_FOR_LEGAL_REASONS" => 451,
        "INTERNAL_SERVER_ERROR" => 500,
        "NOT_IMPLEMENTED" => 501,
        "BAD_GATEWAY" => 502,
        "SERVICE_UNAVAILABLE" => 503,
        "GATEWAY_TIMEOUT" => 504,
        "HTTP_VERSION_NOT_SUPPORTED" => 505,
        "VARIANT_ALSO_NEGOTIATES" => 506,
        "INSUFFICIENT_STORAGE" => 507,
        "LOOP_DETECTED" => 508,
        "NOT_EXTENDED" => 510,
        "NETWORK_AUTHENTICATION_REQUIRED" => 511,
        _ => return None,
    })
}

/// Lines seen, access lines read, lines skipped by reason. Cumulative; merged by addition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngestCounts {
    pub lines: u64,
    /// Lines that gave an [`AccessRecord`].
    pub access: u64,
    skipped: [u64; Skip::COUNT],
}

impl Default for IngestCounts {
    fn default() -> Self {
        Self {
            lines: 0,
            access: 0,
            skipped: [0; Skip::COUNT],
        }
    }
}

impl IngestCounts {
    pub fn skipped(&self, reason: Skip) -> u64 {
        self.skipped[reason.index()]
    }

    pub fn skipped_total(&self) -> u64 {
        self.skipped.iter().sum()
    }

    /// Every reason with its count, zeros included, in [`Skip::all`] order.
    pub fn skipped_by_reason(&self) -> impl Iterator<Item = (Skip, u64)> + '_ {
        Skip::all().map(|s| (s, self.skipped(s)))
    }

    /// Count one parse outcome.
    pub fn record<T>(&mut self, outcome: &Result<T, Skip>) {
        self.lines += 1;
        match outcome {
            Ok(_) => self.access += 1,
            Err(s) => self.skipped[s.index()] += 1,
        }
    }

    pub fn merge(&mut self, other: &IngestCounts) {
        self.lines += other.lines;
        self.access += other.access;
        for (a, b) in self.skipped.iter_mut().zip(other.skipped) {
            *a += b;
        }
    }
}

/// One minute's weights, ready to be stored (owned; requester names are shared, not copied).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MinuteWeight {
    /// Start of the UTC minute, Unix seconds.
    pub minute_s: i64,
    /// `R_i`: the weight of every request that finished in the minute, ms.
    pub total_ms: u64,
    /// How many requests finished in the minute.
    pub requests: u64,
    /// The part of `total_ms` with no requester (unauthenticated requests).
    pub unauthenticated_ms: u64,
    /// Weight per requester (users and federating servers; the accounting model picks its
    /// members out), sorted by requester. With `unauthenticated_ms` it sums to `total_ms`.
    pub by_requester: Vec<(Arc<str>, u64)>,
}

/// Requester ids, interned so that the hot path allocates only for a requester never seen.
#[derive(Debug, Default, Clone)]
struct Interner {
    ids: HashMap<Arc<str>, u32>,
    names: Vec<Arc<str>>,
}

impl Interner {
    fn id(&mut self, name: &str) -> u32 {
        if let Some(&id) = self.ids.get(name) {
            return id;
        }
        // More than 4 billion distinct requesters between two compactions cannot happen: a
        // line is at least 100 bytes, and compaction keeps only pending minutes' names.
        let id = u32::try_from(self.names.len()).unwrap_or(u32::MAX);
        let name: Arc<str> = Arc::from(name);
        self.names.push(Arc::clone(&name));
        self.ids.insert(name, id);
        id
    }

    fn name(&self, id: u32) -> Arc<str> {
        self.names
            .get(id as usize)
            .cloned()
            .unwrap_or_else(|| Arc::from("?"))
    }
}

/// A hasher for dense `u32` ids: one multiply (Fibonacci hashing), no SipHash per line.
#[derive(Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_u32(&mut self, n: u32) {
        self.0 = u64::from(n).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

type IdMap = HashMap<u32, u64, BuildHasherDefault<IdHasher>>;

#[derive(Debug, Default, Clone)]
struct MinuteAcc {
    total_ms: u64,
    requests: u64,
    unauthenticated_ms: u64,
    by: IdMap,
}

/// Past this many interned names, a drain drops the names no pending minute uses.
const COMPACT_ABOVE: usize = 4096;

/// Weights per (UTC minute, requester) and `R` per minute, in memory until drained, plus the
/// ingest counters. Feed it lines ([`ingest_line`](Self::ingest_line),
/// [`ingest_journal`](Self::ingest_journal)) or records ([`add`](Self::add)); take finished
/// minutes with [`drain_before`](Self::drain_before). Minutes merge by addition, so a line
/// that arrives after its minute was drained reopens the minute, and the store must add it
/// to what it holds rather than overwrite.
#[derive(Debug, Default, Clone)]
pub struct MinuteWeights {
    parser: Parser,
    names: Interner,
    minutes: BTreeMap<i64, MinuteAcc>,
    counts: IngestCounts,
}

impl MinuteWeights {
    pub fn new() -> Self {
        Self::default()
    }

    /// Parse a whole log line ([`Parser::parse_line`]), count it, and add its weight.
    pub fn ingest_line(&mut self, line: &str) -> Result<(), Skip> {
        let r = self.parser.parse_line(line);
        self.counts.record(&r);
        r.map(|rec| self.add(&rec))
    }

    /// A journal entry ([`Parser::parse_journal`]), counted and added.
    pub fn ingest_journal(&mut self, message: &str, realtime_us: u64) -> Result<(), Skip> {
        let r = self.parser.parse_journal(message, realtime_us);
        self.counts.record(&r);
        r.map(|rec| self.add(&rec))
    }

    /// Add one request's weight to its minute (not counted as a line).
    pub fn add(&mut self, rec: &AccessRecord<'_>) {
        let w = rec.weight_ms();
        let acc = self.minutes.entry(rec.minute_s()).or_default();
        acc.total_ms = acc.total_ms.saturating_add(w);
        acc.requests += 1;
        match rec.requester {
            Some(name) => {
                let id = self.names.id(name);
                let slot = acc.by.entry(id).or_insert(0);
                *slot = slot.saturating_add(w);
            }
            None => acc.unauthenticated_ms = acc.unauthenticated_ms.saturating_add(w),
        }
    }

    pub fn counts(&self) -> &IngestCounts {
        &self.counts
    }

    /// Minutes held, oldest first (minute start, Unix seconds).
    pub fn pending_minutes(&self) -> impl Iterator<Item = i64> + '_ {
        self.minutes.keys().copied()
    }

    pub fn is_empty(&self) -> bool {
        self.minutes.is_empty()
    }

    /// Take every minute that starts before `end_s` (Unix seconds), oldest first. Call it with
    /// the start of the current minute to take the minutes that are over.
    pub fn drain_before(&mut self, end_s: i64) -> Vec<MinuteWeight> {
        let rest = self.minutes.split_off(&end_s);
        let done = std::mem::replace(&mut self.minutes, rest);
        let out = done
            .into_iter()
            .map(|(minute_s, acc)| {
                let mut by_requester: Vec<(Arc<str>, u64)> = acc
                    .by
                    .into_iter()
                    .map(|(id, w)| (self.names.name(id), w))
                    .collect();
                by_requester.sort_unstable();
                MinuteWeight {
                    minute_s,
                    total_ms: acc.total_ms,
                    requests: acc.requests,
                    unauthenticated_ms: acc.unauthenticated_ms,
                    by_requester,
                }
            })
            .collect();
        if self.names.names.len() > COMPACT_ABOVE {
            self.compact();
        }
        out
    }

    /// Take every minute.
    pub fn drain_all(&mut self) -> Vec<MinuteWeight> {
        self.drain_before(i64::MAX)
    }

    /// Put drained minutes back (a failed write), adding to what came in since.
    pub fn restore(&mut self, minutes: Vec<MinuteWeight>) {
        for m in minutes {
            let acc = self.minutes.entry(m.minute_s).or_default();
            acc.total_ms = acc.total_ms.saturating_add(m.total_ms);
            acc.requests += m.requests;
            acc.unauthenticated_ms = acc.unauthenticated_ms.saturating_add(m.unauthenticated_ms);
            for (name, w) in m.by_requester {
                let id = self.names.id(&name);
                let slot = acc.by.entry(id).or_insert(0);
                *slot = slot.saturating_add(w);
            }
        }
    }

    /// Add another aggregator's minutes and counters (e.g. one that read a file on its own).
    pub fn merge(&mut self, mut other: MinuteWeights) {
        self.counts.merge(&other.counts);
        self.restore(other.drain_all());
    }

    /// Keep only the names that pending minutes use, so a long-running daemon that meets many
    /// federating servers does not hold their names forever.
    fn compact(&mut self) {
        let mut names = Interner::default();
        for acc in self.minutes.values_mut() {
            acc.by = std::mem::take(&mut acc.by)
                .into_iter()
                .map(|(id, w)| (names.id(&self.names.name(id)), w))
                .collect();
        }
        self.names = names;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// 2026-11-26 10:00:00 UTC.
    const T0_MS: i64 = 1_795_687_200_000;

    /// PRODUCT.md §4's example: Synapse 1.150 on (`ru=` / `db=` labels, synapse/http/site.py
    /// after element-hq/synapse 8ad7e8af81).
    const PRODUCT_LINE: &str = r#"2026-11-26 10:00:00,123 - synapse.access.http.8008 - 123 - INFO - GET-42 - 127.0.0.1 - 8008 - {@alice:example.org} Processed request: 0.004sec/0.001sec ru=(0.003sec, 0.001sec) db=(0.000sec/0.002sec/3) 120B 200 "GET /_matrix/client/v3/sync HTTP/1.1" "Element" [0 dbevts]"#;

    /// The same request as Synapse 0.33.3 – 1.149 writes it (the brief's example).
    const UNLABELLED_LINE: &str = r#"2026-11-26 10:00:00,123 - synapse.access.http.8008 - 123 - INFO - GET-42 - 127.0.0.1 - 8008 - {@alice:example.org} Processed request: 0.004sec/0.001sec (0.003sec, 0.001sec) (0.000sec/0.002sec/3) 120B 200 "GET /_matrix/client/v3/sync HTTP/1.1" "Element" [0 dbevts]"#;

    fn ok(line: &str) -> AccessRecord<'_> {
        match parse_line(line) {
            Ok(r) => r,
            Err(e) => panic!("{e}: {line}"),
        }
    }

    /// (ru_utime, ru_stime, db_sched, db_txn, db_count, bytes, status, disconnected, method)
    type Figures = (
        u64,
        u64,
        Option<u64>,
        u64,
        u64,
        u64,
        u16,
        bool,
        &'static str,
    );

    fn figures(r: &AccessRecord<'_>) -> (u64, u64, Option<u64>, u64, u64, u64, u16, bool, String) {
        (
            r.ru_utime_ms,
            r.ru_stime_ms,
            r.db_sched_ms,
            r.db_txn_ms,
            r.db_txn_count,
            r.response_bytes,
            r.status,
            r.disconnected,
            r.method.to_string(),
        )
    }

    fn check(line: &str, requester: Option<&str>, finished_ms: i64, f: Figures, weight_ms: u64) {
        let r = ok(line);
        assert_eq!(r.requester, requester, "{line}");
        assert_eq!(r.finished_ms, finished_ms, "{line}");
        let (a, b, c, d, e, g, h, i, m) = f;
        assert_eq!(
            figures(&r),
            (a, b, c, d, e, g, h, i, m.to_string()),
            "{line}"
        );
        assert_eq!(r.weight_ms(), weight_ms, "{line}");
    }

    #[test]
    fn current_and_previous_synapse_lines_give_the_same_record() {
        let f = (3, 1, Some(0), 2, 3, 120, 200, false, "GET");
        check(PRODUCT_LINE, Some("@alice:example.org"), T0_MS + 123, f, 6);
        check(
            UNLABELLED_LINE,
            Some("@alice:example.org"),
            T0_MS + 123,
            f,
            6,
        );
    }

    #[test]
    fn lines_from_synapses_docs_and_contrib() {
        // docs/usage/administration/request_log.md as of Synapse 1.150 (element-hq/synapse
        // 8ad7e8af81): a federating server, `!200` as the docs print a dropped connection, and
        // the docs' missing space after the request id.
        check(
            r#"2020-10-01 12:00:00,000 - synapse.access.http.8008 - 311 - INFO - PUT-1000- 192.168.0.1 - 8008 - {another-matrix-server.com} Processed request: 0.100sec/-0.000sec ru=(0.000sec, 0.000sec) db=(0.001sec/0.090sec/3) 11B !200 "PUT /_matrix/federation/v1/send/1600000000000 HTTP/1.1" "Synapse/1.20.1" [0 dbevts]"#,
            Some("another-matrix-server.com"),
            1_601_553_600_000,
            (0, 0, Some(1), 90, 3, 11, 200, true, "PUT"),
            90,
        );
        // docs/usage/administration/admin_faq.md (Synapse 0.99 era, 2019; IPv6 loopback; the
        // doc's stray closing quote after `[0 dbevts]` included).
        check(
            r#"2019-02-14 22:35:08,196 - synapse.access.http.8008 - 302 - INFO - GET-37 - ::1 - 8008 - {@richvdh:localhost} Processed request: 0.173sec/0.001sec (0.002sec, 0.000sec) (0.027sec/0.026sec/2) 687B 200 "GET /_matrix/client/r0/sync HTTP/1.1" "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/69.0.3497.100 Safari/537.36" [0 dbevts]""#,
            Some("@richvdh:localhost"),
            1_550_183_708_196,
            (2, 0, Some(27), 26, 2, 687, 200, false, "GET"),
            28,
        );
        // contrib/lnav/synapse-log-format.json (Synapse 1.7x, 2023), with docker compose's
        // service-name prefix.
        check(
            r#"my-matrix-server  | 2023-01-26 15:08:40,447 - synapse.access.http.8008 - 460 - INFO - PUT-74929 - 0.0.0.0 - 8008 - {@alice:example.com} Processed request: 0.011sec/0.000sec (0.000sec, 0.000sec) (0.001sec/0.008sec/3) 2B 200 "PUT /_matrix/client/r0/user/%40alice%3Atexample.com/account_data/im.vector.setting.breadcrumbs HTTP/1.0" "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Element/1.11.20 Chrome/108.0.5359.179 Electron/22.0.3 Safari/537.36" [0 dbevts]"#,
            Some("@alice:example.com"),
            1_674_745_720_447,
            (0, 0, Some(1), 8, 3, 2, 200, false, "PUT"),
            8,
        );
    }

    /// Older forms, written from the format strings in synapse/http/site.py at the commits named.
    #[test]
    fn older_synapse_formats() {
        let t = "2016-01-05 12:00:00,000";
        let ms = 1_451_995_200_000;
        let line = |figures: &str, tail: &str| {
            format!(
                r#"{t} - synapse.access.http.8008 - 59 - INFO - GET-5 - 10.1.2.3 - 8008 - {{@alice:example.org}} Processed request: {figures} 120B 200 "GET /_matrix/client/api/v1/events HTTP/1.1" "Python-urllib/2.7"{tail}"#
            )
        };
        let alice = Some("@alice:example.org");
        // 0.12 – 0.26 (6a5ff5f223): `%dms (%dms, %dms) (%dms/%d)`, db is txn/count.
        let f = (4, 1, None, 2, 3, 120, 200, false, "GET");
        check(&line("12ms (4ms, 1ms) (2ms/3)", ""), alice, ms, f, 7);
        // 0.27 – 0.30 (3d12d97415): db sched/txn/count.
        let f = (4, 1, Some(9), 2, 3, 120, 200, false, "GET");
        check(&line("12ms (4ms, 1ms) (9ms/2ms/3)", ""), alice, ms, f, 7);
        // 0.31 (a2eb5db4a0): seconds.
        let sec = "0.012sec (0.004sec, 0.001sec) (0.009sec/0.002sec/3)";
        check(&line(sec, ""), alice, ms, f, 7);
        // 0.32 – 0.33.2 (b088aafcae): `[%d dbevts]`.
        check(&line(sec, " [5 dbevts]"), alice, ms, f, 7);
        // 0.33.3 – 1.149 (eaaa2248ff): processing/response-send.
        let both = "0.012sec/-0.001sec (0.004sec, 0.001sec) (0.009sec/0.002sec/3)";
        check(&line(both, " [5 dbevts]"), alice, ms, f, 7);
        // 0.9.3 – 0.11 (aaa749d366): no resource usage at all.
        assert_eq!(parse_line(&line("12ms", "")), Err(Skip::NoUsage));
        // Mixed units are not a Synapse line.
        assert_eq!(
            parse_line(&line("12ms (0.004sec, 0.001sec) (2ms/3)", "")),
            Err(Skip::Malformed(Field::RuUtime))
        );
    }

    #[test]
    fn status_codes_as_synapse_wrote_them() {
        let with =
            |status: &str| UNLABELLED_LINE.replace(" 200 \"GET", &format!(" {status} \"GET"));
        let st = |s: &str| parse_line(&with(s)).map(|r| (r.status, r.disconnected));
        assert_eq!(st("200!"), Ok((200, true)));
        assert_eq!(st("!499"), Ok((499, true)));
        // 0.33.3 – 1.51 (fixed by d8df8e6c14): Python's HTTPStatus repr.
        assert_eq!(st("HTTPStatus.OK"), Ok((200, false)));
        assert_eq!(st("HTTPStatus.TOO_MANY_REQUESTS!"), Ok((429, true)));
        for bad in ["HTTPStatus.NOPE", "20", "2000", "099", "OK", ""] {
            assert_eq!(st(bad), Err(Skip::Malformed(Field::Status)), "{bad:?}");
        }
    }

    #[test]
    fn python3_byte_strings_of_synapse_0_33() {
        // Before f00a9d2636 (0.33.5) a Python 3 Synapse logged `b'GET'` and `b'HTTP/1.1'`.
        let line = UNLABELLED_LINE.replace(
            r#""GET /_matrix/client/v3/sync HTTP/1.1""#,
            r#""b'GET' /_matrix/client/v3/sync b'HTTP/1.1'""#,
        );
        assert_eq!(ok(&line).method, "GET");
    }

    #[test]
    fn requesters_member_admin_puppet_and_unauthenticated() {
        let with =
            |req: &str| UNLABELLED_LINE.replace("{@alice:example.org}", &format!("{{{req}}}"));
        let who = |req: &str| {
            parse_line(&with(req)).map(|r| {
                let own = |s: Option<&str>| s.map(str::to_string);
                (own(r.requester), own(r.acting_as))
            })
        };
        let some = |s: &str| Some(s.to_string());
        let (admin, alice) = ("@admin:example.org", "@alice:example.org");
        assert_eq!(who(alice), Ok((some(alice), None)));
        // An admin acting as a user is charged: `|` since 1.43 (66d72b7e17), `.` 1.32 – 1.42
        // (48d44ab142), `,` 1.23 – 1.31 (f21e24ffc2).
        for sep in ["|", ".", ","] {
            let both = format!("{admin}{sep}{alice}");
            assert_eq!(who(&both), Ok((some(admin), some(alice))), "{both}");
        }
        // Unauthenticated: Python's None, and the dash and empty field of other tooling.
        for anon in ["None", "-", ""] {
            assert_eq!(who(anon), Ok((None, None)), "{anon:?}");
        }
        // A federating server's name is kept as is (it has dots but no `.@`).
        assert_eq!(who("matrix.org"), Ok((some("matrix.org"), None)));
        for bad in ["|@alice:example.org", "@admin:example.org|"] {
            assert_eq!(who(bad), Err(Skip::Malformed(Field::Requester)), "{bad}");
        }
    }

    #[test]
    fn the_client_ip_is_not_in_the_record_nor_the_minute() {
        for (ip, line) in [
            ("127.0.0.1", PRODUCT_LINE.to_string()),
            (
                "2001:db8::7",
                PRODUCT_LINE.replace("127.0.0.1", "2001:db8::7"),
            ),
            (
                "192.0.2.44",
                UNLABELLED_LINE.replace("127.0.0.1", "192.0.2.44"),
            ),
        ] {
            let r = ok(&line);
            assert!(!format!("{r:?}").contains(ip), "{r:?}");
            let mut w = MinuteWeights::new();
            assert_eq!(w.ingest_line(&line), Ok(()));
            assert!(!format!("{w:?}").contains(ip));
            assert!(!format!("{:?}", w.drain_all()).contains(ip));
        }
    }

    #[test]
    fn a_line_at_59_999_and_one_at_00_000_fall_in_consecutive_minutes() {
        let at = |t: &str| PRODUCT_LINE.replace("2026-11-26 10:00:00,123", t);
        let (a, b) = (at("2026-11-26 10:00:59,999"), at("2026-11-26 10:01:00,000"));
        assert_eq!(ok(&a).finished_ms, T0_MS + 59_999);
        assert_eq!(ok(&a).minute_s(), T0_MS / 1000);
        assert_eq!(ok(&b).minute_s(), T0_MS / 1000 + 60);
        let mut w = MinuteWeights::new();
        for l in [&a, &b, &b] {
            assert_eq!(w.ingest_line(l), Ok(()));
        }
        let got: Vec<(i64, u64, u64)> = w
            .drain_all()
            .iter()
            .map(|m| (m.minute_s, m.total_ms, m.requests))
            .collect();
        assert_eq!(got, [(T0_MS / 1000, 6, 1), (T0_MS / 1000 + 60, 12, 2)]);
    }

    #[test]
    fn timestamps_are_utc_calendar_dates_and_invalid_ones_are_malformed() {
        let at = |t: &str| {
            parse_line(&PRODUCT_LINE.replace("2026-11-26 10:00:00,123", t)).map(|r| r.finished_ms)
        };
        assert_eq!(at("2024-02-29 23:59:59,999"), Ok(1_709_251_199_999));
        assert_eq!(at("1970-01-01 00:00:00,000"), Ok(0));
        for bad in [
            "2026-02-29 10:00:00,123",
            "2100-02-29 10:00:00,123",
            "2026-13-01 10:00:00,123",
            "2026-00-10 10:00:00,123",
            "2026-04-31 10:00:00,123",
            "2026-11-26 24:00:00,123",
            "2026-11-26 10:60:00,123",
            "2026-11-26 10:00:60,123",
            "2026-11-26 10:00:00.123",
            "2026-11-26T10:00:00,123",
            "2026-11-2a 10:00:00,123",
            "026-11-26 10:00:00,123",
        ] {
            assert_eq!(at(bad), Err(Skip::Malformed(Field::Timestamp)), "{bad}");
        }
    }

    proptest! {
        #[test]
        fn day_numbers_match_chrono(day in -800_000i64..800_000) {
            let date = chrono::NaiveDate::from_num_days_from_ce_opt(719_163 + day as i32);
            prop_assume!(date.is_some());
            let date = date.expect("assumed");
            let t = format!("{} 10:00:00,123", date.format("%Y-%m-%d"));
            prop_assume!(t.len() == TIMESTAMP_LEN);
            let mut p = Parser::new();
            prop_assert_eq!(p.timestamp(t.as_bytes()), Some(day * 86_400_000 + 36_000_123));
        }
    }

    #[test]
    fn the_date_cache_follows_the_date() {
        let mut p = Parser::new();
        let a = p.parse_line(PRODUCT_LINE).map(|r| r.finished_ms);
        let next = PRODUCT_LINE.replace("2026-11-26", "2026-11-27");
        let b = p.parse_line(&next).map(|r| r.finished_ms);
        let c = p.parse_line(PRODUCT_LINE).map(|r| r.finished_ms);
        assert_eq!(
            (a, b, c),
            (
                Ok(T0_MS + 123),
                Ok(T0_MS + 123 + 86_400_000),
                Ok(T0_MS + 123)
            )
        );
    }

    #[test]
    fn negative_usage_is_malformed_but_minus_zero_is_zero() {
        let with = |ru: &str| {
            parse_line(&PRODUCT_LINE.replace("ru=(0.003sec, 0.001sec)", ru)).map(|r| r.weight_ms())
        };
        assert_eq!(with("ru=(-0.000sec, 0.001sec)"), Ok(3));
        assert_eq!(
            with("ru=(-0.001sec, 0.001sec)"),
            Err(Skip::Malformed(Field::RuUtime))
        );
        assert_eq!(
            with("ru=(0.001sec, -0.001sec)"),
            Err(Skip::Malformed(Field::RuStime))
        );
        let db = PRODUCT_LINE.replace("db=(0.000sec/0.002sec/3)", "db=(0.000sec/-0.002sec/3)");
        assert_eq!(parse_line(&db), Err(Skip::Malformed(Field::Db)));
        // Too many digits to be a real figure: refused, not wrapped around.
        let huge = PRODUCT_LINE.replace("ru=(0.003sec", "ru=(99999999999999999999.003sec");
        assert_eq!(parse_line(&huge), Err(Skip::Malformed(Field::RuUtime)));
    }

    #[test]
    fn other_lines_are_skipped_by_reason() {
        let cases: [(&str, Skip); 9] = [
            ("", Skip::NotLogLine),
            ("garbage \u{1F600} here", Skip::NotLogLine),
            ("Traceback (most recent call last):", Skip::NotLogLine),
            (
                "2026-11-26 10:00:00,123 - synapse.app.homeserver - 383 - INFO - main - Synapse now listening on TCP port 8008",
                Skip::OtherLogger,
            ),
            (
                "2026-11-26 10:00:00,001 - synapse.access.http.8008 - 596 - DEBUG - GET-42 - 127.0.0.1 - 8008 - Received request: GET /_matrix/client/v3/sync",
                Skip::OtherMessage,
            ),
            (
                "2026-11-26 10:00:00,123 - synapse.access.http.8008 - 123 - INFO - GET-42 - 127.0.0.1 - 8008 - {@alice:ex",
                Skip::Malformed(Field::Message),
            ),
            (
                "2026-11-26 10:00:00,123 - synapse.access.http.8008 - 12x - INFO - GET-42 - 1",
                Skip::Malformed(Field::Prefix),
            ),
            (
                "10:00:00,123 - synapse.access.http.8008 - 123 - INFO - GET-42 - 1",
                Skip::Malformed(Field::Timestamp),
            ),
            (&PRODUCT_LINE[..PRODUCT_LINE.len() - 20], Skip::Malformed(Field::End)),
        ];
        let mut w = MinuteWeights::new();
        for (line, why) in cases {
            assert_eq!(parse_line(line).err(), Some(why), "{line}");
            assert_eq!(w.ingest_line(line), Err(why));
        }
        assert_eq!(w.ingest_line(PRODUCT_LINE), Ok(()));
        let c = w.counts();
        assert_eq!((c.lines, c.access, c.skipped_total()), (10, 1, 9));
        assert_eq!(c.skipped(Skip::NotLogLine), 3);
        assert_eq!(c.skipped(Skip::Malformed(Field::End)), 1);
        assert_eq!(c.skipped_by_reason().map(|(_, n)| n).sum::<u64>(), 9);
        assert_eq!(Skip::all().count(), Skip::COUNT);
        let labels: std::collections::HashSet<String> = Skip::all().map(Skip::label).collect();
        assert_eq!(labels.len(), Skip::COUNT);
    }

    #[test]
    fn every_truncation_of_a_line_is_skipped_or_an_older_complete_form() {
        let mut w = MinuteWeights::new();
        let full = ok(PRODUCT_LINE);
        for cut in 0..PRODUCT_LINE.len() {
            let part = &PRODUCT_LINE[..cut];
            match w.ingest_line(part) {
                Err(_) => {}
                // Cutting ` [0 dbevts]` leaves a complete line of Synapse 0.31 – 0.33.2.
                Ok(()) => assert!(part.ends_with("\"Element\""), "{part}"),
            }
        }
        let c = w.counts();
        assert_eq!(c.lines, PRODUCT_LINE.len() as u64);
        assert_eq!(c.access, 1);
        assert_eq!(c.skipped_total(), c.lines - 1);
        let d = w.drain_all();
        assert_eq!(d[0].total_ms, full.weight_ms());
    }

    #[test]
    fn journal_entries_whole_lines_keep_their_time_bare_messages_take_the_journals() {
        let mut p = Parser::new();
        // The appliance: the whole formatted line is the journal's MESSAGE.
        let r = p.parse_journal(PRODUCT_LINE, 1_795_687_230_000_000);
        assert_eq!(r.map(|r| r.finished_ms), Ok(T0_MS + 123));
        // journalctl's short output in a file given to `account`.
        let short = format!("Nov 26 10:00:00 hearth python3[812]: {PRODUCT_LINE}");
        assert_eq!(p.parse_line(&short).map(|r| r.finished_ms), Ok(T0_MS + 123));
        // A handler that sends only the message.
        let bare = PRODUCT_LINE
            .split_once(" - INFO - GET-42 - ")
            .map(|(_, m)| m);
        let bare = bare.expect("the example has a message");
        let r = p.parse_journal(bare, 1_795_687_230_000_999);
        assert_eq!(
            r.map(|r| (r.finished_ms, r.weight_ms())),
            Ok((T0_MS + 30_000, 6))
        );
        assert_eq!(parse_message(bare, 7).map(|r| r.finished_ms), Ok(7));
        assert_eq!(
            p.parse_journal("Synapse now listening on TCP port 8008", 0),
            Err(Skip::OtherMessage)
        );
        assert_eq!(
            parse_message("{x} Processed request: ", 0),
            Err(Skip::Malformed(Field::Requester))
        );
        // CRLF from a file written on another system.
        assert!(p.parse_line(&format!("{PRODUCT_LINE}\r\n")).is_ok());
    }

    fn line_at(minute: i64, second: i64, requester: &str, ru_ms: u64, txn_ms: u64) -> String {
        let ms = T0_MS + minute * 60_000 + second * 1000;
        let t = chrono::DateTime::from_timestamp_millis(ms).expect("in range");
        format!(
            r#"{} - synapse.access.http.8008 - 123 - INFO - GET-1 - 127.0.0.1 - 8008 - {{{requester}}} Processed request: 0.010sec/0.000sec ru=({}, 0.000sec) db=(0.000sec/{}/1) 10B 200 "GET /x HTTP/1.1" "ua" [0 dbevts]"#,
            t.format("%Y-%m-%d %H:%M:%S,%3f"),
            sec(ru_ms),
            sec(txn_ms),
        )
    }

    fn sec(ms: u64) -> String {
        format!("{}.{:03}sec", ms / 1000, ms % 1000)
    }

    #[test]
    fn minutes_sum_per_requester_with_admins_charged_and_r_over_everyone() {
        let mut w = MinuteWeights::new();
        for l in [
            line_at(0, 1, "@alice:example.org", 3, 2),
            line_at(0, 2, "@alice:example.org", 10, 0),
            line_at(0, 3, "@admin:example.org|@bob:example.org", 4, 1),
            line_at(0, 4, "None", 7, 0),
            line_at(0, 5, "matrix.org", 0, 20),
            line_at(1, 0, "@bob:example.org", 1, 1),
        ] {
            assert_eq!(w.ingest_line(&l), Ok(()), "{l}");
        }
        let m0 = T0_MS / 1000;
        assert_eq!(w.pending_minutes().collect::<Vec<_>>(), [m0, m0 + 60]);
        let done = w.drain_before(m0 + 60);
        assert_eq!(done.len(), 1);
        let names: Vec<(&str, u64)> = done[0]
            .by_requester
            .iter()
            .map(|(n, v)| (n.as_ref(), *v))
            .collect();
        assert_eq!(
            names,
            [
                ("@admin:example.org", 5),
                ("@alice:example.org", 15),
                ("matrix.org", 20)
            ]
        );
        assert_eq!(done[0].unauthenticated_ms, 7);
        assert_eq!((done[0].total_ms, done[0].requests), (47, 5));
        // The next minute is still pending; a failed write goes back and adds up.
        assert_eq!(w.pending_minutes().collect::<Vec<_>>(), [m0 + 60]);
        w.restore(done.clone());
        assert_eq!(
            w.ingest_line(&line_at(0, 59, "@alice:example.org", 1, 0)),
            Ok(())
        );
        let again = w.drain_all();
        assert_eq!(again[0].total_ms, 48);
        assert_eq!(again[0].by_requester[1].1, 16);
        assert_eq!(again[1].by_requester, [(Arc::from("@bob:example.org"), 2)]);
        assert!(w.is_empty());
    }

    #[test]
    fn compaction_keeps_the_names_of_pending_minutes() {
        let mut w = MinuteWeights::new();
        for i in 0..(COMPACT_ABOVE + 10) {
            let server = format!("s{i}.example");
            assert_eq!(w.ingest_line(&line_at(0, 0, &server, 1, 0)), Ok(()));
        }
        assert_eq!(
            w.ingest_line(&line_at(1, 0, "@alice:example.org", 2, 0)),
            Ok(())
        );
        assert_eq!(w.ingest_line(&line_at(1, 0, "s7.example", 3, 0)), Ok(()));
        let old = w.drain_before(T0_MS / 1000 + 60);
        assert_eq!(old[0].by_requester.len(), COMPACT_ABOVE + 10);
        assert_eq!(w.names.names.len(), 2);
        assert_eq!(
            w.ingest_line(&line_at(1, 1, "@bob:example.org", 4, 0)),
            Ok(())
        );
        let rest = w.drain_all();
        let names: Vec<(&str, u64)> = rest[0]
            .by_requester
            .iter()
            .map(|(n, v)| (n.as_ref(), *v))
            .collect();
        assert_eq!(
            names,
            [
                ("@alice:example.org", 2),
                ("@bob:example.org", 4),
                ("s7.example", 3)
            ]
        );
    }

    // ---- properties -------------------------------------------------------------------------

    #[derive(Debug, Clone, Copy)]
    enum Form {
        Ms,
        MsSched,
        Sec,
        SecEvts,
        SecSend,
        Labelled,
    }

    #[derive(Debug, Clone)]
    struct Gen {
        form: Form,
        ms: i64,
        requester: (Option<String>, Option<String>),
        sep: &'static str,
        ru: (u64, u64),
        sched: u64,
        txn: u64,
        count: u64,
        bytes: u64,
        status: u16,
        disconnected: bool,
        method: String,
    }

    fn gen() -> impl Strategy<Value = Gen> {
        let form = prop_oneof![
            Just(Form::Ms),
            Just(Form::MsSched),
            Just(Form::Sec),
            Just(Form::SecEvts),
            Just(Form::SecSend),
            Just(Form::Labelled)
        ];
        let user = "@[a-z0-9._=-]{1,12}:[a-z0-9.-]{1,12}";
        let requester = prop_oneof![
            Just((None, None)),
            user.prop_map(|u| (Some(u), None)),
            (user, user).prop_map(|(a, u)| (Some(a), Some(u))),
            "[a-z0-9-]{1,10}\\.[a-z]{2,5}".prop_map(|s| (Some(s), None)),
        ];
        let fig = 0u64..10_000_000;
        (
            (
                form,
                0i64..4_102_444_800_000,
                requester,
                prop_oneof![Just("|"), Just("."), Just(",")],
            ),
            (
                fig.clone(),
                fig.clone(),
                fig.clone(),
                fig,
                0u64..100_000,
                0u64..1 << 40,
            ),
            (100u16..600, any::<bool>(), "[A-Z]{3,7}"),
        )
            .prop_map(
                |(
                    (form, ms, requester, sep),
                    (u, s, sched, txn, count, bytes),
                    (status, disconnected, method),
                )| Gen {
                    form,
                    ms,
                    requester,
                    sep,
                    ru: (u, s),
                    sched,
                    txn,
                    count,
                    bytes,
                    status,
                    disconnected,
                    method,
                },
            )
    }

    /// Write a line as that Synapse version's `%`-format would.
    fn render(g: &Gen) -> String {
        let t = chrono::DateTime::from_timestamp_millis(g.ms).expect("in range");
        let req = match &g.requester {
            (None, _) => "None".to_string(),
            (Some(a), None) => a.clone(),
            (Some(a), Some(u)) => format!("{a}{}{u}", g.sep),
        };
        let ms = |v: u64| format!("{v}ms");
        let figures = match g.form {
            Form::Ms => format!(
                "12ms ({}, {}) ({}/{})",
                ms(g.ru.0),
                ms(g.ru.1),
                ms(g.txn),
                g.count
            ),
            Form::MsSched => format!(
                "12ms ({}, {}) ({}/{}/{})",
                ms(g.ru.0),
                ms(g.ru.1),
                ms(g.sched),
                ms(g.txn),
                g.count
            ),
            Form::Sec | Form::SecEvts => format!(
                "0.012sec ({}, {}) ({}/{}/{})",
                sec(g.ru.0),
                sec(g.ru.1),
                sec(g.sched),
                sec(g.txn),
                g.count
            ),
            Form::SecSend => format!(
                "0.012sec/-0.000sec ({}, {}) ({}/{}/{})",
                sec(g.ru.0),
                sec(g.ru.1),
                sec(g.sched),
                sec(g.txn),
                g.count
            ),
            Form::Labelled => format!(
                "0.012sec/0.001sec ru=({}, {}) db=({}/{}/{})",
                sec(g.ru.0),
                sec(g.ru.1),
                sec(g.sched),
                sec(g.txn),
                g.count
            ),
        };
        let tail = match g.form {
            Form::Ms | Form::MsSched | Form::Sec => "",
            _ => " [3 dbevts]",
        };
        let bang = if g.disconnected { "!" } else { "" };
        format!(
            r#"{} - synapse.access.http.8008 - 1 - INFO - {m}-1 - 10.0.0.1 - 8008 - {{{req}}} Processed request: {figures} {}B {}{bang} "{m} /_matrix/x HTTP/1.1" "Agent "quoted" 1.0"{tail}"#,
            t.format("%Y-%m-%d %H:%M:%S,%3f"),
            g.bytes,
            g.status,
            m = g.method,
        )
    }

    proptest! {
        #[test]
        fn rendered_lines_round_trip_their_figures(g in gen()) {
            let line = render(&g);
            let r = parse_line(&line);
            prop_assert!(r.is_ok(), "{:?}: {}", r, line);
            let r = r.expect("checked");
            prop_assert_eq!(r.finished_ms, g.ms);
            prop_assert_eq!(r.requester, g.requester.0.as_deref());
            prop_assert_eq!(r.acting_as, g.requester.1.as_deref());
            prop_assert_eq!((r.ru_utime_ms, r.ru_stime_ms, r.db_txn_ms, r.db_txn_count), (g.ru.0, g.ru.1, g.txn, g.count));
            let sched = (!matches!(g.form, Form::Ms)).then_some(g.sched);
            prop_assert_eq!(r.db_sched_ms, sched);
            prop_assert_eq!((r.response_bytes, r.status, r.disconnected), (g.bytes, g.status, g.disconnected));
            prop_assert_eq!(r.method, g.method.as_str());
            prop_assert_eq!(r.weight_ms(), g.ru.0 + g.ru.1 + g.txn);
            let debug = format!("{r:?}");
            prop_assert!(!debug.contains("10.0.0.1"));
        }

        #[test]
        fn arbitrary_text_never_panics(s in any::<String>(), ts in any::<i64>(), us in any::<u64>()) {
            let mut w = MinuteWeights::new();
            let _ = w.ingest_line(&s);
            let _ = w.ingest_journal(&s, us);
            let _ = parse_message(&s, ts);
            prop_assert_eq!(w.counts().lines, 2);
        }

        #[test]
        fn mutated_lines_never_panic_and_are_counted(
            g in gen(),
            edits in proptest::collection::vec((any::<prop::sample::Index>(), 0u8..3, any::<char>()), 1..6),
        ) {
            let mut line: Vec<char> = render(&g).chars().collect();
            for (at, op, c) in edits {
                if line.is_empty() {
                    break;
                }
                let i = at.index(line.len());
                match op {
                    0 => line[i] = c,
                    1 => { line.remove(i); }
                    _ => line.insert(i, c),
                }
            }
            let line: String = line.into_iter().collect();
            let mut w = MinuteWeights::new();
            let r = w.ingest_line(&line);
            let c = w.counts();
            prop_assert_eq!(c.lines, 1);
            prop_assert_eq!(c.access + c.skipped_total(), 1);
            prop_assert_eq!(r.is_ok(), c.access == 1);
            let _ = w.drain_all();
        }

        #[test]
        fn merging_two_halves_equals_reading_all(gs in proptest::collection::vec(gen(), 0..40), split in any::<prop::sample::Index>()) {
            let lines: Vec<String> = gs.iter().map(render).collect();
            let cut = if lines.is_empty() { 0 } else { split.index(lines.len() + 1) };
            let (mut all, mut a, mut b) = (MinuteWeights::new(), MinuteWeights::new(), MinuteWeights::new());
            for (i, l) in lines.iter().enumerate() {
                let _ = all.ingest_line(l);
                let _ = if i < cut { a.ingest_line(l) } else { b.ingest_line(l) };
            }
            a.merge(b);
            prop_assert_eq!(a.counts(), all.counts());
            let (ma, mall) = (a.drain_all(), all.drain_all());
            for m in &mall {
                let named: u64 = m.by_requester.iter().map(|(_, w)| w).sum();
                prop_assert_eq!(named + m.unauthenticated_ms, m.total_ms);
            }
            prop_assert_eq!(ma, mall);
        }
    }
}
