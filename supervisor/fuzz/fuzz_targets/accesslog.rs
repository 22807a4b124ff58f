//! The access-log parser and the per-minute aggregator on arbitrary input: no panic, and the
//! counters and sums stay consistent.
//!
//! It depends on the crate `hearth-accesslog` alone (pure std), not on the supervisor, whose
//! other dependencies (SQLite, D-Bus, HTTP) would only slow the instrumented build down.

#![no_main]

use libfuzzer_sys::fuzz_target;

use hearth_accesslog::{parse_line, MinuteWeights};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut weights = MinuteWeights::new();
    let mut lines = 0u64;
    for line in text.lines() {
        lines += 1;
        let alone = parse_line(line);
        let fed = weights.ingest_line(line);
        // A fresh parser and the aggregator's (with its date cache) agree.
        assert_eq!(alone.as_ref().err(), fed.as_ref().err(), "{line:?}");
        if let Ok(r) = alone {
            assert!(!format!("{r:?}").is_empty());
            assert_eq!(r.minute_s() % 60, 0);
        }
    }
    let _ = weights.ingest_journal(&text, u64::from(data.len() as u32) << 20);
    let counts = weights.counts().clone();
    assert_eq!(counts.lines, lines + 1);
    assert_eq!(counts.access + counts.skipped_total(), counts.lines);
    let mut requests = 0;
    for m in weights.drain_all() {
        // Saturating sums of non-negative figures are min(sum, MAX): parts and total agree.
        let parts: u128 = m
            .by_requester
            .iter()
            .map(|(_, w)| u128::from(*w))
            .sum::<u128>()
            + u128::from(m.unauthenticated_ms);
        assert_eq!(u128::from(m.total_ms), parts.min(u128::from(u64::MAX)));
        requests += m.requests;
    }
    assert_eq!(requests, counts.access);
    assert!(weights.is_empty());
});
