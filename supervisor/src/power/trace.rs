//! Trace CSV files (`t_s,volts,amps`), PRODUCT.md §4.
//!
//! A trace is a step function: each row's volts and amps hold from its `t_s` until the next row's;
//! the last row only marks the end, so the trace lasts exactly the last `t_s`. Its true energy is
//! the exact integral of `volts × amps` over that step function.
//!
//! The parser accepts a UTF-8 BOM, CRLF line ends, whitespace around fields, blank lines and lines
//! starting with `#`. Everything else that is not a valid trace is rejected with a one-line error
//! naming the file, the line and the field; nothing is silently skipped or defaulted.
//!
//! [`Trace`] implements [`GroundTruth`] here (it needs the prefix integrals, which stay private):
//! window means are `O(log n)` by binary search over the rows, `O(1)` for windows that move
//! forward through the trace, as the simulator's do.

use super::truth::GroundTruth;
use std::fmt;
use std::path::Path;

/// The exact header line (after trimming whitespace around each name).
pub const HEADER: [&str; 3] = ["t_s", "volts", "amps"];

/// A parsed, validated trace with prefix integrals for exact window means.
#[derive(Debug, Clone)]
pub struct Trace {
    name: String,
    /// Row start times in seconds: `t[0] == 0`, strictly increasing, at least two rows.
    t: Vec<f64>,
    volts: Vec<f64>,
    amps: Vec<f64>,
    /// `∫₀^{t[i]} volts dt` in V·s, `∫ amps dt` in A·s and `∫ volts·amps dt` in J, each with
    /// `prefix[0] == 0`. Summed with Neumaier compensation so every entry is the correctly rounded
    /// value of the exact sum, whatever the number of rows.
    prefix_volts: Vec<f64>,
    prefix_amps: Vec<f64>,
    prefix_joules: Vec<f64>,
    /// The segment of the last lookup: the simulator's windows move forward, so the next lookup
    /// is almost always this segment or the next one.
    cursor: usize,
}

/// Why a trace could not be read. `Display` is one line: `<file>:<line>: <problem>`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TraceError {
    #[error("{file}: cannot read: {detail}")]
    Read { file: String, detail: String },
    #[error("{file}:{line}: {problem}")]
    Invalid {
        file: String,
        /// 1-based physical line number.
        line: usize,
        problem: TraceProblem,
    },
}

/// What is wrong at a given line. Values are quoted as written in the file.
#[derive(Debug, Clone, PartialEq)]
pub enum TraceProblem {
    NotUtf8,
    /// No header before the end of the file.
    MissingHeader,
    /// The first line is a data row, not a header.
    HeaderIsData {
        found: String,
    },
    HeaderMissingColumn {
        column: &'static str,
    },
    HeaderExtraColumn {
        found: String,
    },
    HeaderWrongName {
        index: usize,
        found: String,
        expected: &'static str,
    },
    FieldCount {
        found: usize,
    },
    NotANumber {
        field: &'static str,
        text: String,
    },
    NotFinite {
        field: &'static str,
        text: String,
    },
    NegativeTime {
        text: String,
    },
    NegativeVolts {
        text: String,
    },
    NegativeAmps {
        text: String,
    },
    FirstTimeNotZero {
        text: String,
    },
    NotIncreasing {
        text: String,
        previous: String,
        previous_line: usize,
    },
    TooFewRows {
        rows: usize,
    },
}

