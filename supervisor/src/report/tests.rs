use super::*;

/// A token of the right format (its signature is not checked by `Report::check`).
pub(crate) fn format_token() -> Token {
    use base64::Engine as _;
    let b64 = |n: usize| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(vec![7u8; n]);
    Token {
        key_id: "0123456789abcdef".into(),
        msg: b64(32),
        randomizer: Some(b64(32)),
        sig: b64(256),
    }
}

fn inputs() -> Inputs {
    Inputs {
        month: "2026-11".into(),
        month_hours: 720.0,
        measured_wh: 3_456.0,
        measured_s: 30.0 * 86_400.0 * 0.96,
        hardware: Hardware::Pi4,
        members: 4,
        synapse_version: Some("1.139.2".into()),
        supplier: Some("Stadtwerke Nord".into()),
        epsilon: 1.0,
        id: "0123456789abcdef0123456789abcdef".into(),
    }
}

#[test]
fn no_noise_at_the_median_draw() {
    // u = ½ is the Laplace distribution's median: the draft shows the clamped, rounded truth.
    let d = build(&inputs(), 0.5);
    assert_eq!(d.energy_kwh, 3.5);
    assert_eq!(d.uptime_share, 0.95);
    assert_eq!(d.members, MembersBucket::TwoToFive);
    assert_eq!(d.synapse, "1.139");
    assert_eq!(d.hardware, Hardware::Pi4);
    assert_eq!(d.supplier.as_deref(), Some("Stadtwerke Nord"));
    assert_eq!(d.month, "2026-11");
    // And it is what a collector accepts.
    let r = d.with_token(format_token());
    r.check().unwrap();
    let text = serde_json::to_string(&r).unwrap();
    assert_eq!(report_wire::parse(text.as_bytes()).unwrap(), r);
}

#[test]
fn the_clamp_is_the_boards_supply_over_the_month() {
    // A Pi 4 cannot use more than 15.3 W × 720 h = 11.016 kWh in a 30-day month.
    assert!((max_kwh(Hardware::Pi4, 720.0) - 11.016).abs() < 1e-9);
    let mut i = inputs();
    i.measured_wh = 50_000.0; // a sensor gone mad
    assert_eq!(build(&i, 0.5).energy_kwh, 11.0);
    i.measured_wh = -20.0;
    assert_eq!(build(&i, 0.5).energy_kwh, 0.0);
    i.measured_wh = f64::NAN;
    assert_eq!(build(&i, 0.5).energy_kwh, 0.0);
}

#[test]
fn the_noise_scale_is_the_clamp_range_over_epsilon() {
    // u = ¼ draws b·ln ½ with b = 11.016 kWh / ε.
    let d = build(&inputs(), 0.25);
    let expected = 3.456 + 11.016 * 0.5f64.ln();
    assert!((d.energy_kwh - expected).abs() <= 0.05, "{}", d.energy_kwh);
    // Negative after noise, and kept so (clamping again would bias the mean).
    assert!(d.energy_kwh < 0.0);
    let mut i = inputs();
    i.epsilon = 2.0;
    let half = build(&i, 0.25);
    assert!((half.energy_kwh - (3.456 + 5.508 * 0.5f64.ln())).abs() <= 0.05);
    assert_eq!(half.epsilon, 2.0);
}

#[test]
fn the_mean_of_many_reports_is_unbiased() {
    // 10 000 boxes at the same true value: the mean of their reports is within the documented
    // error bound (1.96·√2·b/√n at 95 %) of the truth.
    let n = 10_000;
    let mut seed = 7u64;
    let mut sum = 0.0;
    for _ in 0..n {
        seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        sum += build(&inputs(), report_wire::uniform_from_bits(seed)).energy_kwh;
    }
    let mean = sum / n as f64;
    let bound = 1.96 * 2f64.sqrt() * 11.016 / (n as f64).sqrt();
    assert!((mean - 3.456).abs() < bound, "mean {mean}, bound {bound}");
}

#[test]
fn every_draft_is_a_valid_report() {
    for hardware in Hardware::ALL {
        for members in [0, 1, 3, 8, 40] {
            for u in [1e-12, 0.01, 0.3, 0.5, 0.77, 0.999_999] {
                let mut i = inputs();
                i.hardware = hardware;
                i.members = members;
                i.month_hours = 672.0;
                let d = build(&i, u);
                let r = d.clone().with_token(format_token());
                r.check().unwrap_or_else(|e| panic!("{d:?}: {e}"));
                // What is printed parses back to the same numbers.
                let back = report_wire::parse(serde_json::to_string(&r).unwrap().as_bytes());
                assert_eq!(back.unwrap(), r);
            }
        }
    }
}

#[test]
fn nothing_identifying_travels() {
    let r = build(&inputs(), 0.3).with_token(format_token());
    let v = serde_json::to_value(&r).unwrap();
    let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "energy_kwh",
            "epsilon",
            "hardware",
            "id",
            "members",
            "month",
            "schema",
            "supplier",
            "synapse",
            "token",
            "uptime_share"
        ]
    );
    // A supplier that could not travel is dropped rather than sent.
    let mut i = inputs();
    i.supplier = Some("x".repeat(200));
    assert_eq!(build(&i, 0.5).supplier, None);
}

#[test]
fn synapse_versions() {
    for (v, expected) in [
        (Some("1.139.0"), "1.139"),
        (Some("1.140.0rc1"), "1.140"),
        (Some("v1.98.3"), "1.98"),
        (Some("2.0"), "2.0"),
        (Some("garbage"), "0.0"),
        (Some("1"), "0.0"),
        (None, "0.0"),
    ] {
        assert_eq!(major_minor(v), expected, "{v:?}");
    }
}

#[test]
fn uptime_share_is_coarse() {
    let mut i = inputs();
    for (share, expected) in [
        (0.0, 0.0),
        (0.024, 0.0),
        (0.026, 0.05),
        (0.5, 0.5),
        (1.2, 1.0),
    ] {
        i.measured_s = share * i.month_hours * 3600.0;
        assert_eq!(build(&i, 0.5).uptime_share, expected, "{share}");
    }
}
