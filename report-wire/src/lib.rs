//! The anonymous monthly energy report as it travels from a hearth box to the cooperative's
//! collector (issue 14), shared by both sides so they cannot drift apart:
//!
//! - [`Report`], its JSON form, and [`parse`], the strict parser the collector (and its fuzz
//!   target) runs on every body: size cap first, then UTF-8 JSON with no unknown field, then every
//!   field's range and format, each error one line naming the field;
//! - [`token`]: RFC 9474 blind RSA tokens. An enrolled box obtains blind-signed tokens from the
//!   cooperative (authenticated by its key, so only enrolled boxes get any); each report carries one
//!   unblinded token, which the collector accepts once and cannot tie to the box that asked for it;
//! - [`noise`]: the Laplace mechanism that makes a single report say little about one household.
//!
//! What a report does not carry is as much the format as what it does: no member, household,
//! server name, address, or anything finer than the month (PRODUCT.md §6).

pub mod noise;
pub mod token;

use serde::{Deserialize, Serialize};

pub use noise::{laplace, uniform_from_bits};
pub use token::Token;

/// The `schema` every report carries; a collector refuses any other.
pub const SCHEMA: &str = "hearth-report/1";
/// The largest body the collector reads; a real report is about 700 bytes.
pub const MAX_BYTES: usize = 4096;
/// The longest supplier name, in characters.
pub const MAX_SUPPLIER_CHARS: usize = 80;
/// The largest |energy_kwh| accepted. The largest clamp is class `other`'s in a 31-day month,
/// 65 W × 744 h = 48.36 kWh; with ε = [`MIN_EPSILON`] the noise's scale is 483.6 kWh, and a
/// Laplace draw beyond 20 times its scale has probability e^-20 ≈ 2·10⁻⁹ (the box clamps such a
/// draw to this bound rather than send what would be refused). Anything larger is not a report
/// of ours.
pub const MAX_ABS_KWH: f64 = 10_000.0;
/// The privacy budget per report a box may be configured with: [`MIN_EPSILON`]..=[`MAX_EPSILON`].
pub const MIN_EPSILON: f64 = 0.1;
pub const MAX_EPSILON: f64 = 10.0;

/// One month of one box, as sent to `POST <cooperative_api>/api/v1/reports`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Report {
    /// Always [`SCHEMA`].
    pub schema: String,
    /// The idempotency key: 128 random bits as 32 lower-case hex characters, drawn once when the
    /// report is created and kept with it in the box's outbox, so a retry after a lost answer is
    /// recognised as the same report (the collector answers 200 or 409 to a replay; both mean
    /// delivered). Fresh per report, so it links nothing.
    pub id: String,
    /// The month reported, `YYYY-MM`, UTC.
    pub month: String,
    /// The month's energy of the whole board, in kWh: clamped to the board's physical maximum,
    /// plus Laplace noise of scale (maximum / ε), rounded to 0.1 kWh.
    ///
    /// It may be negative. That is on purpose: the noise has mean zero only if it is kept whole;
    /// clamping the noised value at 0 again would cut off the lower tail and bias every mean
    /// upwards (most by small boxes, whose true values sit nearest to 0). A negative value is
    /// unbiased evidence; only the aggregate over many reports means anything.
    pub energy_kwh: f64,
    /// The privacy budget this report was noised with (ε of the Laplace mechanism).
    pub epsilon: f64,
    pub hardware: Hardware,
    pub members: MembersBucket,
    /// The fraction of the month's minutes that have a measurement, rounded to 0.05.
    pub uptime_share: f64,
    /// Synapse's `MAJOR.MINOR`, e.g. `1.139`; the patch level is left out (it narrows the crowd).
    pub synapse: String,
    /// The electricity supplier, only when the household chose to share it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub supplier: Option<String>,
    /// One unblinded token: proof that an enrolled box sent this, without saying which.
    pub token: Token,
}