impl fmt::Display for TraceProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let expected = HEADER.join(",");
        match self {
            Self::NotUtf8 => write!(f, "not valid UTF-8 text"),
            Self::MissingHeader => {
                write!(f, "header: missing (end of file); expected `{expected}`")
            }
            Self::HeaderIsData { found } => write!(
                f,
                "header: missing; expected `{expected}`, found the data row {:?}",
                shown(found)
            ),
            Self::HeaderMissingColumn { column } => write!(
                f,
                "header: missing column `{column}`; expected `{expected}`"
            ),
            Self::HeaderExtraColumn { found } => write!(
                f,
                "header: extra column `{}`; expected `{expected}`",
                shown(found)
            ),
            Self::HeaderWrongName {
                index,
                found,
                expected: name,
            } => write!(
                f,
                "header: column {index} is `{}`, expected `{name}` (header `{expected}`)",
                shown(found)
            ),
            Self::FieldCount { found } => {
                write!(f, "expected 3 fields `{expected}`, found {found}")
            }
            Self::NotANumber { field, text } => {
                write!(f, "field `{field}`: not a number: {:?}", shown(text))
            }
            Self::NotFinite { field, text } => {
                write!(f, "field `{field}`: not a finite number: {:?}", shown(text))
            }
            Self::NegativeTime { text } => {
                write!(
                    f,
                    "field `t_s`: negative: {:?}; time starts at 0",
                    shown(text)
                )
            }
            Self::NegativeVolts { text } => write!(
                f,
                "field `volts`: negative: {:?}; the bus voltage cannot be below 0 V",
                shown(text)
            ),
            Self::NegativeAmps { text } => write!(
                f,
                "field `amps`: negative: {:?}; the appliance only consumes power, \
                 so its current cannot be negative",
                shown(text)
            ),
            Self::FirstTimeNotZero { text } => write!(
                f,
                "field `t_s`: the first row must start at 0, found {:?}",
                shown(text)
            ),
            Self::NotIncreasing {
                text,
                previous,
                previous_line,
            } => write!(
                f,
                "field `t_s`: not strictly increasing: {:?} follows {:?} on line {previous_line}",
                shown(text),
                shown(previous)
            ),
            Self::TooFewRows { rows } => write!(
                f,
                "{rows} data row{}; a trace needs at least 2 (the last row only marks its end)",
                if *rows == 1 { "" } else { "s" }
            ),
        }
    }
}

/// Quote at most 40 characters of user text, so a garbage line keeps the message short.
fn shown(s: &str) -> String {
    const MAX: usize = 40;
    if s.chars().count() <= MAX {
        s.to_owned()
    } else {
        let mut out: String = s.chars().take(MAX).collect();
        out.push('…');
        out
    }
}

/// Accumulates a running sum with Neumaier's compensation (exact to the final rounding).
#[derive(Default)]
struct CompensatedSum {
    sum: f64,
    carry: f64,
}

impl CompensatedSum {
    fn add(&mut self, x: f64) {
        let t = self.sum + x;
        if self.sum.abs() >= x.abs() {
            self.carry += (self.sum - t) + x;
        } else {
            self.carry += (x - t) + self.sum;
        }
        self.sum = t;
    }
    fn value(&self) -> f64 {
        self.sum + self.carry
    }
}

