//! The Laplace mechanism's noise. The caller supplies the uniform draw, so the function is pure
//! and its distribution testable from a seeded sequence; the box draws it from the OS's random
//! source ([`uniform_from_bits`] over `getrandom`).
//!
//! A known weakness of floating-point Laplace (Mironov 2012: the low bits of a noised double can
//! reveal the value) is blunted by rounding the noised value to 0.1 kWh before it leaves the box.

/// A Laplace(0, `scale`) draw from `uniform` ∈ (0, 1), by the inverse CDF:
/// x = −scale · sgn(u − ½) · ln(1 − 2|u − ½|).
/// `uniform` at or outside the interval's ends is pulled just inside (0 and 1 would give ∓∞).
pub fn laplace(scale: f64, uniform: f64) -> f64 {
    let u = if uniform.is_nan() {
        0.5
    } else {
        uniform.clamp(f64::EPSILON, 1.0 - f64::EPSILON)
    };
    let d = u - 0.5;
    -scale * d.signum() * (1.0 - 2.0 * d.abs()).ln()
}

/// A uniform double in the open interval (0, 1) from 64 random bits: the top 52 bits, centred in
/// their cell, so neither 0 nor 1 can come out (with 53 bits the top cell's centre, 1 − 2⁻⁵⁴,
/// would round to 1).
pub fn uniform_from_bits(bits: u64) -> f64 {
    ((bits >> 12) as f64 + 0.5) / (1u64 << 52) as f64
}
