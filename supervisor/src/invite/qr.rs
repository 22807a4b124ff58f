//! The invitation link as a QR code, drawn on the server as SVG (the `qrcode` crate's SVG
//! renderer): the page inlines it, so it needs no script, no image request and no inline style
//! (the strict CSP allows none). Pure: no IO, no clock.

use qrcode::render::svg;
use qrcode::{EcLevel, QrCode};

/// Pixels per module: the code is drawn at whole pixels, so a scanner sees crisp edges.
pub const MODULE_PX: u32 = 6;

/// `link` as an inline `<svg>` element (no XML declaration), with `label` as its accessible
/// name; `None` only when the link is too long for any QR code (thousands of bytes).
pub fn svg(link: &str, label: &str) -> Option<String> {
    let code = QrCode::with_error_correction_level(link.as_bytes(), EcLevel::M).ok()?;
    let drawn = code
        .render::<svg::Color<'_>>()
        .module_dimensions(MODULE_PX, MODULE_PX)
        .quiet_zone(true)
        .dark_color(svg::Color("#000"))
        .light_color(svg::Color("#fff"))
        .build();
    let start = drawn.find("<svg")?;
    let label: String = label
        .chars()
        .map(|c| match c {
            '"' | '<' | '>' | '&' => ' ',
            c => c,
        })
        .collect();
    Some(drawn[start..].replacen(
        "<svg ",
        &format!("<svg class=\"qr\" role=\"img\" aria-label=\"{label}\" "),
        1,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The dark modules of `svg`, rasterised at one pixel per SVG unit: (width, height, dark?).
    fn raster(svg: &str) -> (usize, usize, Vec<bool>) {
        let attr = |name: &str| -> usize {
            let i = svg.find(&format!(" {name}=\"")).unwrap() + name.len() + 3;
            svg[i..].split('"').next().unwrap().parse().unwrap()
        };
        let (w, h) = (attr("width"), attr("height"));
        let d = svg
            .split(" d=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap();
        let mut px = vec![false; w * h];
        // Each rectangle is `M{x} {y}h{w}v{h}H{x}V{y}`.
        for rect in d.split('M').filter(|r| !r.is_empty()) {
            let nums: Vec<usize> = rect
                .split(|c: char| !c.is_ascii_digit())
                .filter(|s| !s.is_empty())
                .map(|s| s.parse().unwrap())
                .collect();
            let (x, y, rw, rh) = (nums[0], nums[1], nums[2], nums[3]);
            for yy in y..y + rh {
                for xx in x..x + rw {
                    px[yy * w + xx] = true;
                }
            }
        }
        (w, h, px)
    }

    #[test]
    fn the_svg_decodes_back_to_the_link() {
        let link = "https://family.example.org/join/0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        let s = svg(link, "Invitation \"link\" <x>").unwrap();
        assert!(
            s.starts_with("<svg class=\"qr\" role=\"img\" aria-label=\"Invitation  link   x \"")
        );
        assert!(!s.contains("<?xml"), "inline: no XML declaration");
        assert!(!s.contains("style"), "no inline style (CSP)");
        let (w, h, px) = raster(&s);
        assert!(w >= 25 * MODULE_PX as usize && w == h, "{w}×{h}");
        assert!(px.iter().any(|d| *d) && px.iter().any(|d| !*d));
        let mut img =
            rqrr::PreparedImage::prepare_from_greyscale(
                w,
                h,
                |x, y| {
                    if px[y * w + x] {
                        0
                    } else {
                        255
                    }
                },
            );
        let grids = img.detect_grids();
        assert_eq!(grids.len(), 1);
        let (_, content) = grids[0].decode().unwrap();
        assert_eq!(content, link);
    }

    #[test]
    fn a_link_too_long_for_any_code_is_none() {
        assert!(svg(&"x".repeat(5000), "x").is_none());
    }
}