impl Trace {
    /// Read and validate a trace file; errors name `path` as given.
    pub fn from_path(path: &Path) -> Result<Trace, TraceError> {
        let file = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|e| TraceError::Read {
            file: file.clone(),
            detail: e.to_string(),
        })?;
        match String::from_utf8(bytes) {
            Ok(text) => Self::parse(&file, &text),
            Err(e) => {
                let valid = e.utf8_error().valid_up_to();
                let line = 1 + e.as_bytes()[..valid]
                    .iter()
                    .filter(|&&b| b == b'\n')
                    .count();
                Err(TraceError::Invalid {
                    file,
                    line,
                    problem: TraceProblem::NotUtf8,
                })
            }
        }
    }

    /// Parse trace text; `name` (usually the file path) is used in errors.
    pub fn parse(name: &str, text: &str) -> Result<Trace, TraceError> {
        let err = |line: usize, problem: TraceProblem| TraceError::Invalid {
            file: name.to_owned(),
            line,
            problem,
        };
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut lines = text
            .split('\n')
            .enumerate()
            .map(|(i, l)| (i + 1, l.strip_suffix('\r').unwrap_or(l).trim()))
            .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'));
        // Where the header or a row would have been had the file not ended.
        let end_line = || text.lines().count() + 1;

        let (header_line, header) = lines
            .next()
            .ok_or_else(|| err(end_line(), TraceProblem::MissingHeader))?;
        check_header(header).map_err(|p| err(header_line, p))?;

        let mut trace = Trace {
            name: name.to_owned(),
            t: Vec::new(),
            volts: Vec::new(),
            amps: Vec::new(),
            prefix_volts: Vec::new(),
            prefix_amps: Vec::new(),
            prefix_joules: Vec::new(),
            cursor: 0,
        };
        // The previous row's t_s as written, and its line, for the ordering message.
        let mut previous: Option<(&str, usize)> = None;
        let mut last_line = None;
        for (line_no, line) in lines {
            let mut fields = line.split(',').map(str::trim);
            let (Some(t_text), Some(v_text), Some(a_text), None) =
                (fields.next(), fields.next(), fields.next(), fields.next())
            else {
                return Err(err(
                    line_no,
                    TraceProblem::FieldCount {
                        found: line.split(',').count(),
                    },
                ));
            };
            let t = number("t_s", t_text).map_err(|p| err(line_no, p))?;
            if t < 0.0 {
                return Err(err(
                    line_no,
                    TraceProblem::NegativeTime {
                        text: t_text.to_owned(),
                    },
                ));
            }
            match (previous, trace.t.last()) {
                (Some((prev_text, prev_line)), Some(&prev)) if t <= prev => {
                    return Err(err(
                        line_no,
                        TraceProblem::NotIncreasing {
                            text: t_text.to_owned(),
                            previous: prev_text.to_owned(),
                            previous_line: prev_line,
                        },
                    ));
                }
                (None, _) if t != 0.0 => {
                    return Err(err(
                        line_no,
                        TraceProblem::FirstTimeNotZero {
                            text: t_text.to_owned(),
                        },
                    ));
                }
                _ => {}
            }
            let v = number("volts", v_text).map_err(|p| err(line_no, p))?;
            if v < 0.0 {
                return Err(err(
                    line_no,
                    TraceProblem::NegativeVolts {
                        text: v_text.to_owned(),
                    },
                ));
            }
            let a = number("amps", a_text).map_err(|p| err(line_no, p))?;
            if a < 0.0 {
                return Err(err(
                    line_no,
                    TraceProblem::NegativeAmps {
                        text: a_text.to_owned(),
                    },
                ));
            }
            trace.t.push(t);
            trace.volts.push(v);
            trace.amps.push(a);
            previous = Some((t_text, line_no));
            last_line = Some(line_no);
        }
        if trace.t.len() < 2 {
            return Err(err(
                last_line.unwrap_or_else(end_line),
                TraceProblem::TooFewRows {
                    rows: trace.t.len(),
                },
            ));
        }
        trace.build_prefixes();
        Ok(trace)
    }

    fn build_prefixes(&mut self) {
        let n = self.t.len();
        let (mut pv, mut pa, mut pe) = (
            CompensatedSum::default(),
            CompensatedSum::default(),
            CompensatedSum::default(),
        );
        self.prefix_volts = Vec::with_capacity(n);
        self.prefix_amps = Vec::with_capacity(n);
        self.prefix_joules = Vec::with_capacity(n);
        self.prefix_volts.push(0.0);
        self.prefix_amps.push(0.0);
        self.prefix_joules.push(0.0);
        for i in 0..n - 1 {
            let dt = self.t[i + 1] - self.t[i];
            pv.add(self.volts[i] * dt);
            pa.add(self.amps[i] * dt);
            pe.add(self.volts[i] * self.amps[i] * dt);
            self.prefix_volts.push(pv.value());
            self.prefix_amps.push(pa.value());
            self.prefix_joules.push(pe.value());
        }
    }

    /// The name given to [`Trace::parse`] (the path for [`Trace::from_path`]).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The last row's `t_s`: the trace covers `[0, duration_s]`.
    pub fn duration_s(&self) -> f64 {
        self.t.last().copied().unwrap_or(0.0)
    }

    /// The exact integral of `volts × amps` over the whole trace, in Wh.
    pub fn true_energy_wh(&self) -> f64 {
        self.prefix_joules.last().copied().unwrap_or(0.0) / 3600.0
    }

    /// The exact energy in `[t0, t1]` clipped to the trace's span `[0, duration_s]`, in Wh
    /// (zero for an empty or reversed interval). A trace has no energy outside its span.
    pub fn energy_wh_between(&self, t0: f64, t1: f64) -> f64 {
        let (a, b) = (t0.max(0.0), t1.min(self.duration_s()));
        if b > a {
            let mut hint = 0;
            self.integral(Column::Joules, a, b, &mut hint) / 3600.0
        } else {
            0.0
        }
    }

    /// Number of data rows, including the final one that marks the end.
    pub fn rows(&self) -> usize {
        self.t.len()
    }

    /// Mean voltage over `[t0, t1)`, with the first row's values extended before 0 and the last
    /// row's after the end (as [`GroundTruth`] specifies). For `t1 <= t0`, the value at `t0`.
    pub fn mean_volts_between(&self, t0: f64, t1: f64) -> f64 {
        let mut hint = 0;
        self.mean(Column::Volts, t0, t1, &mut hint)
    }

    /// Mean current over `[t0, t1)`; see [`Trace::mean_volts_between`].
    pub fn mean_amps_between(&self, t0: f64, t1: f64) -> f64 {
        let mut hint = 0;
        self.mean(Column::Amps, t0, t1, &mut hint)
    }

    fn mean(&self, col: Column, t0: f64, t1: f64, hint: &mut usize) -> f64 {
        if t1 > t0 {
            self.integral(col, t0, t1, hint) / (t1 - t0)
        } else {
            let k = self.segment(t0, hint);
            self.value(col, k)
        }
    }

    fn value(&self, col: Column, k: usize) -> f64 {
        match col {
            Column::Volts => self.volts[k],
            Column::Amps => self.amps[k],
            Column::Joules => self.volts[k] * self.amps[k],
        }
    }

    fn prefix(&self, col: Column, k: usize) -> f64 {
        match col {
            Column::Volts => self.prefix_volts[k],
            Column::Amps => self.prefix_amps[k],
            Column::Joules => self.prefix_joules[k],
        }
    }

    /// `∫_{t0}^{t1}` of a column, `t0 < t1`, over the step function extended at both ends.
    ///
    /// The partial segments at either end are computed directly and only whole segments in
    /// between come from the prefix difference, so a short window deep in a long trace does
    /// not lose digits to cancellation.
    fn integral(&self, col: Column, t0: f64, t1: f64, hint: &mut usize) -> f64 {
        let k0 = self.segment(t0, hint);
        let k1 = self.segment(t1, hint);
        if k0 == k1 {
            return self.value(col, k0) * (t1 - t0);
        }
        let head = self.value(col, k0) * (self.t[k0 + 1] - t0);
        let middle = self.prefix(col, k1) - self.prefix(col, k0 + 1);
        let tail = self.value(col, k1) * (t1 - self.t[k1]);
        head + middle + tail
    }

    /// The row whose value holds at `x`: `t[k] <= x < t[k+1]`, with 0 before the start and the
    /// last row from the end on. Tries `hint` and the row after it first, then bisects.
    fn segment(&self, x: f64, hint: &mut usize) -> usize {
        let n = self.t.len();
        let holds = |k: usize| self.t[k] <= x && (k + 1 == n || x < self.t[k + 1]);
        let k = if *hint < n && holds(*hint) {
            *hint
        } else if *hint + 1 < n && holds(*hint + 1) {
            *hint + 1
        } else {
            // Number of rows starting at or before x, minus one; 0 for x < 0 (or NaN).
            self.t.partition_point(|&t| t <= x).saturating_sub(1)
        };
        *hint = k;
        k
    }
}

