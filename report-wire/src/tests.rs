use std::sync::OnceLock;

use super::token::{self, PublicKey, SecretKey};
use super::*;

/// One collector key for all tests (generating one takes a while).
fn key() -> &'static (PublicKey, SecretKey) {
    static KEY: OnceLock<(PublicKey, SecretKey)> = OnceLock::new();
    KEY.get_or_init(|| token::generate_key().unwrap())
}

fn fresh_token() -> Token {
    let (pk, sk) = key();
    let (request, blinding) = token::blind(pk).unwrap();
    let blind_sig = token::sign_blinded(sk, &request.blinded).unwrap();
    token::finalize(pk, blinding, &blind_sig).unwrap()
}

fn sample() -> Report {
    Report {
        schema: SCHEMA.into(),
        id: "0123456789abcdef0123456789abcdef".into(),
        month: "2026-11".into(),
        energy_kwh: 3.4,
        epsilon: 1.0,
        hardware: Hardware::Pi4,
        members: MembersBucket::TwoToFive,
        uptime_share: 0.95,
        synapse: "1.139".into(),
        supplier: Some("Stadtwerke Nord".into()),
        token: fresh_token(),
    }
}

fn json(r: &Report) -> serde_json::Value {
    serde_json::to_value(r).unwrap()
}

/// Parses `v` and returns the error's one line.
fn refused(v: &serde_json::Value) -> String {
    parse(v.to_string().as_bytes()).unwrap_err().to_string()
}

#[test]
fn a_report_round_trips_and_fits() {
    let r = sample();
    let bytes = serde_json::to_vec(&r).unwrap();
    assert!(bytes.len() < MAX_BYTES / 4, "{} bytes", bytes.len());
    assert_eq!(parse(&bytes).unwrap(), r);
    // The wire names are the documented ones.
    let v = json(&r);
    assert_eq!(v["hardware"], "pi4");
    assert_eq!(v["members"], "2-5");
    assert_eq!(v["schema"], "hearth-report/1");
}

#[test]
fn no_supplier_leaves_the_field_out() {
    let mut r = sample();
    r.supplier = None;
    let v = json(&r);
    assert!(v.get("supplier").is_none());
    assert_eq!(parse(v.to_string().as_bytes()).unwrap(), r);
}

#[test]
fn size_is_capped_before_anything_is_parsed() {
    let body = vec![b' '; MAX_BYTES + 1];
    assert_eq!(
        parse(&body).unwrap_err().to_string(),
        "report too large: 4097 bytes (at most 4096)"
    );
}

#[test]
fn each_bad_field_is_named() {
    let base = json(&sample());
    let cases: &[(&str, serde_json::Value, &str)] = &[
        ("schema", "hearth-report/2".into(), "schema: expected"),
        ("id", "0123456789ABCDEF0123456789ABCDEF".into(), "id: "),
        ("id", "0123".into(), "id: "),
        ("month", "2026-13".into(), "month: "),
        ("month", "2026-1".into(), "month: "),
        ("energy_kwh", 3.45.into(), "energy_kwh: not rounded to 0.1"),
        ("energy_kwh", 1e9.into(), "energy_kwh: out of range"),
        ("energy_kwh", "3.4".into(), "invalid type"),
        ("epsilon", 0.0.into(), "epsilon: out of range"),
        ("uptime_share", 1.05.into(), "uptime_share: out of range"),
        (
            "uptime_share",
            0.93.into(),
            "uptime_share: not rounded to 0.05",
        ),
        ("hardware", "pi6".into(), "unknown variant `pi6`"),
        ("members", "3".into(), "unknown variant `3`"),
        ("synapse", "1.139.2".into(), "synapse: "),
        ("synapse", "v1.139".into(), "synapse: "),
        ("supplier", "".into(), "supplier: empty"),
        (
            "supplier",
            "x".repeat(81).into(),
            "supplier: longer than 80",
        ),
        (
            "supplier",
            "Nord\nwerke".into(),
            "supplier: contains a control",
        ),
    ];
    for (name, value, expected) in cases {
        let mut v = base.clone();
        v[*name] = value.clone();
        let e = refused(&v);
        assert!(e.contains(expected), "{name} = {value}: got {e:?}");
        assert!(!e.contains('\n'), "{e:?}");
    }
}