/// The board's class; its maximum power bounds the report's energy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Hardware {
    Pi3,
    Pi4,
    Pi5,
    Other,
}

impl Hardware {
    pub const ALL: [Hardware; 4] = [Hardware::Pi3, Hardware::Pi4, Hardware::Pi5, Hardware::Other];

    pub fn as_str(self) -> &'static str {
        match self {
            Hardware::Pi3 => "pi3",
            Hardware::Pi4 => "pi4",
            Hardware::Pi5 => "pi5",
            Hardware::Other => "other",
        }
    }

    /// The most a board of the class can draw, in watts: its official power supply's rating,
    /// which bounds everything the INA219 on the supply line can see (the board, its SSD and USB
    /// devices). Box and collector both take the clamp from here, so they cannot disagree.
    /// - Pi 3 (B/B+): 5.1 V × 2.5 A = 12.75 W;
    /// - Pi 4: 5.1 V × 3 A = 15.3 W;
    /// - Pi 5: 5.1 V × 5 A = 25.5 W (the 27 W USB-C PD supply);
    /// - other (a mini PC, a developer's machine): 65 W, a common laptop-class brick. An
    ///   assumption: a larger machine's reports are clamped (biased low), which the published
    ///   error bound does not cover; the class is reported, so the collector keeps it apart.
    pub fn max_watts(self) -> f64 {
        match self {
            Hardware::Pi3 => 12.75,
            Hardware::Pi4 => 15.3,
            Hardware::Pi5 => 25.5,
            Hardware::Other => 65.0,
        }
    }

    /// The clamp of a month's energy, kWh: [`Hardware::max_watts`] × the month's hours. Also
    /// the sensitivity of a report, so the Laplace noise's scale is this over ε.
    pub fn max_kwh(self, month_hours: f64) -> f64 {
        self.max_watts() * month_hours / 1000.0
    }
}

/// The hours of a UTC month `YYYY-MM` (672 to 744); `None` when it is not such a month.
pub fn month_hours(month: &str) -> Option<f64> {
    let (y, m) = month.split_once('-')?;
    if y.len() != 4 || m.len() != 2 {
        return None;
    }
    let y: u32 = y.parse().ok()?;
    let m: u32 = m.parse().ok()?;
    let days = match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        _ => return None,
    };
    Some(f64::from(days * 24))
}

/// The number of Matrix accounts, as a bucket: the exact count of a small server is nearly an
/// identifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum MembersBucket {
    #[serde(rename = "1")]
    One,
    #[serde(rename = "2-5")]
    TwoToFive,
    #[serde(rename = "6-10")]
    SixToTen,
    #[serde(rename = "11+")]
    ElevenPlus,
}

impl MembersBucket {
    pub const ALL: [MembersBucket; 4] = [
        MembersBucket::One,
        MembersBucket::TwoToFive,
        MembersBucket::SixToTen,
        MembersBucket::ElevenPlus,
    ];

    /// The bucket of `count` members; 0 (a box not yet set up) counts as 1.
    pub fn of(count: usize) -> MembersBucket {
        match count {
            0 | 1 => MembersBucket::One,
            2..=5 => MembersBucket::TwoToFive,
            6..=10 => MembersBucket::SixToTen,
            _ => MembersBucket::ElevenPlus,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            MembersBucket::One => "1",
            MembersBucket::TwoToFive => "2-5",
            MembersBucket::SixToTen => "6-10",
            MembersBucket::ElevenPlus => "11+",
        }
    }
}

/// Why a body is not a report: one line, naming the field where there is one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("report too large: {len} bytes (at most {MAX_BYTES})")]
    TooLarge { len: usize },
    #[error("not a report: {0}")]
    Json(String),
    #[error("{field}: {reason}")]
    Field { field: &'static str, reason: String },
}

fn field(field: &'static str, reason: impl Into<String>) -> ParseError {
    ParseError::Field {
        field,
        reason: reason.into(),
    }
}