#[derive(Debug, Clone, Copy)]
enum Column {
    Volts,
    Amps,
    Joules,
}

fn check_header(line: &str) -> Result<(), TraceProblem> {
    let names: Vec<&str> = line.split(',').map(str::trim).collect();
    if names.first().is_some_and(|n| n.parse::<f64>().is_ok()) {
        return Err(TraceProblem::HeaderIsData {
            found: line.to_owned(),
        });
    }
    if names.len() < HEADER.len() {
        if let Some(column) = HEADER.iter().find(|h| !names.contains(h)) {
            return Err(TraceProblem::HeaderMissingColumn { column });
        }
    }
    if names.len() > HEADER.len() {
        // The first name that is not expected, or the first repeat of an expected one.
        let extra = names
            .iter()
            .enumerate()
            .find(|&(i, n)| !HEADER.contains(n) || names[..i].contains(n))
            .map_or(names[HEADER.len()], |(_, n)| n);
        return Err(TraceProblem::HeaderExtraColumn {
            found: extra.to_owned(),
        });
    }
    for (i, (found, expected)) in names.iter().zip(HEADER).enumerate() {
        if *found != expected {
            return Err(TraceProblem::HeaderWrongName {
                index: i + 1,
                found: (*found).to_owned(),
                expected,
            });
        }
    }
    Ok(())
}

