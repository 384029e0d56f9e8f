//! The inline SVG bar chart of one harvest: the price paid to farmers beside the policy's
//! minimum, and the premium paid beside the required premium. Each pair is drawn to its own
//! scale, in one currency and one unit, with every value also written out as text (in the
//! bars' labels and in the chart's accessible title), so nothing rests on the picture alone.

use std::fmt::Write;

use fairtrail_client::verify::{FarmgateView, PriceView};

use super::esc;
use crate::http::i18n::{fill, Messages, Numbers};

/// The chart's coordinate width; it scales to the page's width.
const WIDTH: f64 = 300.0;
/// One bar with its label above it.
const ROW: u32 = 46;
/// Between the price pair and the premium pair.
const GAP: u32 = 12;

/// The chart for a harvest's farm-gate view, titled by the element id `id`; `None` when no
/// price paid is stated.
pub(super) fn price_chart(t: &Messages, n: &Numbers, f: &FarmgateView, id: &str) -> Option<String> {
    f.paid.as_ref()?;
    let shown = |p: Option<&PriceView>, missing: &str| {
        p.map_or_else(|| missing.to_owned(), |p| price_text(n, p))
    };
    let title = fill(
        t.price_chart,
        &[
            &shown(f.paid.as_ref(), t.not_stated),
            &shown(f.minimum.as_ref(), t.no_minimum),
            &shown(f.premium.as_ref(), t.not_stated),
            &shown(f.premium_minimum.as_ref(), t.no_minimum),
        ],
    );
    let groups = [
        [
            (
                t.price_paid,
                f.paid.as_ref(),
                t.not_stated,
                paid_colour(f.meets_minimum),
            ),
            (t.minimum, f.minimum.as_ref(), t.no_minimum, "#6b6b6b"),
        ],
        [
            (
                t.premium,
                f.premium.as_ref(),
                t.not_stated,
                paid_colour(f.meets_premium),
            ),
            (
                t.premium_minimum,
                f.premium_minimum.as_ref(),
                t.no_minimum,
                "#6b6b6b",
            ),
        ],
    ];
    let height = 4 * ROW + GAP;
    let mut svg = format!(
        "<svg role=\"img\" aria-labelledby=\"{id}\" viewBox=\"0 0 {WIDTH} {height}\" font-size=\"16\" font-family=\"system-ui,sans-serif\"><title id=\"{id}\">{}</title>",
        esc(&title)
    );
    let mut y = 0;
    for group in groups {
        let scale = scale(group[0].1, group[1].1);
        for (label, price, missing, colour) in group {
            let value = shown(price, missing);
            let _ = write!(
                svg,
                "<text x=\"0\" y=\"{}\" fill=\"#1a1a1a\">{}: <tspan font-weight=\"700\">{}</tspan></text>",
                y + 17,
                esc(label),
                esc(&value)
            );
            if let (Some(max), Some(rate)) = (scale, price.and_then(rate)) {
                let width = (rate / max * WIDTH).clamp(2.0, WIDTH);
                let _ = write!(
                    svg,
                    "<rect x=\"0\" y=\"{}\" width=\"{width:.1}\" height=\"16\" rx=\"2\" fill=\"{colour}\"/>",
                    y + 24
                );
            }
            y += ROW;
        }
        y += GAP;
    }
    svg.push_str("</svg>");
    Some(svg)
}

/// Green when the minimum was met, red when it was not (the text below the chart says
/// which in words), dark grey when there is nothing to compare.
fn paid_colour(meets: Option<bool>) -> &'static str {
    match meets {
        Some(true) => "#1e6b3a",
        Some(false) => "#a4161a",
        None => "#3d3d3d",
    }
}

/// A price per pound for goods counted by weight, else per unit (as the report's `per_lb`,
/// else its `text`).
fn price_text(n: &Numbers, p: &PriceView) -> String {
    let shown = p.shown_per_lb().map(|lb| (lb, "lb")).or_else(|| p.shown());
    shown.map_or_else(|| p.text.clone(), |shown| n.price(&p.currency, shown))
}

/// Minor units per base unit (gram, millilitre, piece): only for drawing bars.
fn rate(p: &PriceView) -> Option<f64> {
    (p.per.amount > 0).then(|| p.minor_units as f64 / p.per.amount as f64)
}

/// The larger of two prices, when both that are present share a currency and a unit, so
/// their bars can be drawn to one scale.
fn scale(a: Option<&PriceView>, b: Option<&PriceView>) -> Option<f64> {
    if let (Some(a), Some(b)) = (a, b) {
        if a.currency != b.currency || a.per.unit != b.per.unit {
            return None;
        }
    }
    let max = [a, b]
        .into_iter()
        .flatten()
        .filter_map(rate)
        .fold(0.0_f64, f64::max);
    (max > 0.0).then_some(max)
}
