//! The report charts as PNG, made to be read on a phone: 1500x900, captions at 40 px and labels at 28 px (well
//! above 12 pt once the image is scaled to a phone's width), light text and saturated colours on a dark ground, so
//! they read the same in dark mode as in light. Drawn with plotters' bitmap backend into a buffer and encoded as
//! PNG in memory; text uses the font the backtest chart finds at run time.

use chrono::{Datelike, NaiveDate};
use mcbot_schedules::reports::Report;
use mcbot_schedules::reports::figures::Point;
use mcbot_stages::domain::Decimal;
use mcbot_stages::ports::ChartImage;
use plotters::coord::Shift;
use plotters::prelude::*;
use rust_decimal::prelude::ToPrimitive;

/// Image size.
pub const SIZE: (u32, u32) = (1500, 900);
const BG: RGBColor = RGBColor(24, 26, 32);
const FG: RGBColor = RGBColor(236, 239, 244);
const GRID: RGBColor = RGBColor(70, 76, 90);
const EQUITY: RGBColor = RGBColor(80, 200, 255);
const LOSS: RGBColor = RGBColor(255, 95, 95);
/// Distinct colours for series and stacks, bright on the dark ground.
const PALETTE: [RGBColor; 8] = [
    RGBColor(80, 200, 255),
    RGBColor(255, 170, 50),
    RGBColor(190, 130, 255),
    RGBColor(80, 220, 120),
    RGBColor(255, 95, 150),
    RGBColor(240, 230, 90),
    RGBColor(120, 235, 220),
    RGBColor(200, 200, 200),
];
const CAPTION: u32 = 40;
const LABEL: u32 = 28;

/// Why a chart could not be drawn.
#[derive(Debug, thiserror::Error)]
pub enum ChartError {
    /// Nothing to draw for this report.
    #[error("no data for the {0} chart")]
    Empty(&'static str),
    /// The drawing backend failed.
    #[error("drawing the {chart} chart failed: {message}")]
    Draw {
        /// Which chart.
        chart: &'static str,
        /// What failed.
        message: String,
    },
}

fn f(d: Decimal) -> f64 {
    d.to_f64().unwrap_or(0.0)
}

fn font(px: u32) -> TextStyle<'static> {
    ("sans-serif", px).into_font().color(&FG)
}

/// Draws with `draw` into a buffer and encodes it as PNG.
fn render(
    chart: &'static str,
    draw: impl FnOnce(&DrawingArea<BitMapBackend<'_>, Shift>) -> Result<(), String>,
) -> Result<Vec<u8>, ChartError> {
    let fail = |message: String| ChartError::Draw { chart, message };
    let (w, h) = SIZE;
    let mut buf = vec![0u8; (w * h * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buf, SIZE).into_drawing_area();
        root.fill(&BG).map_err(|e| fail(e.to_string()))?;
        draw(&root).map_err(fail)?;
        root.present().map_err(|e| fail(e.to_string()))?;
    }
    encode_png(&buf, w, h).map_err(fail)
}

/// PNG from RGB bytes: plotters' bitmap encoder writes files only, so the image crate it uses encodes in memory.
/// Fast compression: a chart's large flat areas compress well anyway, and a report's five charts are encoded in
/// a fraction of the time the default level takes.
fn encode_png(rgb: &[u8], w: u32, h: u32) -> Result<Vec<u8>, String> {
    use image::ImageEncoder;
    use image::codecs::png::{CompressionType, FilterType, PngEncoder};
    let mut out = Vec::new();
    PngEncoder::new_with_quality(&mut out, CompressionType::Fast, FilterType::Sub)
        .write_image(rgb, w, h, image::ColorType::Rgb8)
        .map_err(|e| e.to_string())?;
    Ok(out)
}

fn text_ok() -> bool {
    crate::commands::backtest::chart::font_ready()
}

fn e2s<E: std::fmt::Display>(e: E) -> String {
    e.to_string()
}

fn time_range(points: &[Point]) -> Option<(i64, i64)> {
    let a = points.first()?.t.timestamp();
    let b = points.last()?.t.timestamp();
    Some((a, b.max(a + 1)))
}

fn fmt_day(t: &i64) -> String {
    chrono::DateTime::from_timestamp(*t, 0).map_or_else(String::new, |d| d.format("%m-%d").to_string())
}

fn bounds(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), v| (l.min(v), h.max(v)));
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    let pad = ((hi - lo) * 0.08).max(hi.abs() * 1e-4).max(1e-6);
    (lo - pad, hi + pad)
}