fn number(field: &'static str, text: &str) -> Result<f64, TraceProblem> {
    let value: f64 = text.parse().map_err(|_| TraceProblem::NotANumber {
        field,
        text: text.to_owned(),
    })?;
    if value.is_finite() {
        Ok(value)
    } else {
        Err(TraceProblem::NotFinite {
            field,
            text: text.to_owned(),
        })
    }
}

impl GroundTruth for Trace {
    fn mean_volts(&mut self, t0: f64, t1: f64) -> f64 {
        let mut hint = self.cursor;
        let v = self.mean(Column::Volts, t0, t1, &mut hint);
        self.cursor = hint;
        v
    }

    fn mean_amps(&mut self, t0: f64, t1: f64) -> f64 {
        let mut hint = self.cursor;
        let a = self.mean(Column::Amps, t0, t1, &mut hint);
        self.cursor = hint;
        a
    }

    fn end(&self) -> Option<f64> {
        Some(self.duration_s())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::path::PathBuf;

    /// 0–4 s 2.5 W, 4–6 s 5 W, 6–8 s 6 W, 8–10 s 2 W: 36 J = 0.01 Wh. The last row's values
    /// (5.1 V, 0.6 A) hold for zero time, but past the end for `GroundTruth`.
    const TINY: &str = "t_s,volts,amps\n0,5.0,0.5\n4,5.0,1.0\n6,4.8,1.25\n8,5.0,0.4\n10,5.1,0.6\n";

    fn traces_dir() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("testdata/traces")
    }

    fn parse(text: &str) -> Trace {
        match Trace::parse("t.csv", text) {
            Ok(t) => t,
            Err(e) => panic!("{e}"),
        }
    }

    fn close(a: f64, b: f64, rel: f64) -> bool {
        (a - b).abs() <= rel * a.abs().max(b.abs()).max(1e-300)
    }

    #[test]
    fn parses_the_happy_path() {
        let t = parse(TINY);
        assert_eq!(t.rows(), 5);
        assert_eq!(t.duration_s(), 10.0);
        assert_eq!(t.name(), "t.csv");
        assert!(close(t.true_energy_wh(), 0.01, 1e-15));
    }

    #[test]
    fn tolerates_bom_crlf_whitespace_comments_and_blank_lines() {
        let text = "\u{feff}# made by hand\r\n  t_s , volts,amps  \r\n\r\n0, 5.0 ,0.5\r\n# a comment\n   \n4,5.0,1.0\n6,4.8,1.25\n8,5.0,0.4\n10,5.1,0.6";
        let t = parse(text);
        assert_eq!(t.rows(), 5);
        assert!(close(t.true_energy_wh(), 0.01, 1e-15));
    }

