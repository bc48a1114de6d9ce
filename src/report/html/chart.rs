//! The report's charts, drawn by plotters as SVG text (no fonts measured, no files, no script):
//! latency over time above the fault bands, requests per second by result above retries, the
//! HDR percentile curve, and the topology. Every chart is a pure function of aggregates, so the
//! same run gives the same bytes.

use std::collections::BTreeMap;
use std::error::Error;
use std::time::Duration;

use plotters::coord::Shift;
use plotters::prelude::*;

use crate::record::Timeline;
use crate::record::summary::Latency;

/// The width of every chart, in pixels.
const WIDTH: u32 = 960;
/// Room for the value labels left of every time chart, wide enough for a rule's name, and the same
/// in every panel so that their time axes line up.
const LEFT: u32 = 150;
const FONT: &str = "sans-serif";

type Drawn = Result<(), Box<dyn Error>>;

/// Draws with `draw` on an SVG of `size`; the SVG text, or why it could not be drawn.
fn svg(
    size: (u32, u32),
    draw: impl FnOnce(&DrawingArea<SVGBackend<'_>, Shift>) -> Drawn,
) -> Result<String, String> {
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, size).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        draw(&root).map_err(|e| e.to_string())?;
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(out)
}

/// One series' colour: a fixed palette, in order.
pub fn palette(i: usize) -> RGBColor {
    const COLORS: [RGBColor; 8] = [
        RGBColor(214, 39, 40),
        RGBColor(31, 119, 180),
        RGBColor(255, 127, 14),
        RGBColor(148, 103, 189),
        RGBColor(44, 160, 44),
        RGBColor(140, 86, 75),
        RGBColor(227, 119, 194),
        RGBColor(23, 190, 207),
    ];
    COLORS[i % COLORS.len()]
}

/// The colour of a result: greens for 2xx, blue for 3xx, orange for 4xx, reds for 5xx, purples
/// and greys for errors. `nth` tells apart results of one class.
pub fn result_color(label: &str, nth: usize) -> RGBColor {
    let shade = |colors: &[RGBColor]| colors[nth % colors.len()];
    match label.as_bytes().first() {
        Some(b'1') => shade(&[RGBColor(160, 160, 220)]),
        Some(b'2') => shade(&[RGBColor(46, 158, 91), RGBColor(120, 200, 120)]),
        Some(b'3') => shade(&[RGBColor(95, 168, 211), RGBColor(60, 120, 180)]),
        Some(b'4') => shade(&[RGBColor(240, 160, 48), RGBColor(250, 200, 90)]),
        Some(b'5') => shade(&[
            RGBColor(214, 39, 40),
            RGBColor(150, 20, 30),
            RGBColor(240, 100, 80),
        ]),
        _ => match label {
            "cancelled" => RGBColor(180, 180, 180),
            "connect" => RGBColor(90, 90, 90),
            _ => shade(&[
                RGBColor(123, 79, 160),
                RGBColor(170, 120, 200),
                RGBColor(90, 50, 120),
            ]),
        },
    }
}

/// The unit of a time axis spanning `end` seconds, so that its ticks fall on round values of it:
/// seconds below two minutes, minutes below two hours, then hours.
pub fn time_unit(end: f64) -> (f64, &'static str) {
    if end < 120.0 {
        (1.0, "s")
    } else if end < 7200.0 {
        (60.0, "m")
    } else {
        (3600.0, "h")
    }
}

/// `20m`, `2.5m`, `42s`: a tick of a time axis in `unit`.
pub fn tick(value: f64, unit: &str) -> String {
    let rounded = (value * 10.0).round() / 10.0;
    if rounded.fract() == 0.0 {
        format!("{rounded:.0}{unit}")
    } else {
        format!("{rounded:.1}{unit}")
    }
}