#[test]
fn non_finite_numbers_are_refused() {
    // JSON has no NaN or infinity; a number too large for a double is the nearest thing.
    let mut text = json(&sample()).to_string();
    text = text.replace("\"energy_kwh\":3.4", "\"energy_kwh\":1e999");
    let e = parse(text.as_bytes()).unwrap_err().to_string();
    assert!(e.starts_with("not a report:"), "{e}");
    // And the check itself, for a value built in code.
    let mut r = sample();
    r.energy_kwh = f64::NAN;
    assert_eq!(
        r.check().unwrap_err().to_string(),
        "energy_kwh: not a finite number"
    );
}

#[test]
fn unknown_and_missing_fields_are_refused() {
    let mut v = json(&sample());
    v["household"] = "mueller".into();
    assert!(refused(&v).contains("unknown field `household`"));
    let mut v = json(&sample());
    v.as_object_mut().unwrap().remove("month");
    assert!(refused(&v).contains("missing field `month`"));
    let mut v = json(&sample());
    v["token"]["user"] = "@alice:example.org".into();
    assert!(refused(&v).contains("unknown field `user`"));
}

#[test]
fn token_fields_are_checked_for_format() {
    let base = json(&sample());
    for (name, value, expected) in [
        ("key_id", "ABCDEF0123456789", "token.key_id"),
        ("msg", "c2hvcnQ", "token.msg"),
        ("msg", "not base64 !", "token.msg"),
        ("randomizer", "c2hvcnQ", "token.randomizer"),
        ("sig", "c2hvcnQ", "token.sig"),
    ] {
        let mut v = base.clone();
        v["token"][name] = value.into();
        let e = refused(&v);
        assert!(e.starts_with(expected), "{name}: {e}");
    }
}

#[test]
fn not_utf8_or_not_json_is_refused() {
    assert_eq!(
        parse(b"\xff\xfe").unwrap_err(),
        ParseError::Json("not UTF-8".into())
    );
    assert!(parse(b"[1,2]").is_err());
    assert!(parse(b"").is_err());
}

#[test]
fn a_token_verifies_and_a_changed_one_does_not() {
    let (pk, _) = key();
    let t = fresh_token();
    assert!(token::verify(pk, &t));
    assert_eq!(t.key_id, token::key_id(pk));
    assert_eq!(t.key_id.len(), 16);

    let other = fresh_token();
    let mut changed_msg = t.clone();
    changed_msg.msg = other.msg.clone();
    assert!(!token::verify(pk, &changed_msg));

    let mut changed_sig = t.clone();
    changed_sig.sig = other.sig.clone();
    assert!(!token::verify(pk, &changed_sig));

    let mut changed_randomizer = t.clone();
    changed_randomizer.randomizer = other.randomizer.clone();
    assert!(!token::verify(pk, &changed_randomizer));

    let mut no_randomizer = t.clone();
    no_randomizer.randomizer = None;
    assert!(!token::verify(pk, &no_randomizer));

    let mut wrong_key_id = t.clone();
    wrong_key_id.key_id = "0000000000000000".into();
    assert!(!token::verify(pk, &wrong_key_id));
}

#[test]
fn the_signer_never_sees_the_message() {
    let (pk, sk) = key();
    let (request, blinding) = token::blind(pk).unwrap();
    // All the signer gets is the blinded value; it is not the message, and signing it twice gives
    // the same blind signature (so nothing else is needed from the box).
    let blind_sig = token::sign_blinded(sk, &request.blinded).unwrap();
    let t = token::finalize(pk, blinding, &blind_sig).unwrap();
    assert!(!request.blinded.contains(&t.msg));
    assert_ne!(
        blind_sig, t.sig,
        "the token's signature is not the one the signer made"
    );
    // Two tokens from the same key share nothing but the key id.
    let u = fresh_token();
    assert_ne!(t.msg, u.msg);
    assert_ne!(t.sig, u.sig);
}

#[test]
fn a_signature_by_another_key_does_not_finalize() {
    let (pk, _) = key();
    let (_, other_sk) = token::generate_key().unwrap();
    let (request, blinding) = token::blind(pk).unwrap();
    let sig = token::sign_blinded(&other_sk, &request.blinded);
    // Either the other key refuses the value or the box catches the wrong signature.
    if let Ok(sig) = sig {
        assert!(token::finalize(pk, blinding, &sig).is_err());
    }
}

#[test]
fn public_keys_travel_as_base64url_spki() {
    let (pk, _) = key();
    let b64 = token::encode_public_key(pk).unwrap();
    let back = token::decode_public_key(&b64).unwrap();
    assert_eq!(token::key_id(&back), token::key_id(pk));
    assert!(token::decode_public_key("AAAA").is_err());
}