/// Equity on top, drawdown below the running peak underneath.
pub fn equity_drawdown(r: &Report, title: &str) -> Result<Vec<u8>, ChartError> {
    let pts = &r.series.equity;
    let (t0, t1) = time_range(pts).ok_or(ChartError::Empty("equity"))?;
    let eq: Vec<(i64, f64)> = pts.iter().map(|p| (p.t.timestamp(), f(p.v))).collect();
    let mut peak = f64::NEG_INFINITY;
    let dd: Vec<(i64, f64)> = eq
        .iter()
        .map(|(t, v)| {
            peak = peak.max(*v);
            (*t, if peak > 0.0 { -(1.0 - v / peak) * 100.0 } else { 0.0 })
        })
        .collect();
    let (lo, hi) = bounds(eq.iter().map(|p| p.1));
    let dd_min = dd.iter().map(|p| p.1).fold(0.0f64, f64::min).min(-0.1) * 1.1;
    let text = text_ok();
    render("equity", |root| {
        let (top, bottom) = root.split_vertically(560);
        let mut c = ChartBuilder::on(&top);
        c.margin(20).x_label_area_size(if text { 40 } else { 0 }).y_label_area_size(if text { 150 } else { 0 });
        if text {
            c.caption(title, font(CAPTION));
        }
        let mut chart = c.build_cartesian_2d(t0..t1, lo..hi).map_err(e2s)?;
        let mut mesh = chart.configure_mesh();
        mesh.bold_line_style(GRID)
            .light_line_style(BG)
            .axis_style(FG)
            .label_style(font(LABEL))
            .x_labels(6)
            .y_labels(5)
            .x_label_formatter(&fmt_day)
            .y_label_formatter(&|v: &f64| format!("{v:.0}"));
        if !text {
            mesh.x_labels(0).y_labels(0);
        }
        mesh.draw().map_err(e2s)?;
        chart.draw_series(LineSeries::new(eq.clone(), EQUITY.stroke_width(4))).map_err(e2s)?;

        let mut c = ChartBuilder::on(&bottom);
        c.margin(20).x_label_area_size(if text { 40 } else { 0 }).y_label_area_size(if text { 150 } else { 0 });
        let mut chart = c.build_cartesian_2d(t0..t1, dd_min..0.0).map_err(e2s)?;
        let mut mesh = chart.configure_mesh();
        mesh.bold_line_style(GRID)
            .light_line_style(BG)
            .axis_style(FG)
            .label_style(font(LABEL))
            .x_labels(6)
            .y_labels(4)
            .x_label_formatter(&fmt_day)
            .y_label_formatter(&|v: &f64| format!("{v:.1} %"))
            .y_desc("drawdown");
        if !text {
            mesh.x_labels(0).y_labels(0);
        }
        mesh.draw().map_err(e2s)?;
        chart
            .draw_series(AreaSeries::new(dd.clone(), 0.0, LOSS.mix(0.45)).border_style(LOSS.stroke_width(3)))
            .map_err(e2s)?;
        Ok(())
    })
}