    #[test]
    fn shipped_tiny_trace_has_the_hand_computed_energy() {
        let t = match Trace::from_path(&traces_dir().join("tiny.csv")) {
            Ok(t) => t,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(t.rows(), 5);
        assert_eq!(t.duration_s(), 10.0);
        // 2.5 W·4 s + 5 W·2 s + 6 W·2 s + 2 W·2 s = 36 J.
        assert!(close(t.true_energy_wh() * 3600.0, 36.0, 1e-14));
        assert!(close(
            t.energy_wh_between(3.0, 7.0) * 3600.0,
            2.5 + 10.0 + 6.0,
            1e-14
        ));
        assert!(close(t.energy_wh_between(-5.0, 50.0) * 3600.0, 36.0, 1e-14));
        assert_eq!(t.energy_wh_between(7.0, 7.0), 0.0);
        assert_eq!(t.energy_wh_between(8.0, 3.0), 0.0);
        assert_eq!(t.energy_wh_between(10.0, 20.0), 0.0);
    }

    /// The true energies the generator computed in exact rational arithmetic (README.md).
    #[test]
    fn shipped_traces_match_the_generators_exact_energies() {
        let expected = [
            ("bursty_hour.csv", 3600.0, 3.098_500_878_207_f64),
            ("square_near_fs.csv", 600.0, 0.758_316_805_404),
            ("square_droop.csv", 600.0, 0.758_320_581_281),
            ("steps_10min.csv", 600.0, 0.868_743_213_955),
            ("tiny.csv", 10.0, 0.01),
        ];
        for (file, duration, wh) in expected {
            let t = match Trace::from_path(&traces_dir().join(file)) {
                Ok(t) => t,
                Err(e) => panic!("{e}"),
            };
            assert_eq!(t.duration_s(), duration, "{file}");
            assert!(
                close(t.true_energy_wh(), wh, 1e-11),
                "{file}: {} vs {wh}",
                t.true_energy_wh()
            );
        }
    }

    fn check_err(text: &str, expected: &str) {
        match Trace::parse("t.csv", text) {
            Ok(_) => panic!("accepted: {text:?}"),
            Err(e) => {
                let shown = e.to_string();
                assert_eq!(shown, expected, "for {text:?}");
                assert!(!shown.contains('\n'));
            }
        }
    }

    #[test]
    fn every_error_is_one_line_naming_file_line_and_field() {
        let h = "t_s,volts,amps\n";
        check_err(
            "",
            "t.csv:1: header: missing (end of file); expected `t_s,volts,amps`",
        );
        check_err(
            "# only a comment\n\n",
            "t.csv:3: header: missing (end of file); expected `t_s,volts,amps`",
        );
        check_err(
            "0,5,1\n1,5,1\n",
            "t.csv:1: header: missing; expected `t_s,volts,amps`, found the data row \"0,5,1\"",
        );
        check_err(
            "t_s,volts\n0,5\n",
            "t.csv:1: header: missing column `amps`; expected `t_s,volts,amps`",
        );
        check_err(
            "t_s,amps\n",
            "t.csv:1: header: missing column `volts`; expected `t_s,volts,amps`",
        );
        check_err(
            "t_s,volts,amps,watts\n",
            "t.csv:1: header: extra column `watts`; expected `t_s,volts,amps`",
        );
        check_err(
            "t_s,volts,amps,volts\n",
            "t.csv:1: header: extra column `volts`; expected `t_s,volts,amps`",
        );
        check_err(
            "t_s,volt,amps\n",
            "t.csv:1: header: column 2 is `volt`, expected `volts` (header `t_s,volts,amps`)",
        );
        check_err(
            "time,volts,amps\n",
            "t.csv:1: header: column 1 is `time`, expected `t_s` (header `t_s,volts,amps`)",
        );
        check_err(
            &format!("{h}0,5,1\n1,5\n"),
            "t.csv:3: expected 3 fields `t_s,volts,amps`, found 2",
        );
        check_err(
            &format!("{h}0,5,1\n1,5,1,\n"),
            "t.csv:3: expected 3 fields `t_s,volts,amps`, found 4",
        );
        check_err(
            &format!("{h}0,5,1\n1,abc,1\n"),
            "t.csv:3: field `volts`: not a number: \"abc\"",
        );
        check_err(
            &format!("{h}0,5,1\n1,5,\n"),
            "t.csv:3: field `amps`: not a number: \"\"",
        );
        check_err(
            &format!("{h}x,5,1\n"),
            "t.csv:2: field `t_s`: not a number: \"x\"",
        );
        check_err(
            &format!("{h}0,5,1\n1,NaN,1\n"),
            "t.csv:3: field `volts`: not a finite number: \"NaN\"",
        );
        check_err(
            &format!("{h}0,5,inf\n"),
            "t.csv:2: field `amps`: not a finite number: \"inf\"",
        );
        check_err(
            &format!("{h}0,5,1e999\n"),
            "t.csv:2: field `amps`: not a finite number: \"1e999\"",
        );
        check_err(
            &format!("{h}0,-5.0,1\n"),
            "t.csv:2: field `volts`: negative: \"-5.0\"; the bus voltage cannot be below 0 V",
        );
        check_err(
            &format!("{h}0,5,-0.1\n"),
            "t.csv:2: field `amps`: negative: \"-0.1\"; the appliance only consumes power, \
             so its current cannot be negative",
        );
        check_err(
            &format!("{h}-1,5,1\n"),
            "t.csv:2: field `t_s`: negative: \"-1\"; time starts at 0",
        );
        check_err(
            &format!("{h}0,5,1\n1,5,1\n-1,5,1\n"),
            "t.csv:4: field `t_s`: negative: \"-1\"; time starts at 0",
        );
        check_err(
            &format!("{h}0.5,5,1\n1,5,1\n"),
            "t.csv:2: field `t_s`: the first row must start at 0, found \"0.5\"",
        );
        check_err(
            &format!("{h}0,5,1\n\n2.000,5,1\n2,5,1\n"),
            "t.csv:5: field `t_s`: not strictly increasing: \"2\" follows \"2.000\" on line 4",
        );
        check_err(
            &format!("{h}0,5,1\n3,5,1\n# c\n1,5,1\n"),
            "t.csv:5: field `t_s`: not strictly increasing: \"1\" follows \"3\" on line 3",
        );
        check_err(
            &format!("{h}0,5,1\n"),
            "t.csv:2: 1 data row; a trace needs at least 2 (the last row only marks its end)",
        );
        check_err(
            h,
            "t.csv:2: 0 data rows; a trace needs at least 2 (the last row only marks its end)",
        );
    }

    #[test]
    fn long_garbage_is_cut_short() {
        check_err(
            &format!("{}t_s,volts,amps\n0,5,1\n1,5,{}\n", "", "z".repeat(100)),
            &format!(
                "t.csv:3: field `amps`: not a number: \"{}…\"",
                "z".repeat(40)
            ),
        );
    }

    #[test]
    fn unreadable_and_non_utf8_files_are_named() {
        let dir = match tempfile::tempdir() {
            Ok(d) => d,
            Err(e) => panic!("{e}"),
        };
        let missing = dir.path().join("nope.csv");
        match Trace::from_path(&missing) {
            Err(TraceError::Read { file, detail }) => {
                assert_eq!(file, missing.display().to_string());
                assert!(detail.contains("No such file"), "{detail}");
            }
            other => panic!("{other:?}"),
        }
        let latin1 = dir.path().join("latin1.csv");
        if let Err(e) = std::fs::write(&latin1, b"t_s,volts,amps\n0,5,1\n# M\xfcller\n1,5,1\n") {
            panic!("{e}");
        }
        let e = Trace::from_path(&latin1).err().map(|e| e.to_string());
        assert_eq!(
            e.as_deref(),
            Some(format!("{}:3: not valid UTF-8 text", latin1.display()).as_str())
        );
    }

    #[test]
    fn shipped_bad_traces_are_rejected_with_the_right_line() {
        let bad = traces_dir().join("bad");
        let cases = [
            (
                "non_increasing.csv",
                ":5: field `t_s`: not strictly increasing: \"2.000\" follows \"2.000\" on line 4",
            ),
            ("nan.csv", ":4: field `volts`: not a finite number: \"NaN\""),
            (
                "negative_volts.csv",
                ":3: field `volts`: negative: \"-5.0000\"; the bus voltage cannot be below 0 V",
            ),
            (
                "negative_amps.csv",
                ":4: field `amps`: negative: \"-0.10000\"; the appliance only consumes power, \
                 so its current cannot be negative",
            ),
            (
                "missing_column.csv",
                ":1: header: missing column `amps`; expected `t_s,volts,amps`",
            ),
            (
                "garbage_row.csv",
                ":4: expected 3 fields `t_s,volts,amps`, found 1",
            ),
            (
                "first_not_zero.csv",
                ":2: field `t_s`: the first row must start at 0, found \"1.000\"",
            ),
            (
                "one_row.csv",
                ":2: 1 data row; a trace needs at least 2 (the last row only marks its end)",
            ),
        ];
        for (file, suffix) in cases {
            let path = bad.join(file);
            match Trace::from_path(&path) {
                Ok(_) => panic!("{file} accepted"),
                Err(e) => assert_eq!(e.to_string(), format!("{}{suffix}", path.display())),
            }
        }
    }

    #[test]
    fn window_means_cross_rows_and_extend_past_both_ends() {
        let mut t = parse(TINY);
        // Inside one row.
        assert!(close(t.mean_volts(0.5, 1.5), 5.0, 1e-15));
        assert!(close(t.mean_amps(0.5, 1.5), 0.5, 1e-15));
        // Across three rows: 3–8 s: amps 1 s·0.5 + 2 s·1.0 + 2 s·1.25 = 5 A·s over 5 s.
        assert!(close(t.mean_amps(3.0, 8.0), 1.0, 1e-15));
        assert!(close(
            t.mean_volts(3.0, 8.0),
            (3.0 * 5.0 + 2.0 * 4.8) / 5.0,
            1e-15
        ));
        // Before 0: the first row holds.
        assert!(close(t.mean_amps(-3.0, -1.0), 0.5, 1e-15));
        assert!(close(t.mean_amps(-4.0, 4.0), 0.5, 1e-15));
        assert!(close(
            t.mean_amps(-2.0, 6.0),
            (6.0 * 0.5 + 2.0 * 1.0) / 8.0,
            1e-15
        ));
        // Past the end: the last row holds.
        assert!(close(t.mean_volts(10.0, 12.0), 5.1, 1e-15));
        assert!(close(t.mean_amps(20.0, 30.0), 0.6, 1e-15));
        assert!(close(t.mean_amps(9.0, 11.0), (0.4 + 0.6) / 2.0, 1e-15));
        // Whole trace and beyond, in both directions.
        assert!(close(
            t.mean_amps(-1.0, 11.0),
            (0.5 + 4.0 * 0.5 + 2.0 + 2.5 + 0.8 + 0.6) / 12.0,
            1e-15
        ));
        // Degenerate windows give the value at t0 rather than NaN.
        assert_eq!(t.mean_amps(5.0, 5.0), 1.0);
        assert_eq!(t.end(), Some(10.0));
        // The &self versions agree with the cursor versions.
        assert_eq!(t.mean_amps_between(3.0, 8.0), t.mean_amps(3.0, 8.0));
        assert_eq!(t.mean_volts_between(-2.0, 11.0), t.mean_volts(-2.0, 11.0));
    }

    #[test]
    fn forward_cursor_and_random_access_agree() {
        let mut text = String::from("t_s,volts,amps\n");
        for i in 0..2000 {
            text.push_str(&format!(
                "{}.{:03},5.{:04},{}.{:05}\n",
                i / 100,
                i % 100 * 10,
                i % 7919,
                i % 2,
                (i * 37) % 100_000
            ));
        }
        let mut t = parse(&text);
        let fresh = t.clone();
        let mut x = -0.5;
        while x < 21.0 {
            let (a, b) = (
                t.mean_amps(x, x + 0.068),
                fresh.mean_amps_between(x, x + 0.068),
            );
            assert_eq!(a, b, "at {x}");
            x += 0.0687;
        }
    }

    /// Rows as a CSV text: `(dt, volts, amps)` per row, the first `dt` ignored.
    fn trace_text(rows: &[(f64, f64, f64)]) -> String {
        let mut s = String::from("t_s,volts,amps\n");
        let mut t = 0.0;
        for (i, (dt, v, a)) in rows.iter().enumerate() {
            if i > 0 {
                t += dt;
            }
            s.push_str(&format!("{t},{v},{a}\n"));
        }
        s
    }

    proptest! {
        #[test]
        fn window_integrals_are_additive(
            rows in prop::collection::vec((0.001f64..50.0, 0.0f64..6.0, 0.0f64..3.0), 2..60),
            cuts in prop::collection::vec(-100.0f64..2000.0, 3),
        ) {
            let mut t = parse(&trace_text(&rows));
            let mut c = cuts.clone();
            c.sort_by(f64::total_cmp);
            let (a, b, cc) = (c[0], c[1], c[2]);
            prop_assume!(b > a && cc > b);
            for volts in [true, false] {
                let mut mean = |x: f64, y: f64| if volts { t.mean_volts(x, y) } else { t.mean_amps(x, y) };
                let lhs = mean(a, b) * (b - a) + mean(b, cc) * (cc - b);
                let rhs = mean(a, cc) * (cc - a);
                prop_assert!(close(lhs, rhs, 1e-9), "{lhs} vs {rhs}");
            }
            let fresh = parse(&trace_text(&rows));
            let e = fresh.energy_wh_between(a, b) + fresh.energy_wh_between(b, cc);
            prop_assert!(close(e, fresh.energy_wh_between(a, cc), 1e-9));
        }

        #[test]
        fn whole_trace_energy_is_the_row_sum(
            rows in prop::collection::vec((0.001f64..50.0, 0.0f64..6.0, 0.0f64..3.0), 2..60),
        ) {
            let t = parse(&trace_text(&rows));
            let mut joules = 0.0;
            for w in rows.windows(2) {
                joules += w[0].1 * w[0].2 * w[1].0;
            }
            prop_assert!(close(t.true_energy_wh() * 3600.0, joules, 1e-9));
            prop_assert!(close(t.energy_wh_between(0.0, t.duration_s()), t.true_energy_wh(), 1e-12));
        }
    }
}