/// `0.8ms`, `40ms`, `3.5s`, `210s`: a latency in milliseconds for an axis.
pub fn millis(ms: f64) -> String {
    if ms < 0.1 {
        format!("{:.0}µs", ms * 1000.0)
    } else if ms < 1.0 {
        format!("{ms:.2}ms")
    } else if ms < 1000.0 {
        format!("{ms:.0}ms")
    } else if ms < 10_000.0 {
        format!("{:.1}s", ms / 1000.0)
    } else {
        format!("{:.0}s", ms / 1000.0)
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The right end of a timeline's time axis, in seconds: its last bucket's end or the last thing
/// that ended, whichever is later; never zero.
fn axis_end(t: &Timeline) -> f64 {
    let buckets = t.width().as_secs_f64() * t.buckets().len() as f64;
    buckets
        .max(t.end().as_secs_f64())
        .max(t.width().as_secs_f64())
}

/// A timeline's time axis: its end and bucket width in `unit`s, and the unit's name.
fn time_axis(t: &Timeline) -> (f64, f64, &'static str) {
    let end = axis_end(t);
    let (unit, name) = time_unit(end);
    (end / unit, t.width().as_secs_f64() / unit, name)
}

/// A panel's frame: its caption style and the value labels' style.
fn caption_style() -> TextStyle<'static> {
    (FONT, 16).into_font().into()
}

/// Latency per time bucket (p50, p90, p99, log scale) above one band per fault rule: bars as
/// tall as the attempts it fired on in each bucket, on the same time axis.
pub fn latency_over_time(t: &Timeline, rules: &[String]) -> Result<String, String> {
    let band = 30u32;
    let bands = if rules.is_empty() {
        0
    } else {
        band * rules.len() as u32 + 50
    };
    let height = 340 + bands;
    let (end, width_s, unit) = time_axis(t);
    let quantiles = [(0.5, "p50"), (0.9, "p90"), (0.99, "p99")];
    let values: Vec<f64> = t
        .buckets()
        .iter()
        .flat_map(|b| quantiles.iter().filter_map(|(q, _)| b.quantile(*q)))
        .map(ms)
        .filter(|v| *v > 0.0)
        .collect();
    let lo = values.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = values.iter().copied().fold(0.0, f64::max);
    let (lo, hi) = if values.is_empty() {
        (0.1, 1000.0)
    } else {
        ((lo / 2.0).max(0.001), (hi * 2.0).max(lo * 4.0))
    };
    svg((WIDTH, height), |root| {
        let (top, bottom) = root.split_vertically(340);
        let mut chart = ChartBuilder::on(&top)
            .caption("Latency over time (by send time)", caption_style())
            .margin(10)
            .margin_right(30)
            .x_label_area_size(if rules.is_empty() { 30 } else { 0 })
            .y_label_area_size(LEFT - 10)
            .build_cartesian_2d(0f64..end, (lo..hi).log_scale())?;
        let x_fmt = |x: &f64| tick(*x, unit);
        let y_fmt = |y: &f64| millis(*y);
        chart
            .configure_mesh()
            .x_labels(12)
            .x_label_formatter(&x_fmt)
            .y_label_formatter(&y_fmt)
            .y_desc("latency")
            .label_style((FONT, 12))
            .light_line_style(RGBColor(238, 238, 238))
            .draw()?;
        let styles = [
            RGBColor(31, 119, 180),
            RGBColor(255, 127, 14),
            RGBColor(214, 39, 40),
        ];
        for ((q, name), color) in quantiles.iter().zip(styles) {
            // One line per run of buckets that have requests: no line across a silence.
            let mut segments: Vec<Vec<(f64, f64)>> = vec![Vec::new()];
            for (i, b) in t.buckets().iter().enumerate() {
                match b.quantile(*q) {
                    Some(v) => {
                        let mid = (i as f64 + 0.5) * width_s;
                        if let Some(last) = segments.last_mut() {
                            last.push((mid, ms(v).max(lo)));
                        }
                    }
                    None => segments.push(Vec::new()),
                }
            }
            let mut labelled = false;
            for segment in segments.into_iter().filter(|s| !s.is_empty()) {
                let series = chart.draw_series(LineSeries::new(segment, color.stroke_width(2)))?;
                if !labelled {
                    series.label(*name).legend(move |(x, y)| {
                        PathElement::new([(x, y), (x + 16, y)], color.stroke_width(2))
                    });
                    labelled = true;
                }
            }
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .label_font((FONT, 12))
            .background_style(WHITE.mix(0.85))
            .border_style(RGBColor(200, 200, 200))
            .draw()?;
        if !rules.is_empty() {
            fault_bands(&bottom, t, rules, (end, width_s, unit))?;
        }
        Ok(())
    })
}

/// One row per rule; in each bucket a bar as tall as the attempts it fired on (relative to its
/// busiest bucket), labelled with the rule's name and total.
fn fault_bands(
    area: &DrawingArea<SVGBackend<'_>, Shift>,
    t: &Timeline,
    rules: &[String],
    (end, width_s, unit): (f64, f64, &str),
) -> Drawn {
    let n = rules.len();
    let mut chart = ChartBuilder::on(area)
        .margin(10)
        .margin_top(0)
        .margin_right(30)
        .x_label_area_size(40)
        .y_label_area_size(LEFT - 10)
        .build_cartesian_2d(0f64..end, 0f64..n as f64)?;
    let x_fmt = |x: &f64| tick(*x, unit);
    chart
        .configure_mesh()
        .x_labels(12)
        .x_label_formatter(&x_fmt)
        .y_labels(0)
        .x_desc("run time")
        .label_style((FONT, 12))
        .light_line_style(TRANSPARENT)
        .bold_line_style(RGBColor(238, 238, 238))
        .draw()?;
    for (row, rule) in rules.iter().enumerate() {
        let color = palette(row);
        // Rows from the top, in the scenario's order.
        let base = (n - 1 - row) as f64;
        let counts: Vec<u64> = t
            .buckets()
            .iter()
            .map(|b| b.faults.get(rule).copied().unwrap_or(0))
            .collect();
        let busiest = counts.iter().copied().max().unwrap_or(0).max(1) as f64;
        let total: u64 = counts.iter().sum();
        chart.draw_series(std::iter::once(Rectangle::new(
            [(0.0, base + 0.05), (end, base + 0.95)],
            color.mix(0.06).filled(),
        )))?;
        chart.draw_series(
            counts
                .iter()
                .enumerate()
                .filter(|(_, c)| **c > 0)
                .map(|(i, c)| {
                    let x0 = i as f64 * width_s;
                    let top = base + 0.1 + 0.8 * (*c as f64 / busiest);
                    Rectangle::new(
                        [(x0, base + 0.1), (x0 + width_s, top)],
                        color.mix(0.85).filled(),
                    )
                }),
        )?;
        let (_, y) = chart.backend_coord(&(0.0, base + 0.5));
        let label = format!("{rule} ({total})");
        area.draw(&Text::new(
            label,
            (8, y - area.get_base_pixel().1 - 6),
            (FONT, 12).into_font().color(&color),
        ))?;
    }
    Ok(())
}

/// Requests per second by final result (stacked, by send time) above retries per second.
pub fn requests_over_time(t: &Timeline) -> Result<String, String> {
    let (end, width_s, unit) = time_axis(t);
    let per_second = t.width().as_secs_f64().max(1e-9);
    let mut labels: Vec<String> = Vec::new();
    for b in t.buckets() {
        for k in b.results.keys() {
            if !labels.contains(k) {
                labels.push(k.clone());
            }
        }
    }
    labels.sort_by_key(|l| result_order(l));
    let colors = result_colors(&labels);
    let tops: Vec<f64> = t
        .buckets()
        .iter()
        .map(|b| b.requests as f64 / per_second)
        .collect();
    let peak = tops.iter().copied().fold(0.0, f64::max).max(1e-3) * 1.15;
    let retry_rates: Vec<f64> = t
        .buckets()
        .iter()
        .map(|b| b.retries as f64 / per_second)
        .collect();
    let retry_peak = retry_rates.iter().copied().fold(0.0, f64::max).max(1e-3) * 1.15;
    svg((WIDTH, 520), |root| {
        let (top, bottom) = root.split_vertically(340);
        let mut chart = ChartBuilder::on(&top)
            .caption(
                "Requests per second by final result (by send time)",
                caption_style(),
            )
            .margin(10)
            .margin_right(30)
            .x_label_area_size(0)
            .y_label_area_size(LEFT - 10)
            .build_cartesian_2d(0f64..end, 0f64..peak)?;
        let x_fmt = |x: &f64| tick(*x, unit);
        let y_fmt = |y: &f64| rate(*y);
        chart
            .configure_mesh()
            .x_labels(12)
            .x_label_formatter(&x_fmt)
            .y_label_formatter(&y_fmt)
            .y_desc("requests/s")
            .label_style((FONT, 12))
            .light_line_style(RGBColor(238, 238, 238))
            .draw()?;
        // Stacked: draw each cumulative top, highest first, so the lower layers paint over it.
        for (k, label) in labels.iter().enumerate().rev() {
            let below: &[String] = &labels[..=k];
            let mut points = Vec::new();
            for (i, b) in t.buckets().iter().enumerate() {
                let v: u64 = below
                    .iter()
                    .map(|l| b.results.get(l).copied().unwrap_or(0))
                    .sum();
                let v = v as f64 / per_second;
                points.push((i as f64 * width_s, v));
                points.push(((i + 1) as f64 * width_s, v));
            }
            let color = colors[k];
            chart
                .draw_series(AreaSeries::new(points, 0.0, color.mix(0.9)).border_style(color))?
                .label(label.as_str())
                .legend(move |(x, y)| {
                    Rectangle::new([(x, y - 5), (x + 12, y + 5)], color.filled())
                });
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .label_font((FONT, 12))
            .background_style(WHITE.mix(0.85))
            .border_style(RGBColor(200, 200, 200))
            .draw()?;

        let mut retries = ChartBuilder::on(&bottom)
            .caption(
                "Retries per second (by the time they were sent)",
                (FONT, 14),
            )
            .margin(10)
            .margin_right(30)
            .x_label_area_size(40)
            .y_label_area_size(LEFT - 10)
            .build_cartesian_2d(0f64..end, 0f64..retry_peak)?;
        retries
            .configure_mesh()
            .x_labels(12)
            .y_labels(4)
            .x_label_formatter(&x_fmt)
            .y_label_formatter(&y_fmt)
            .x_desc("run time")
            .y_desc("retries/s")
            .label_style((FONT, 12))
            .light_line_style(RGBColor(238, 238, 238))
            .draw()?;
        let mut points = Vec::new();
        for (i, r) in retry_rates.iter().enumerate() {
            points.push((i as f64 * width_s, *r));
            points.push(((i + 1) as f64 * width_s, *r));
        }
        let orange = RGBColor(255, 127, 14);
        retries.draw_series(AreaSeries::new(points, 0.0, orange.mix(0.5)).border_style(orange))?;
        Ok(())
    })
}

/// Successes first, then client errors, server errors, then errors without a response.
fn result_order(label: &str) -> (u8, String) {
    let class = match label.as_bytes().first() {
        Some(b'2') => 0,
        Some(b'3') => 1,
        Some(b'1') => 2,
        Some(b'4') => 3,
        Some(b'5') => 4,
        _ => 5,
    };
    (class, label.to_string())
}

/// A colour per result, shades told apart within a class.
pub fn result_colors(labels: &[String]) -> Vec<RGBColor> {
    let mut seen: BTreeMap<u8, usize> = BTreeMap::new();
    labels
        .iter()
        .map(|l| {
            let class = result_order(l).0;
            let nth = seen.entry(class).or_default();
            let color = result_color(l, *nth);
            *nth += 1;
            color
        })
        .collect()
}

/// `0.50`, `12`, `1.2k`: a rate per second.
fn rate(v: f64) -> String {
    if v >= 1000.0 {
        format!("{:.1}k", v / 1000.0)
    } else if v >= 10.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

/// The HDR percentile curve of `curves` (name, histogram), to p99.99, latency on a log scale.
pub fn percentile_curve(curves: &[(&str, &Latency)]) -> Result<String, String> {
    let steps = 200;
    let points: Vec<Vec<(f64, f64)>> = curves
        .iter()
        .map(|(_, l)| {
            (0..=steps)
                .map(|i| {
                    let x = 4.0 * i as f64 / steps as f64;
                    let p = 1.0 - 10f64.powf(-x);
                    (x, ms(l.quantile(p)).max(0.001))
                })
                .collect()
        })
        .collect();
    let all = points.iter().flatten().map(|(_, y)| *y);
    let lo = all.clone().fold(f64::INFINITY, f64::min);
    let hi = all.fold(0.0, f64::max);
    let (lo, hi) = if lo.is_finite() && hi > 0.0 {
        ((lo / 2.0).max(0.001), (hi * 2.0).max(lo * 4.0))
    } else {
        (0.1, 1000.0)
    };
    svg((WIDTH, 380), |root| {
        let mut chart = ChartBuilder::on(root)
            .caption("Latency by percentile (HDR histogram)", caption_style())
            .margin(10)
            .margin_right(30)
            .x_label_area_size(40)
            .y_label_area_size(LEFT - 10)
            .build_cartesian_2d(0f64..4f64, (lo..hi).log_scale())?;
        let x_fmt = |x: &f64| percentile_label(*x);
        let y_fmt = |y: &f64| millis(*y);
        chart
            .configure_mesh()
            .x_labels(5)
            .x_label_formatter(&x_fmt)
            .y_label_formatter(&y_fmt)
            .x_desc("percentile")
            .y_desc("latency")
            .label_style((FONT, 12))
            .light_line_style(RGBColor(238, 238, 238))
            .draw()?;
        for (i, ((name, _), line)) in curves.iter().zip(points).enumerate() {
            let color = palette(i + 1);
            chart
                .draw_series(LineSeries::new(line, color.stroke_width(2)))?
                .label(*name)
                .legend(move |(x, y)| {
                    PathElement::new([(x, y), (x + 16, y)], color.stroke_width(2))
                });
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .label_font((FONT, 12))
            .background_style(WHITE.mix(0.85))
            .border_style(RGBColor(200, 200, 200))
            .draw()?;
        Ok(())
    })
}

/// `0%`, `90%`, `99.9%` for a position on the percentile axis.
fn percentile_label(x: f64) -> String {
    let p = (1.0 - 10f64.powf(-x)) * 100.0;
    let digits = (x.round() as i32 - 2).clamp(0, 4) as usize;
    format!("{p:.digits$}%")
}

/// A node of the topology diagram.
#[derive(Debug, Clone)]
pub struct Node {
    pub name: String,
    /// `load`, `service`, `proxy`, `mock`, `url`.
    pub kind: &'static str,
    /// Its column, from the load at 0.
    pub column: usize,
}

/// An arrow of the topology diagram, labelled with how many requests or calls went along it.
#[derive(Debug, Clone)]
pub struct Edge {
    pub from: usize,
    pub to: usize,
    pub label: String,
}

/// The topology as boxes in columns (load, then what it calls, and so on) and labelled arrows.
pub fn topology(nodes: &[Node], edges: &[Edge]) -> Result<String, String> {
    let columns = nodes.iter().map(|n| n.column).max().unwrap_or(0) + 1;
    let mut rows: Vec<usize> = vec![0; columns];
    let mut at = Vec::new();
    for n in nodes {
        at.push((n.column, rows[n.column]));
        rows[n.column] += 1;
    }
    let tallest = rows.iter().copied().max().unwrap_or(1).max(1);
    let (box_w, box_h, row_h) = (150i32, 44i32, 80i32);
    let height = (tallest as i32 * row_h + 40).max(140);
    let col_w = (WIDTH as i32 - 40) / columns.max(1) as i32;
    let centre = |i: usize| -> (i32, i32) {
        let (c, r) = at[i];
        let in_column = rows[c] as i32;
        let top = (height - in_column * row_h) / 2;
        (
            20 + col_w * c as i32 + col_w / 2,
            top + r as i32 * row_h + row_h / 2,
        )
    };
    svg((WIDTH, height as u32), |root| {
        for e in edges {
            if e.from >= nodes.len() || e.to >= nodes.len() {
                continue;
            }
            let (x0, y0) = centre(e.from);
            let (x1, y1) = centre(e.to);
            let (x0, x1) = (x0 + box_w / 2, x1 - box_w / 2);
            let grey = RGBColor(110, 110, 110);
            root.draw(&PathElement::new(
                [(x0, y0), (x1, y1)],
                grey.stroke_width(2),
            ))?;
            root.draw(&Polygon::new(
                [(x1, y1), (x1 - 9, y1 - 5), (x1 - 9, y1 + 5)],
                grey.filled(),
            ))?;
            root.draw(&Text::new(
                e.label.clone(),
                ((x0 + x1) / 2 - 30, (y0 + y1) / 2 - 18),
                (FONT, 12).into_font().color(&RGBColor(40, 40, 40)),
            ))?;
        }
        for (i, n) in nodes.iter().enumerate() {
            let (x, y) = centre(i);
            let fill = match n.kind {
                "load" => RGBColor(230, 240, 250),
                "service" => RGBColor(225, 245, 230),
                "proxy" => RGBColor(253, 235, 220),
                _ => RGBColor(240, 240, 240),
            };
            let corners = [
                (x - box_w / 2, y - box_h / 2),
                (x + box_w / 2, y + box_h / 2),
            ];
            root.draw(&Rectangle::new(corners, fill.filled()))?;
            root.draw(&Rectangle::new(
                corners,
                RGBColor(120, 120, 120).stroke_width(1),
            ))?;
            root.draw(&Text::new(
                n.name.clone(),
                (x - box_w / 2 + 8, y - 14),
                (FONT, 13).into_font(),
            ))?;
            root.draw(&Text::new(
                n.kind,
                (x - box_w / 2 + 8, y + 3),
                (FONT, 11).into_font().color(&RGBColor(100, 100, 100)),
            ))?;
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axis_labels_read_as_people_write_them() {
        assert_eq!(time_unit(3600.0), (60.0, "m"));
        assert_eq!(time_unit(60.0), (1.0, "s"));
        assert_eq!(time_unit(86_400.0), (3600.0, "h"));
        assert_eq!(tick(20.0, "m"), "20m");
        assert_eq!(tick(2.5, "s"), "2.5s");
        assert_eq!(millis(0.001), "1µs");
        assert_eq!(millis(40.0), "40ms");
        assert_eq!(millis(210_000.0), "210s");
        assert_eq!(percentile_label(2.0), "99%");
        assert_eq!(percentile_label(4.0), "99.99%");
        assert_eq!(percentile_label(0.0), "0%");
    }
}
