//! `report_wire::parse`, the collector's parser of every report body, on arbitrary bytes: no
//! panic, and what it accepts is a report in every sense —
//!
//! - it passes `check()` (and the token's own check), its month has hours, its clamp and
//!   energy are finite and in range, and the body was within the size cap;
//! - serialised again it parses to the same value, and that serialisation is a fixed point
//!   (the box's bytes and the collector's reading of them cannot drift apart);
//! - and what it refuses is refused with one line (the collector answers it as the reason).

#![no_main]

use libfuzzer_sys::fuzz_target;
use report_wire::{parse, Hardware, ParseError, MAX_ABS_KWH, MAX_BYTES, MAX_EPSILON, MIN_EPSILON};

fuzz_target!(|data: &[u8]| {
    match parse(data) {
        Ok(report) => {
            assert!(data.len() <= MAX_BYTES);
            report.check().expect("an accepted report passes check()");
            report.token.check().expect("and its token's formats");
            let hours = report_wire::month_hours(&report.month).expect("a month with hours");
            assert!((672.0..=744.0).contains(&hours));
            for h in Hardware::ALL {
                assert!(h.max_kwh(hours).is_finite());
            }
            assert!(report.energy_kwh.is_finite() && report.energy_kwh.abs() <= MAX_ABS_KWH);
            assert!((MIN_EPSILON..=MAX_EPSILON).contains(&report.epsilon));
            assert!((0.0..=1.0).contains(&report.uptime_share));

            let bytes = serde_json::to_vec(&report).expect("a report serialises");
            assert!(bytes.len() <= MAX_BYTES, "{} bytes", bytes.len());
            let again = parse(&bytes).unwrap_or_else(|e| {
                panic!("re-serialised, refused: {e}: {}", String::from_utf8_lossy(&bytes))
            });
            assert_eq!(again, report);
            assert_eq!(serde_json::to_vec(&again).unwrap(), bytes);
        }
        Err(e) => {
            let line = e.to_string();
            assert!(!line.is_empty());
            assert!(
                !line.contains(|c: char| c.is_control() || c == '\u{2028}' || c == '\u{2029}'),
                "{line:?}"
            );
            if let ParseError::TooLarge { len } = e {
                assert!(len > MAX_BYTES && len == data.len());
            } else {
                assert!(data.len() <= MAX_BYTES);
            }
        }
    }
});