/// Parses and checks one report body. Nothing is trusted before this returns `Ok`; the token's
/// signature is not checked here (that needs the collector's key: [`token::verify`]).
pub fn parse(bytes: &[u8]) -> Result<Report, ParseError> {
    if bytes.len() > MAX_BYTES {
        return Err(ParseError::TooLarge { len: bytes.len() });
    }
    let text = std::str::from_utf8(bytes).map_err(|_| ParseError::Json("not UTF-8".into()))?;
    let report: Report = serde_json::from_str(text).map_err(|e| {
        // serde_json's message names the field ("unknown field `x`", "missing field `id`",
        // "invalid type … at line 1 column 9"), but it quotes the body's own keys and strings,
        // decoded: a key `"toke\n"` would put a line break into the reason the collector
        // answers and logs (found by the fuzz target `report`).
        ParseError::Json(one_line(&e.to_string()))
    })?;
    report.check()?;
    Ok(report)
}

/// `s` with every control character and line or paragraph separator escaped (`\n`,
/// `\u{2028}`): what a sender put into a body stays on the reason's one line.
fn one_line(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_control() || c == '\u{2028}' || c == '\u{2029}' {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

impl Report {
    /// Every field's range and format, as [`parse`] checks them; the builder checks its own output
    /// with this too, so a box never sends what a collector would refuse.
    pub fn check(&self) -> Result<(), ParseError> {
        if self.schema != SCHEMA {
            return Err(field("schema", format!("expected \"{SCHEMA}\"")));
        }
        if !is_lower_hex(&self.id, 32) {
            return Err(field("id", "expected 32 lower-case hex characters"));
        }
        if !is_month(&self.month) {
            return Err(field("month", "expected YYYY-MM"));
        }
        check_number("energy_kwh", self.energy_kwh)?;
        if self.energy_kwh.abs() > MAX_ABS_KWH {
            return Err(field(
                "energy_kwh",
                format!("out of range (|x| ≤ {MAX_ABS_KWH})"),
            ));
        }
        if !is_multiple(self.energy_kwh, 0.1) {
            return Err(field("energy_kwh", "not rounded to 0.1"));
        }
        check_number("epsilon", self.epsilon)?;
        if !(MIN_EPSILON..=MAX_EPSILON).contains(&self.epsilon) {
            return Err(field(
                "epsilon",
                format!("out of range ({MIN_EPSILON}..={MAX_EPSILON})"),
            ));
        }
        check_number("uptime_share", self.uptime_share)?;
        if !(0.0..=1.0).contains(&self.uptime_share) {
            return Err(field("uptime_share", "out of range (0..=1)"));
        }
        if !is_multiple(self.uptime_share, 0.05) {
            return Err(field("uptime_share", "not rounded to 0.05"));
        }
        if !is_major_minor(&self.synapse) {
            return Err(field("synapse", "expected MAJOR.MINOR, e.g. 1.139"));
        }
        if let Some(s) = &self.supplier {
            check_supplier(s).map_err(|reason| field("supplier", reason))?;
        }
        self.token.check()
    }
}

/// Whether a supplier's name may travel: 1..=80 characters, printable, no surrounding spaces.
pub fn check_supplier(s: &str) -> Result<(), &'static str> {
    let n = s.chars().count();
    if n == 0 {
        return Err("empty (leave it out instead)");
    }
    if n > MAX_SUPPLIER_CHARS {
        return Err("longer than 80 characters");
    }
    if s.chars().any(char::is_control) {
        return Err("contains a control character");
    }
    if s.trim() != s {
        return Err("surrounding spaces");
    }
    Ok(())
}

fn check_number(name: &'static str, x: f64) -> Result<(), ParseError> {
    if x.is_finite() {
        Ok(())
    } else {
        Err(field(name, "not a finite number"))
    }
}

/// `x` is a whole multiple of `step` (up to the float error of printing and parsing it).
fn is_multiple(x: f64, step: f64) -> bool {
    let k = x / step;
    (k - k.round()).abs() < 1e-6
}

pub(crate) fn is_lower_hex(s: &str, len: usize) -> bool {
    s.len() == len
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn is_month(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() != 7 || b[4] != b'-' || !b[..4].iter().chain(&b[5..]).all(u8::is_ascii_digit) {
        return false;
    }
    let year: u32 = s[..4].parse().unwrap_or(0);
    let month: u32 = s[5..].parse().unwrap_or(0);
    (2020..=2999).contains(&year) && (1..=12).contains(&month)
}

fn is_major_minor(s: &str) -> bool {
    let Some((major, minor)) = s.split_once('.') else {
        return false;
    };
    let number = |p: &str| {
        !p.is_empty()
            && p.len() <= 4
            && p.bytes().all(|b| b.is_ascii_digit())
            && (p == "0" || !p.starts_with('0'))
    };
    number(major) && number(minor)
}

/// A fresh idempotency key: 128 bits from the OS's random source, lower-case hex.
pub fn new_id() -> Result<String, getrandom::Error> {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b)?;
    Ok(hex::encode(b))
}

/// `POST <cooperative_api>` paths and the token endpoint's wire types.
pub mod api {
    use serde::{Deserialize, Serialize};

    /// Reports: body a [`crate::Report`]; 200 stored, 409 already stored (same id or token, which
    /// the box also takes as delivered), 400 with a one-line reason otherwise.
    pub const REPORTS_PATH: &str = "/api/v1/reports";
    /// The collector's current token key: `GET` → [`ReportKey`].
    pub const REPORT_KEY_PATH: &str = "/api/v1/report-key";
    /// Blind signatures for an enrolled box: `POST` [`TokenRequest`] → [`TokenResponse`].
    pub const REPORT_TOKENS_PATH: &str = "/api/v1/report-tokens";
    /// The most blinded messages one request may carry.
    pub const MAX_BLINDED_PER_REQUEST: usize = 16;

    /// The signature of a token request covers this context, the name, the time, the key and
    /// the blinded messages.
    pub const TOKENS_CONTEXT: &str = "hearth-report-tokens/1";

    /// What the box's Ed25519 key signs: `hearth-report-tokens/1\0name\0at\0key_id` and
    /// `\0blinded` for each blinded message, in order (as the outside-in check's request, with its
    /// own context so one signature is never valid for the other). A signature seen once cannot
    /// carry other messages: whoever sees a request cannot spend the box's allowance.
    pub fn tokens_transcript(name: &str, at: i64, key_id: &str, blinded: &[String]) -> Vec<u8> {
        let mut t = format!("{TOKENS_CONTEXT}\0{name}\0{at}\0{key_id}");
        for b in blinded {
            t.push('\0');
            t.push_str(b);
        }
        t.into_bytes()
    }

    /// The collector's public token key.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct ReportKey {
        /// [`crate::token::key_id`] of the key.
        pub key_id: String,
        /// The public key's SubjectPublicKeyInfo DER, base64url.
        pub public_key: String,
    }

    /// An enrolled box asks for blind signatures. The request names the box (only enrolled boxes
    /// get tokens, and the collector may count how many each asked for); the blinded messages say
    /// nothing about the tokens they become.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct TokenRequest {
        pub name: String,
        /// Unix seconds.
        pub at: i64,
        /// base64url Ed25519 signature of [`tokens_transcript`] by the box's key.
        pub sig: String,
        pub key_id: String,
        /// base64url blinded messages ([`crate::token::BlindRequest::blinded`]).
        pub blinded: Vec<String>,
    }

    /// The blind signatures, in the order of the request's `blinded`.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct TokenResponse {
        pub signatures: Vec<String>,
    }
}

#[cfg(test)]
mod tests;
