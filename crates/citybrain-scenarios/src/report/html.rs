//! The pieces every report page shares: escaping, the page shell and its
//! style, bars with spreads, time axes. Reports are single files that open
//! offline: no script, no fetched asset.

use std::borrow::Cow;

use crate::stats::Spread;

/// Text made safe to place in HTML (`&`, `<`, `>`).
pub fn esc(s: &str) -> Cow<'_, str> {
    html_escape::encode_text(s)
}

/// The style every report shares; `extra` is appended after it.
const STYLE: &str = "body{font:14px system-ui,sans-serif;margin:2em;max-width:1100px}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}td:first-child{text-align:left}pre{background:#f6f6f6;padding:1em;overflow:auto;max-height:30em}";

/// A whole page: `title` (escaped here) in the tab, `body` as given.
pub fn page(title: &str, extra_style: &str, body: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><meta charset=\"utf-8\"><title>citybrain — {}</title><style>{STYLE}{extra_style}</style>{body}</html>\n",
        esc(title)
    )
}

/// Horizontal bars (mean) with whiskers (range), and an optional marked value.
/// Labels are escaped here.
pub fn spread_bars(bars: &[(String, &Spread, &str)], mark: Option<(&str, f64)>) -> String {
    let max = bars.iter().map(|(_, s, _)| s.max).fold(1.0, f64::max);
    let x = |v: f64| 150.0 + 500.0 * v / max;
    let mut svg = String::new();
    for (i, (label, sp, colour)) in bars.iter().enumerate() {
        let y = 20 + i as i32 * 34;
        svg += &format!(
            "<text x=\"0\" y=\"{}\">{}</text><rect x=\"150\" y=\"{y}\" width=\"{:.1}\" height=\"22\" fill=\"{colour}\"/>\
             <line x1=\"{:.1}\" x2=\"{:.1}\" y1=\"{}\" y2=\"{}\" stroke=\"#111\" stroke-width=\"2\"/>\
             <text x=\"{:.1}\" y=\"{}\">{:.0} s</text>",
            y + 16,
            esc(label),
            x(sp.mean) - 150.0,
            x(sp.min),
            x(sp.max),
            y + 11,
            y + 11,
            x(sp.max) + 8.0,
            y + 16,
            sp.mean
        );
    }
    let height = 30 + bars.len() * 34;
    if let Some((label, v)) = mark {
        svg += &format!(
            "<line x1=\"{0:.1}\" x2=\"{0:.1}\" y1=\"10\" y2=\"{1}\" stroke=\"#111\" stroke-dasharray=\"4 3\"/>\
             <text x=\"{0:.1}\" y=\"{2}\" text-anchor=\"middle\">{3} {v:.0} s</text>",
            x(v),
            height - 14,
            height,
            esc(label),
        );
    }
    format!(
        "<svg width=\"760\" height=\"{}\" font-size=\"13\">{svg}</svg>",
        height + 6
    )
}

/// Axes for a time series from t0 to t1 s (every second hour marked) and 0..ymax.
pub fn time_axes(w: f64, h: f64, t0: f64, t1: f64, ymax: f64, label: &str) -> String {
    let mut s = format!(
        "<line x1=\"50\" y1=\"{b}\" x2=\"{r}\" y2=\"{b}\" stroke=\"#999\"/><line x1=\"50\" y1=\"20\" x2=\"50\" y2=\"{b}\" stroke=\"#999\"/>\
         <text x=\"4\" y=\"14\" font-size=\"11\">{} (max {ymax:.0})</text>",
        esc(label),
        b = h - 30.0,
        r = w - 10.0
    );
    let mut hour = (t0 / 3600.0).ceil() as i64;
    while (hour as f64) * 3600.0 <= t1 {
        let x = 50.0 + (w - 60.0) * ((hour as f64 * 3600.0 - t0) / (t1 - t0));
        s += &format!(
            "<text x=\"{:.1}\" y=\"{}\" font-size=\"11\">{hour}:00</text>",
            x - 12.0,
            h - 12.0
        );
        hour += 2;
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_in_text_is_escaped() {
        assert_eq!(esc("a<b> & c"), "a&lt;b&gt; &amp; c");
        let p = page("<x>", "", "<p>body</p>");
        assert!(p.contains("<title>citybrain — &lt;x&gt;</title>"), "{p}");
        assert!(p.ends_with("<p>body</p></html>\n"));
    }

    #[test]
    fn bars_scale_to_the_largest_value_and_mark_a_bound() {
        let a = Spread::of(&[100.0, 200.0]);
        let b = Spread::of(&[50.0]);
        let svg = spread_bars(
            &[("a<".to_string(), &a, "#000"), ("b".to_string(), &b, "#111")],
            Some(("free flow", 40.0)),
        );
        // The longest whisker ends at 150 + 500 px; a's mean bar is 3/4 of it.
        assert!(svg.contains("x2=\"650.0\""), "{svg}");
        assert!(svg.contains("width=\"375.0\""), "{svg}");
        assert!(svg.contains(">a&lt;</text>"));
        assert!(svg.contains("free flow 40 s"));
    }

    #[test]
    fn axes_mark_every_second_hour() {
        let s = time_axes(900.0, 260.0, 6.0 * 3600.0, 22.0 * 3600.0, 12.0, "cars");
        assert!(s.contains(">6:00<") && s.contains(">8:00<") && s.contains(">22:00<"));
        assert!(!s.contains(">7:00<"));
        assert!(s.contains("cars (max 12)"));
    }
}
