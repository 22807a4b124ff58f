//! Charts as inline SVG, drawn here: no script, no external asset, readable without CSS.
//! Every label goes through `esc`; numbers are formatted here.

use super::html::esc;

const W: f64 = 640.0;
const H: f64 = 220.0;
const LEFT: f64 = 48.0;
const BOTTOM: f64 = 36.0;
const TOP: f64 = 12.0;

/// One bar: its label, value and an optional ± error drawn as a whisker.
pub struct Bar {
    pub label: String,
    pub value: f64,
    pub error: Option<f64>,
}

fn nice_max(m: f64) -> f64 {
    if m <= 0.0 || !m.is_finite() {
        return 1.0;
    }
    let p = 10f64.powf(m.log10().floor());
    for f in [1.0, 2.0, 2.5, 5.0, 10.0] {
        if f * p >= m {
            return f * p;
        }
    }
    10.0 * p
}

fn frame(title: &str, max: f64, unit: &str, body: &str) -> String {
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {W} {H}\" role=\"img\" \
         class=\"chart\"><title>{}</title>",
        esc(title)
    );
    for i in 0..=4 {
        let v = max * f64::from(i) / 4.0;
        let y = H - BOTTOM - (H - BOTTOM - TOP) * f64::from(i) / 4.0;
        s.push_str(&format!(
            "<line x1=\"{LEFT}\" x2=\"{W}\" y1=\"{y:.1}\" y2=\"{y:.1}\" stroke=\"#ddd\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" font-size=\"10\" text-anchor=\"end\">{}</text>",
            LEFT - 4.0,
            y + 3.0,
            esc(&fmt_num(v))
        ));
    }
    s.push_str(&format!(
        "<text x=\"4\" y=\"10\" font-size=\"10\">{}</text>",
        esc(unit)
    ));
    s.push_str(body);
    s.push_str("</svg>");
    s
}

fn fmt_num(v: f64) -> String {
    if v >= 100.0 || v == v.trunc() {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

/// Bars of one series (each with an optional whisker), left to right.
pub fn bars(title: &str, unit: &str, bars: &[Bar], color: &str) -> String {
    let max = nice_max(
        bars.iter()
            .map(|b| b.value + b.error.unwrap_or(0.0))
            .fold(0.0, f64::max),
    );
    let n = bars.len().max(1) as f64;
    let slot = (W - LEFT) / n;
    let scale = (H - BOTTOM - TOP) / max;
    let mut body = String::new();
    for (i, b) in bars.iter().enumerate() {
        let x = LEFT + slot * i as f64 + slot * 0.15;
        let v = b.value.max(0.0);
        let h = v * scale;
        let y = H - BOTTOM - h;
        body.push_str(&format!(
            "<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{:.1}\" height=\"{h:.1}\" fill=\"{color}\">\
             <title>{}: {}</title></rect>",
            slot * 0.7,
            esc(&b.label),
            esc(&fmt_num(b.value))
        ));
        if let Some(e) = b.error {
            let cx = x + slot * 0.35;
            let (y1, y2) = (
                H - BOTTOM - (v + e).min(max) * scale,
                H - BOTTOM - (v - e).max(0.0) * scale,
            );
            body.push_str(&format!(
                "<line x1=\"{cx:.1}\" x2=\"{cx:.1}\" y1=\"{y1:.1}\" y2=\"{y2:.1}\" stroke=\"#333\"/>"
            ));
        }
        body.push_str(&format!(
            "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"10\" text-anchor=\"middle\">{}</text>",
            x + slot * 0.35,
            H - BOTTOM + 14.0,
            esc(&b.label)
        ));
    }
    frame(title, max, unit, &body)
}

/// Two series side by side per label (income and expenses per month).
pub fn pairs(title: &str, unit: &str, rows: &[(String, f64, f64)], legend: (&str, &str)) -> String {
    let max = nice_max(rows.iter().map(|r| r.1.max(r.2)).fold(0.0, f64::max));
    let n = rows.len().max(1) as f64;
    let slot = (W - LEFT) / n;
    let scale = (H - BOTTOM - TOP) / max;
    let mut body = String::new();
    for (i, (label, a, b)) in rows.iter().enumerate() {
        let x = LEFT + slot * i as f64 + slot * 0.1;
        for (j, (v, color, name)) in [(a, "#2a7", legend.0), (b, "#c53", legend.1)]
            .into_iter()
            .enumerate()
        {
            let h = v.max(0.0) * scale;
            body.push_str(&format!(
                "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{h:.1}\" fill=\"{color}\">\
                 <title>{} {}: {}</title></rect>",
                x + slot * 0.4 * j as f64,
                H - BOTTOM - h,
                slot * 0.38,
                esc(name),
                esc(label),
                esc(&format!("{v:.2}"))
            ));
        }
        body.push_str(&format!(
            "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"10\" text-anchor=\"middle\">{}</text>",
            x + slot * 0.4,
            H - BOTTOM + 14.0,
            esc(label)
        ));
    }
    body.push_str(&format!(
        "<rect x=\"{LEFT}\" y=\"{:.1}\" width=\"10\" height=\"10\" fill=\"#2a7\"/>\
         <text x=\"{:.1}\" y=\"{:.1}\" font-size=\"10\">{}</text>\
         <rect x=\"{:.1}\" y=\"{:.1}\" width=\"10\" height=\"10\" fill=\"#c53\"/>\
         <text x=\"{:.1}\" y=\"{:.1}\" font-size=\"10\">{}</text>",
        H - 12.0,
        LEFT + 14.0,
        H - 3.0,
        esc(legend.0),
        LEFT + 120.0,
        H - 12.0,
        LEFT + 134.0,
        H - 3.0,
        esc(legend.1)
    ));
    frame(title, max, unit, &body)
}

/// One bar of 100 %, split into its shares (the supplier's mix).
pub fn shares(title: &str, parts: &[(String, f64)]) -> String {
    const COLORS: [&str; 6] = ["#2a7", "#38c", "#eb3", "#c53", "#85a", "#888"];
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {W} 60\" role=\"img\" \
         class=\"chart\"><title>{}</title>",
        esc(title)
    );
    let mut x = 0.0;
    for (i, (name, pct)) in parts.iter().enumerate() {
        let w = W * pct / 100.0;
        let color = COLORS[i % COLORS.len()];
        s.push_str(&format!(
            "<rect x=\"{x:.1}\" y=\"0\" width=\"{w:.1}\" height=\"30\" fill=\"{color}\">\
             <title>{}: {pct}%</title></rect>\
             <text x=\"{:.1}\" y=\"48\" font-size=\"11\">{} {pct}%</text>",
            esc(name),
            x + 2.0,
            esc(name)
        ));
        x += w;
    }
    s.push_str("</svg>");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_escaped_and_scales_are_round() {
        let svg = bars(
            "<t>",
            "kWh",
            &[Bar {
                label: "a<b>&".into(),
                value: 3.3,
                error: Some(1.0),
            }],
            "#38c",
        );
        assert!(
            svg.contains("a&lt;b&gt;&amp;") && !svg.contains("a<b>"),
            "{svg}"
        );
        assert_eq!(nice_max(4.3), 5.0);
        assert_eq!(nice_max(0.0), 1.0);
        assert_eq!(nice_max(1800.0), 2000.0);
    }
}