#[test]
fn token_request_transcript_has_its_own_context() {
    assert_eq!(
        api::tokens_transcript(
            "nord.coop.test",
            1_700_000_000,
            "k1",
            &["b1".into(), "b2".into()]
        ),
        b"hearth-report-tokens/1\0nord.coop.test\x001700000000\0k1\0b1\0b2".to_vec()
    );
    // Each part is its own field: moving a separator changes the transcript.
    assert_ne!(
        api::tokens_transcript("n", 1, "k", &["ab".into()]),
        api::tokens_transcript("n", 1, "k", &["a".into(), "b".into()])
    );
}

#[test]
fn member_buckets() {
    let got: Vec<&str> = [0, 1, 2, 5, 6, 10, 11, 500]
        .iter()
        .map(|&n| MembersBucket::of(n).as_str())
        .collect();
    assert_eq!(got, ["1", "1", "2-5", "2-5", "6-10", "6-10", "11+", "11+"]);
}

#[test]
fn new_ids_are_fresh_hex() {
    let a = new_id().unwrap();
    let b = new_id().unwrap();
    assert!(is_lower_hex(&a, 32));
    assert_ne!(a, b);
}

/// SplitMix64: a seeded sequence of 64-bit values.
fn splitmix(seed: &mut u64) -> u64 {
    *seed = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *seed;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[test]
fn laplace_noise_has_the_documented_distribution() {
    let scale = 20.0;
    let n = 200_000;
    let mut seed = 42;
    let xs: Vec<f64> = (0..n)
        .map(|_| laplace(scale, uniform_from_bits(splitmix(&mut seed))))
        .collect();
    let mean = xs.iter().sum::<f64>() / n as f64;
    let mean_abs = xs.iter().map(|x| x.abs()).sum::<f64>() / n as f64;
    let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n as f64;
    // Standard error of the mean: sqrt(2)·scale/sqrt(n) ≈ 0.063; allow 5 of them.
    assert!(mean.abs() < 0.32, "mean {mean}");
    // E|X| = scale; Var|X| = scale², so its standard error is ≈ 0.045.
    assert!((mean_abs - scale).abs() < 0.25, "mean |x| {mean_abs}");
    // Var X = 2·scale².
    assert!(
        (var / (2.0 * scale * scale) - 1.0).abs() < 0.03,
        "var {var}"
    );
    // P(|X| > scale·ln 20) = 1/20.
    let tail = xs.iter().filter(|x| x.abs() > scale * 20f64.ln()).count() as f64 / n as f64;
    assert!((tail - 0.05).abs() < 0.003, "tail {tail}");
}

#[test]
fn laplace_is_the_inverse_cdf() {
    assert_eq!(laplace(3.0, 0.5), 0.0);
    // F(x) = ½·e^(x/b) below 0: u = ¼ gives x = b·ln ½.
    assert!((laplace(3.0, 0.25) - 3.0 * 0.5f64.ln()).abs() < 1e-12);
    assert!((laplace(3.0, 0.75) + 3.0 * 0.5f64.ln()).abs() < 1e-12);
    // The ends stay finite.
    assert!(laplace(3.0, 0.0).is_finite() && laplace(3.0, 0.0) < 0.0);
    assert!(laplace(3.0, 1.0).is_finite() && laplace(3.0, 1.0) > 0.0);
    assert_eq!(laplace(3.0, f64::NAN), 0.0);
}

#[test]
fn uniform_from_bits_stays_inside() {
    assert!(uniform_from_bits(0) > 0.0);
    assert!(uniform_from_bits(u64::MAX) < 1.0);
    assert!((uniform_from_bits(1 << 63) - 0.5).abs() < 1e-15);
}

#[test]
fn month_hours_and_the_clamp() {
    assert_eq!(crate::month_hours("2026-11"), Some(720.0));
    assert_eq!(crate::month_hours("2026-12"), Some(744.0));
    assert_eq!(crate::month_hours("2026-02"), Some(672.0));
    assert_eq!(crate::month_hours("2028-02"), Some(696.0));
    assert_eq!(crate::month_hours("2100-02"), Some(672.0));
    assert_eq!(crate::month_hours("2000-02"), Some(696.0));
    for bad in ["2026-13", "2026-00", "2026-1", "26-11", "2026/11", ""] {
        assert_eq!(crate::month_hours(bad), None, "{bad:?}");
    }
    assert!((crate::Hardware::Pi4.max_kwh(720.0) - 11.016).abs() < 1e-9);
    assert!((crate::Hardware::Pi5.max_kwh(744.0) - 18.972).abs() < 1e-9);
}

#[test]
fn a_reason_stays_on_one_line_whatever_the_body_quotes() {
    // The fuzz target's first finding: serde_json quotes a key or a string of the body
    // decoded, so an escaped line break in it broke the one-line reason.
    let valid = serde_json::to_string(&sample()).unwrap();
    for (from, to) in [
        ("\"token\":", "\"toke\\n\":"),
        ("\"token\":", "\"toke\\r\\u2028\\u001b[2J\":"),
        ("\"pi4\"", "\"pi4\\nINFO forged log line\""),
        ("\"epsilon\":1.0", "\"epsilon\":\"1\\n0\""),
    ] {
        let body = valid.replacen(from, to, 1);
        assert_ne!(body, valid, "{from}");
        let e = parse(body.as_bytes()).unwrap_err().to_string();
        assert!(e.starts_with("not a report: "), "{e}");
        assert!(
            !e.contains(|c: char| c.is_control() || c == '\u{2028}'),
            "{e:?}"
        );
        assert!(e.contains("\\n") || e.contains("\\r"), "{e:?}");
    }
}

/// Writes the fuzz target's seeds (supervisor/fuzz/seeds/report/) with real tokens:
/// `HEARTH_REPORT_SEEDS=supervisor/fuzz/seeds/report cargo test -p hearth-report-wire -- --ignored fuzz_seeds`.
#[test]
#[ignore = "writes the fuzz seeds; run by hand"]
fn fuzz_seeds() {
    let Ok(dir) = std::env::var("HEARTH_REPORT_SEEDS") else {
        return;
    };
    let dir = std::path::Path::new(&dir);
    std::fs::create_dir_all(dir).unwrap();
    let write = |name: &str, bytes: &[u8]| std::fs::write(dir.join(name), bytes).unwrap();
    let r = sample();
    write("valid.json", &serde_json::to_vec(&r).unwrap());
    // The other end of every range, no supplier, another token.
    let low = Report {
        id: "ffffffffffffffffffffffffffffffff".into(),
        month: "2020-01".into(),
        energy_kwh: -9999.9,
        epsilon: MIN_EPSILON,
        hardware: Hardware::Pi3,
        members: MembersBucket::One,
        uptime_share: 0.0,
        synapse: "0.0".into(),
        supplier: None,
        token: fresh_token(),
        ..sample()
    };
    write("low.json", &serde_json::to_vec(&low).unwrap());
    let high = Report {
        month: "2999-12".into(),
        energy_kwh: 48.4,
        epsilon: MAX_EPSILON,
        hardware: Hardware::Other,
        members: MembersBucket::ElevenPlus,
        uptime_share: 1.0,
        synapse: "9999.9999".into(),
        supplier: Some("Bürgerwerke eG \"Süd\" \\ ☀".into()),
        ..sample()
    };
    write("high.json", &serde_json::to_vec_pretty(&high).unwrap());
    // Valid in other spellings: escapes, exponents, a null supplier, fields reordered.
    let mut v = json(&sample());
    v["energy_kwh"] = serde_json::json!(1.5e1);
    v["supplier"] = serde_json::Value::Null;
    let text = serde_json::to_string(&v)
        .unwrap()
        .replace("hearth-report/1", "hearth\\u002dreport\\/1")
        .replace("15.0", "1.50e1");
    write("spelled.json", text.as_bytes());
    let mut pi5 = sample();
    pi5.hardware = Hardware::Pi5;
    pi5.members = MembersBucket::SixToTen;
    pi5.token.randomizer = None;
    write("no-randomizer.json", &serde_json::to_vec(&pi5).unwrap());
    // Refused ones next to the line.
    let mut v = json(&sample());
    v["household"] = "Nord".into();
    write("unknown-field.json", v.to_string().as_bytes());
    let mut v = json(&sample());
    v["energy_kwh"] = serde_json::json!(3.25);
    write("unrounded.json", v.to_string().as_bytes());
    let mut v = json(&sample());
    v["uptime_share"] = serde_json::json!(0.9500001);
    v["month"] = "2026-13".into();
    write("bad-month.json", v.to_string().as_bytes());
    let valid = serde_json::to_string(&sample()).unwrap();
    write(
        "duplicate.json",
        valid
            .replacen("{", "{\"id\":\"00000000000000000000000000000000\",", 1)
            .as_bytes(),
    );
    write("huge-number.json", valid.replace("3.4", "1e400").as_bytes());
    write("truncated.json", &valid.as_bytes()[..valid.len() / 2]);
    let mut padded = vec![b' '; MAX_BYTES - valid.len()];
    padded.extend_from_slice(valid.as_bytes());
    write("padded-to-the-cap.json", &padded);
}
