//! The PNG chart: equity on top, drawdown below, drawn with plotters' bitmap backend. Text needs a TrueType
//! font; one is looked up at run time (`MCBOT_CHART_FONT`, then common system paths) because none is bundled.
//! Without one the chart is drawn without captions and axis labels rather than failing.

use std::path::Path;
use std::sync::OnceLock;

use plotters::prelude::*;

use super::CommandError;

/// Candidate fonts, most specific first.
const FONT_PATHS: [&str; 5] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/System/Library/Fonts/Supplemental/Arial.ttf",
];

/// Registers a sans-serif font once; true when text can be drawn.
pub(crate) fn font_ready() -> bool {
    static READY: OnceLock<bool> = OnceLock::new();
    *READY.get_or_init(|| {
        let from_env = std::env::var("MCBOT_CHART_FONT").ok();
        let bytes = from_env.iter().map(String::as_str).chain(FONT_PATHS).find_map(|p| std::fs::read(p).ok());
        // plotters keeps the font for the process's lifetime, so leaking the one copy is the intended use
        bytes.is_some_and(|b| {
            plotters::style::register_font("sans-serif", FontStyle::Normal, Box::leak(b.into_boxed_slice())).is_ok()
        })
    })
}

/// At most about `max` points: each bucket keeps its lowest and highest value in time order, so the line still
/// shows every swing (and every drawdown's depth) of a million bars.
fn thin(time: &[i64], v: &[f64], max: usize) -> Vec<(i64, f64)> {
    let n = time.len().min(v.len());
    let step = (2 * n).div_ceil(max.max(2)).max(1);
    let mut out = Vec::with_capacity(2 * n.div_ceil(step));
    for s in (0..n).step_by(step) {
        let e = (s + step).min(n);
        let (mut lo, mut hi) = (s, s);
        for i in s..e {
            if v[i] < v[lo] {
                lo = i;
            }
            if v[i] > v[hi] {
                hi = i;
            }
        }
        let (a, b) = (lo.min(hi), lo.max(hi));
        out.push((time[a], v[a]));
        if b != a {
            out.push((time[b], v[b]));
        }
    }
    out
}

/// Draws equity and drawdown (percent below the running peak) over time into a PNG at `path`.
pub fn equity_drawdown(path: &Path, time: &[i64], equity: &[f64], title: &str) -> Result<(), CommandError> {
    let err =
        |e: &dyn std::fmt::Display| CommandError::Output { path: path.display().to_string(), message: e.to_string() };
    if equity.is_empty() {
        return Err(err(&"no equity to chart"));
    }
    let mut peak = f64::NEG_INFINITY;
    let dd: Vec<f64> = equity
        .iter()
        .map(|e| {
            peak = peak.max(*e);
            -(1.0 - e / peak) * 100.0
        })
        .collect();
    let (eq, ddp) = (thin(time, equity, 3000), thin(time, &dd, 3000));
    let (t0, t1) = (time[0], *time.last().unwrap_or(&time[0]) + 1);
    let (lo, hi) = eq.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), (_, v)| (l.min(*v), h.max(*v)));
    let pad = ((hi - lo) * 0.05).max(hi.abs() * 1e-6).max(1e-9);
    let dd_min = ddp.iter().map(|p| p.1).fold(0.0f64, f64::min).min(-0.01);
    let text = font_ready();
    let fmt_time = |t: &i64| {
        chrono::DateTime::from_timestamp(*t, 0).map_or_else(String::new, |d| d.format("%Y-%m-%d").to_string())
    };

    let root = BitMapBackend::new(path, (1200, 800)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let (top, bottom) = root.split_vertically(540);
    let mut c = ChartBuilder::on(&top);
    c.margin(12).x_label_area_size(if text { 28 } else { 0 }).y_label_area_size(if text { 80 } else { 0 });
    if text {
        c.caption(title, ("sans-serif", 20));
    }
    let mut chart = c.build_cartesian_2d(t0..t1, (lo - pad)..(hi + pad)).map_err(|e| err(&e))?;
    let mut mesh = chart.configure_mesh();
    mesh.light_line_style(WHITE.mix(0.0)).x_label_formatter(&fmt_time).y_desc("equity");
    if !text {
        mesh.x_labels(0).y_labels(0);
    }
    mesh.draw().map_err(|e| err(&e))?;
    chart.draw_series(LineSeries::new(eq, BLUE.stroke_width(2))).map_err(|e| err(&e))?;

    let mut c = ChartBuilder::on(&bottom);
    c.margin(12).x_label_area_size(if text { 28 } else { 0 }).y_label_area_size(if text { 80 } else { 0 });
    let mut chart = c.build_cartesian_2d(t0..t1, (dd_min * 1.05)..0.0).map_err(|e| err(&e))?;
    let mut mesh = chart.configure_mesh();
    mesh.light_line_style(WHITE.mix(0.0)).x_label_formatter(&fmt_time).y_desc("drawdown %");
    if !text {
        mesh.x_labels(0).y_labels(0);
    }
    mesh.draw().map_err(|e| err(&e))?;
    chart
        .draw_series(AreaSeries::new(ddp, 0.0, RED.mix(0.35)).border_style(RED.stroke_width(1)))
        .map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thinning_keeps_lows_and_highs_in_order() {
        let t: Vec<i64> = (0..10).collect();
        let v = [5.0, 4.0, 6.0, 1.0, 7.0, 8.0, 2.0, 9.0, 9.0, 3.0];
        // buckets of 3: [5 4 6] -> 4@1, 6@2; [1 7 8] -> 1@3, 8@5; [2 9 9] -> 2@6, 9@7; [3] -> 3@9
        assert_eq!(thin(&t, &v, 7), vec![(1, 4.0), (2, 6.0), (3, 1.0), (5, 8.0), (6, 2.0), (7, 9.0), (9, 3.0)]);
        assert_eq!(thin(&t, &v, 100).len(), 10);
    }

    #[test]
    fn writes_a_png() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("c.png");
        let time: Vec<i64> = (0..500).map(|i| i * 3600).collect();
        let eq: Vec<f64> = (0..500).map(|i| 10_000.0 + (i as f64 / 20.0).sin() * 500.0 + i as f64).collect();
        equity_drawdown(&p, &time, &eq, "test").unwrap();
        let bytes = std::fs::read(&p).unwrap();
        assert_eq!(&bytes[1..4], b"PNG");
        assert!(equity_drawdown(&p, &[], &[], "empty").is_err());
    }
}
