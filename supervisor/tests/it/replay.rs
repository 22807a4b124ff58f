//! One trace through every averaging mode, sampling rate and gap pattern: the same energy within
//! tolerance (the way ripgrep's SearcherTester runs one input through every code path).

use hearth::config::{Adc, Config};
use hearth::power::ina219::sim::BusFault;
use hearth::power::trace::Trace;
use hearth::replay::{replay, replay_with, ReplayReport};
use std::time::Duration;

/// A minute of a Pi's life: 2.7 W idle, bursts of 50–800 ms to 4–7 W, a slow step, supply droop.
/// Deterministic (a small LCG), built here so the test does not depend on a shipped file.
fn minute_trace() -> Trace {
    let mut seed: u64 = 0x5eed;
    let mut rnd = move || {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (seed >> 11) as f64 / (1u64 << 53) as f64
    };
    let volts_for = |p: f64| {
        // V = Vs − R·I with P = V·I → I = (Vs − sqrt(Vs² − 4RP)) / 2R
        let (vs, r) = (5.1f64, 0.15f64);
        let i = (vs - (vs * vs - 4.0 * r * p).sqrt()) / (2.0 * r);
        (vs - r * i, i)
    };
    let mut csv = String::from("t_s,volts,amps\n");
    let mut t = 0.0f64;
    while t < 60.0 {
        let idle = if t < 30.0 { 2.7 } else { 3.1 };
        let (v, i) = volts_for(idle);
        csv += &format!("{t:.3},{v:.5},{i:.5}\n");
        t += 0.2 + rnd() * 2.0;
        if t >= 60.0 {
            break;
        }
        let (v, i) = volts_for(4.0 + rnd() * 3.0);
        csv += &format!("{t:.3},{v:.5},{i:.5}\n");
        t += 0.05 + rnd() * 0.75;
    }
    let (v, i) = volts_for(2.7);
    csv += &format!("60.000,{v:.5},{i:.5}\n");
    Trace::parse("minute", &csv).expect("a valid trace")
}

fn config(shunt: Adc, bus: Adc) -> Config {
    let mut c = Config::defaults();
    c.power.ina219.shunt_adc = shunt;
    c.power.ina219.bus_adc = bus;
    c
}

fn rel_err(r: &ReplayReport, truth: f64) -> f64 {
    (r.energy_wh - truth).abs() / truth
}

const ALL_ADC: [Adc; 11] = [
    Adc::Bits9,
    Adc::Bits10,
    Adc::Bits11,
    Adc::Bits12,
    Adc::Avg(2),
    Adc::Avg(4),
    Adc::Avg(8),
    Adc::Avg(16),
    Adc::Avg(32),
    Adc::Avg(64),
    Adc::Avg(128),
];

#[test]
fn every_averaging_mode_meters_the_same_energy() {
    let truth = minute_trace().true_energy_wh();
    for shunt in ALL_ADC {
        for bus in [Adc::Bits12, Adc::Bits9, Adc::Avg(8)] {
            let r = replay(minute_trace(), &config(shunt, bus)).unwrap();
            let err = rel_err(&r, truth);
            // Short shunt windows see only a fraction of the time, so bursts alias; the averaged
            // windows see nearly all of it. The bound tightens as the shunt window covers more.
            let bound = match shunt {
                Adc::Avg(n) if n >= 32 => 0.002,
                Adc::Avg(_) => 0.01,
                _ => 0.05,
            };
            assert!(
                err < bound,
                "shunt {shunt:?} bus {bus:?}: error {:.4} % (bound {} %)",
                err * 100.0,
                bound * 100.0
            );
            assert_eq!(r.gap_s, 0.0);
            assert_eq!(r.duration_s, 60.0);
            assert!(r.peak_w > 3.9 && r.peak_w < 7.2, "peak {}", r.peak_w);
        }
    }
}

#[test]
fn the_default_mode_reads_every_conversion() {
    let r = replay(minute_trace(), &Config::defaults()).unwrap();
    // 60 s / 68.632 ms = 874.2 conversion cycles: every one read, none missed.
    assert_eq!(r.samples, 874);
    assert!(rel_err(&r, minute_trace().true_energy_wh()) < 0.001);
}

/// `(from, to, fault)` in virtual time.
type Schedule = Vec<(Duration, Duration, BusFault)>;

#[test]
fn every_gap_pattern_is_estimated_and_counted() {
    let truth = minute_trace().true_energy_wh();
    let s = Duration::from_secs_f64;
    let patterns: Vec<(&str, Schedule)> = vec![
        ("none", vec![]),
        ("nack 2 s", vec![(s(20.0), s(22.0), BusFault::Nack)]),
        ("timeouts 3 s", vec![(s(10.0), s(13.0), BusFault::Timeout)]),
        ("frozen 5 s", vec![(s(40.0), s(45.0), BusFault::Frozen)]),
        ("all ones 1 s", vec![(s(5.0), s(6.0), BusFault::AllOnes)]),
        (
            "many short",
            (0..10)
                .map(|k| {
                    (
                        s(3.0 + 5.0 * k as f64),
                        s(3.3 + 5.0 * k as f64),
                        BusFault::Nack,
                    )
                })
                .collect(),
        ),
        ("until the end", vec![(s(55.0), s(61.0), BusFault::Nack)]),
    ];
    for (name, schedule) in patterns {
        let faulted: f64 = schedule
            .iter()
            .map(|(a, b, _)| b.min(&s(60.0)).as_secs_f64() - a.as_secs_f64())
            .sum();
        let r = replay_with(minute_trace(), &Config::defaults(), |h| {
            h.schedule = schedule.clone()
        })
        .unwrap();
        let err = rel_err(&r, truth);
        // A gap is filled with the neighbouring mean: the error is bounded by the gap's share of
        // the time times the signal's swing (bursts up to 7 W over a 2.7 W idle).
        let bound = 0.001 + faulted / 60.0 * 0.6;
        assert!(
            err < bound,
            "{name}: error {:.3} % (bound {:.3} %)",
            err * 100.0,
            bound * 100.0
        );
        if faulted == 0.0 {
            assert_eq!(r.gap_s, 0.0, "{name}");
        } else {
            // The gap covers the faulted time, plus recovery (backoff, re-initialisation).
            assert!(
                r.gap_s >= faulted * 0.9,
                "{name}: gap {} s for {faulted} s of faults",
                r.gap_s
            );
            assert!(
                r.gap_s <= faulted + 6.0,
                "{name}: gap {} s for {faulted} s of faults",
                r.gap_s
            );
        }
    }
}

#[test]
fn an_hour_of_trace_replays_through_the_shipped_files() {
    // The shipped hour: the contract's headline case.
    let path = super::testdata("traces/bursty_hour.csv");
    let trace = Trace::from_path(&path).unwrap();
    let truth = trace.true_energy_wh();
    let r = replay(trace, &Config::defaults()).unwrap();
    assert_eq!(r.duration_s, 3600.0);
    assert!(
        rel_err(&r, truth) < 0.001,
        "error {:.4} %",
        rel_err(&r, truth) * 100.0
    );
}