/// The bot's equity against buy-and-hold of each benchmark, all rebased to 100 at the window's start.
pub fn benchmarks(r: &Report, title: &str) -> Result<Vec<u8>, ChartError> {
    let pts = &r.series.equity;
    let (t0, t1) = time_range(pts).ok_or(ChartError::Empty("benchmark"))?;
    let rebase = |points: &[Point]| -> Vec<(i64, f64)> {
        let base = points.first().map(|p| f(p.v)).filter(|b| *b > 0.0).unwrap_or(1.0);
        points.iter().map(|p| (p.t.timestamp(), f(p.v) / base * 100.0)).collect()
    };
    let mut lines: Vec<(String, Vec<(i64, f64)>)> = vec![("mcbot".to_owned(), rebase(pts))];
    for b in &r.series.benchmarks {
        let within: Vec<Point> = b.points.iter().filter(|p| p.t.timestamp() >= t0).cloned().collect();
        lines.push((format!("{} hold", b.symbol), rebase(&within)));
    }
    let (lo, hi) = bounds(lines.iter().flat_map(|l| l.1.iter().map(|p| p.1)));
    let text = text_ok();
    render("benchmark", |root| {
        let mut c = ChartBuilder::on(root);
        c.margin(20).x_label_area_size(if text { 50 } else { 0 }).y_label_area_size(if text { 110 } else { 0 });
        if text {
            c.caption(title, font(CAPTION));
        }
        let mut chart = c.build_cartesian_2d(t0..t1, lo..hi).map_err(e2s)?;
        let mut mesh = chart.configure_mesh();
        mesh.bold_line_style(GRID)
            .light_line_style(BG)
            .axis_style(FG)
            .label_style(font(LABEL))
            .x_labels(6)
            .y_labels(6)
            .x_label_formatter(&fmt_day)
            .y_label_formatter(&|v: &f64| format!("{v:.0}"));
        if !text {
            mesh.x_labels(0).y_labels(0);
        }
        mesh.draw().map_err(e2s)?;
        for (i, (name, line)) in lines.iter().enumerate() {
            let color = PALETTE[i % PALETTE.len()];
            let width = if i == 0 { 5 } else { 3 };
            let s = chart.draw_series(LineSeries::new(line.clone(), color.stroke_width(width))).map_err(e2s)?;
            s.label(name.clone()).legend(move |(x, y)| Rectangle::new([(x, y - 4), (x + 30, y + 4)], color.filled()));
        }
        if text {
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperLeft)
                .background_style(BG.mix(0.85))
                .border_style(GRID)
                .label_font(font(LABEL))
                .draw()
                .map_err(e2s)?;
        }
        Ok(())
    })
}

/// Daily P&L per symbol as stacked bars: gains stacked up from zero, losses down.
pub fn contributions(r: &Report, title: &str) -> Result<Vec<u8>, ChartError> {
    let days = &r.series.contributions;
    if days.is_empty() || days.iter().all(|d| d.parts.is_empty()) {
        return Err(ChartError::Empty("contribution"));
    }
    let mut names: Vec<String> = days.iter().flat_map(|d| d.parts.iter().map(|p| p.name.clone())).collect();
    names.sort();
    names.dedup();
    let (mut lo, mut hi) = (0.0f64, 0.0f64);
    for d in days {
        let up: f64 = d.parts.iter().map(|p| f(p.pnl).max(0.0)).sum();
        let down: f64 = d.parts.iter().map(|p| f(p.pnl).min(0.0)).sum();
        hi = hi.max(up);
        lo = lo.min(down);
    }
    let pad = ((hi - lo) * 0.08).max(1e-6);
    let n = days.len();
    let text = text_ok();
    render("contribution", |root| {
        let mut c = ChartBuilder::on(root);
        c.margin(20).x_label_area_size(if text { 50 } else { 0 }).y_label_area_size(if text { 120 } else { 0 });
        if text {
            c.caption(title, font(CAPTION));
        }
        let mut chart = c.build_cartesian_2d(0f64..n as f64, (lo - pad)..(hi + pad)).map_err(e2s)?;
        let label_day = |x: &f64| {
            let i = x.floor() as usize;
            days.get(i).map_or_else(String::new, |d| d.date.format("%m-%d").to_string())
        };
        let mut mesh = chart.configure_mesh();
        mesh.bold_line_style(GRID)
            .light_line_style(BG)
            .axis_style(FG)
            .label_style(font(LABEL))
            .x_labels(n.min(8))
            .y_labels(6)
            .x_label_formatter(&label_day)
            .y_label_formatter(&|v: &f64| format!("{v:.0}"));
        if !text {
            mesh.x_labels(0).y_labels(0);
        }
        mesh.draw().map_err(e2s)?;
        for (si, name) in names.iter().enumerate() {
            let color = PALETTE[si % PALETTE.len()];
            let mut rects = Vec::new();
            for (i, d) in days.iter().enumerate() {
                let mut up = 0.0;
                let mut down = 0.0;
                for p in &d.parts {
                    let v = f(p.pnl);
                    if p.name == *name {
                        let (a, b) = if v >= 0.0 { (up, up + v) } else { (down + v, down) };
                        rects.push(Rectangle::new([(i as f64 + 0.12, a), (i as f64 + 0.88, b)], color.filled()));
                        break;
                    }
                    if v >= 0.0 {
                        up += v;
                    } else {
                        down += v;
                    }
                }
            }
            let s = chart.draw_series(rects).map_err(e2s)?;
            s.label(name.clone()).legend(move |(x, y)| Rectangle::new([(x, y - 8), (x + 24, y + 8)], color.filled()));
        }
        chart.draw_series(LineSeries::new([(0.0, 0.0), (n as f64, 0.0)], FG.stroke_width(2))).map_err(e2s)?;
        if text {
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperLeft)
                .background_style(BG.mix(0.85))
                .border_style(GRID)
                .label_font(font(LABEL))
                .draw()
                .map_err(e2s)?;
        }
        Ok(())
    })
}

/// A colour for a day's P&L: green for gains, red for losses, stronger the larger against the largest day.
fn heat(pnl: f64, max_abs: f64) -> RGBColor {
    let k = if max_abs > 0.0 { (pnl.abs() / max_abs).clamp(0.0, 1.0) } else { 0.0 };
    let base = (44.0, 48.0, 58.0);
    let target = if pnl >= 0.0 { (40.0, 190.0, 90.0) } else { (225.0, 60.0, 60.0) };
    let mix = |a: f64, b: f64| (a + (b - a) * (0.25 + 0.75 * k)) as u8;
    if pnl == 0.0 {
        RGBColor(base.0 as u8, base.1 as u8, base.2 as u8)
    } else {
        RGBColor(mix(base.0, target.0), mix(base.1, target.1), mix(base.2, target.2))
    }
}

/// Daily P&L as a calendar: a row per ISO week, a column per weekday, each day's P&L written in its cell.
pub fn calendar(r: &Report, title: &str) -> Result<Vec<u8>, ChartError> {
    let days = &r.series.calendar;
    let first = days.first().ok_or(ChartError::Empty("calendar"))?.date;
    let monday = |d: NaiveDate| d - chrono::Duration::days(i64::from(d.weekday().num_days_from_monday()));
    let week0 = monday(first);
    let weeks = days.iter().map(|d| ((monday(d.date) - week0).num_days() / 7) as usize).max().unwrap_or(0) + 1;
    let max_abs = days.iter().map(|d| f(d.pnl).abs()).fold(0.0, f64::max);
    let text = text_ok();
    render("calendar", |root| {
        let framed = root.margin(16, 8, 8, 8);
        let body = if text { framed.titled(title, font(CAPTION)).map_err(e2s)? } else { framed };
        let (w, h) = body.dim_in_pixel();
        let (left, top) = (20i32, 50i32);
        let cw = (w as i32 - 2 * left) / 7;
        let ch = ((h as i32 - top - 20) / weeks as i32).min(160);
        if text {
            for (i, name) in ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"].iter().enumerate() {
                body.draw(&Text::new(*name, (left + i as i32 * cw + cw / 2 - 24, 8), font(LABEL))).map_err(e2s)?;
            }
        }
        for d in days {
            let col = d.date.weekday().num_days_from_monday() as i32;
            let row = ((monday(d.date) - week0).num_days() / 7) as i32;
            let (x, y) = (left + col * cw, top + row * ch);
            let v = f(d.pnl);
            body.draw(&Rectangle::new([(x + 4, y + 4), (x + cw - 4, y + ch - 4)], heat(v, max_abs).filled()))
                .map_err(e2s)?;
            if text {
                body.draw(&Text::new(d.date.format("%d %b").to_string(), (x + 14, y + 12), font(LABEL)))
                    .map_err(e2s)?;
                let sign = if v > 0.0 { "+" } else { "" };
                body.draw(&Text::new(format!("{sign}{v:.0}"), (x + 14, y + ch / 2), font(34))).map_err(e2s)?;
            }
        }
        Ok(())
    })
}

/// Allocation at the start and at the end of the period: a pair of horizontal bars per asset, in % of NAV.
pub fn allocation(r: &Report, title: &str) -> Result<Vec<u8>, ChartError> {
    let mut assets: Vec<String> = r.allocation_start.iter().chain(&r.allocation_end).map(|s| s.asset.clone()).collect();
    assets.sort();
    assets.dedup();
    if assets.is_empty() {
        return Err(ChartError::Empty("allocation"));
    }
    let weight = |v: &[mcbot_schedules::reports::figures::Slice], a: &str| {
        v.iter().find(|s| s.asset == a).map_or(0.0, |s| f(s.weight_pct))
    };
    let n = assets.len();
    let text = text_ok();
    render("allocation", |root| {
        let mut c = ChartBuilder::on(root);
        c.margin(20).x_label_area_size(if text { 50 } else { 0 }).y_label_area_size(if text { 190 } else { 0 });
        if text {
            c.caption(title, font(CAPTION));
        }
        let mut chart = c.build_cartesian_2d(0f64..105f64, 0f64..n as f64).map_err(e2s)?;
        let label = |y: &f64| {
            let i = y.floor() as usize;
            if (y - y.floor() - 0.5).abs() < 1e-9 { assets.get(i).cloned().unwrap_or_default() } else { String::new() }
        };
        let mut mesh = chart.configure_mesh();
        mesh.bold_line_style(GRID)
            .light_line_style(BG)
            .axis_style(FG)
            .label_style(font(LABEL))
            .x_labels(6)
            .y_labels(2 * n + 1)
            .y_label_formatter(&label)
            .x_label_formatter(&|v: &f64| format!("{v:.0} %"));
        if !text {
            mesh.x_labels(0).y_labels(0);
        }
        mesh.draw().map_err(e2s)?;
        let series = [("start", &r.allocation_start, PALETTE[7], 0.52), ("end", &r.allocation_end, PALETTE[0], 0.1)];
        for (name, slices, color, off) in series {
            let bars: Vec<_> = assets
                .iter()
                .enumerate()
                .map(|(i, a)| {
                    let w = weight(slices.as_slice(), a);
                    Rectangle::new([(0.0, i as f64 + off), (w, i as f64 + off + 0.38)], color.filled())
                })
                .collect();
            chart
                .draw_series(bars)
                .map_err(e2s)?
                .label(format!("{name} of period"))
                .legend(move |(x, y)| Rectangle::new([(x, y - 8), (x + 24, y + 8)], color.filled()));
        }
        if text {
            for (i, a) in assets.iter().enumerate() {
                for (slices, off) in [(&r.allocation_start, 0.52), (&r.allocation_end, 0.1)] {
                    let w = weight(slices.as_slice(), a);
                    chart
                        .draw_series(std::iter::once(Text::new(
                            format!("{w:.1} %"),
                            ((w + 1.0).min(92.0), i as f64 + off + 0.34),
                            font(26),
                        )))
                        .map_err(e2s)?;
                }
            }
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperRight)
                .background_style(BG.mix(0.85))
                .border_style(GRID)
                .label_font(font(LABEL))
                .draw()
                .map_err(e2s)?;
        }
        Ok(())
    })
}

/// Every chart of a report that has data, in reading order. A chart that cannot be drawn is left out (logged):
/// the report still goes out.
pub fn all(r: &Report) -> Vec<ChartImage> {
    if !r.history {
        return Vec::new();
    }
    let span = match r.series.from {
        Some(from) if from < r.start => {
            format!("{} – {}", from.format("%Y-%m-%d"), (r.end - chrono::Duration::days(1)).format("%Y-%m-%d"))
        }
        _ => mcbot_schedules::reports::text::title(r),
    };
    type Draw = fn(&Report, &str) -> Result<Vec<u8>, ChartError>;
    let kinds: [(&str, &str, Draw); 5] = [
        ("equity", "Equity and drawdown", equity_drawdown),
        ("benchmarks", "Equity vs buy and hold", benchmarks),
        ("contributions", "Daily P&L per symbol", contributions),
        ("calendar", "Daily P&L", calendar),
        ("allocation", "Allocation", allocation),
    ];
    let mut out = Vec::new();
    for (name, what, draw) in kinds {
        let caption = format!("{what} · {span}");
        match draw(r, &caption) {
            Ok(png) => out.push(ChartImage { name: format!("{name}.png"), caption, png }),
            Err(ChartError::Empty(_)) => {}
            Err(e) => tracing::warn!("report chart left out: {e}"),
        }
    }
    out
}
