//! SVG plots: latency CDFs per workload (one line per policy) and, per
//! workload, throughput and dirty/writeback pages over time; for fixed-work
//! workloads also elapsed and allocation stall time by policy, and the
//! writes by size.

use std::path::{Path, PathBuf};

use plotters::prelude::*;

use super::report::RunResult;
use crate::CliError;

const COLORS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(255, 127, 14),
    RGBColor(23, 190, 207),
];

fn color(policy: &str) -> RGBColor {
    match policy {
        "offload" => COLORS[0],
        "legacy" => COLORS[1],
        "no-throttle" => COLORS[2],
        "kernel" => COLORS[3],
        _ => COLORS[4],
    }
}

fn plot_err(path: &Path, e: impl std::fmt::Display) -> CliError {
    CliError::Check(format!("drawing {}: {e}", path.display()))
}

/// The boxed legend of a chart's labelled series.
fn legend<'a, CT: plotters::coord::CoordTranslate>(
    chart: &mut ChartContext<'a, SVGBackend<'a>, CT>,
    position: SeriesLabelPosition,
    path: &Path,
) -> Result<(), CliError> {
    chart
        .configure_series_labels()
        .border_style(BLACK)
        .background_style(WHITE.mix(0.8))
        .position(position)
        .draw()
        .map_err(|e| plot_err(path, e))
}

/// "Nines" of a quantile: 1 = p90, 2 = p99, 3 = p99.9; capped at 5.
fn nines(q: f64) -> f64 {
    if q >= 1.0 {
        5.0
    } else {
        (-(1.0 - q).log10()).min(5.0)
    }
}

/// Draws one latency CDF chart; `pick` selects each run's CDF (skipped if empty).
fn cdf_chart(
    path: &Path,
    title: &str,
    runs: &[&RunResult],
    pick: impl Fn(&RunResult) -> Option<&Vec<[f64; 2]>>,
) -> Result<bool, CliError> {
    let series: Vec<(&str, Vec<(f64, f64)>)> = runs
        .iter()
        .filter_map(|r| {
            let c = pick(r)?;
            (!c.is_empty()).then(|| {
                (
                    r.policy.as_str(),
                    c.iter().map(|p| (p[0].max(1.0), nines(p[1]))).collect(),
                )
            })
        })
        .collect();
    if series.is_empty() {
        return Ok(false);
    }
    let lo = series
        .iter()
        .flat_map(|(_, s)| s.iter().map(|p| p.0))
        .fold(f64::INFINITY, f64::min)
        .max(1.0);
    let hi = series
        .iter()
        .flat_map(|(_, s)| s.iter().map(|p| p.0))
        .fold(1.0, f64::max)
        .max(lo * 10.0);
    let root = SVGBackend::new(path, (900, 520)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| plot_err(path, e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(44)
        .y_label_area_size(60)
        .build_cartesian_2d((lo * 0.8..hi * 1.25).log_scale(), 0.0..5.2)
        .map_err(|e| plot_err(path, e))?;
    chart
        .configure_mesh()
        .x_desc("latency (log scale)")
        .x_label_formatter(&|x: &f64| super::report::ns(x.round() as u64))
        .y_desc("percentile")
        .y_label_formatter(&|y: &f64| match y.round() as i64 {
            0 => "p0".into(),
            1 => "p90".into(),
            2 => "p99".into(),
            3 => "p99.9".into(),
            4 => "p99.99".into(),
            5 => "max".into(),
            _ => String::new(),
        })
        .y_labels(6)
        .draw()
        .map_err(|e| plot_err(path, e))?;
    for (policy, pts) in series {
        let c = color(policy);
        chart
            .draw_series(LineSeries::new(pts, c.stroke_width(2)))
            .map_err(|e| plot_err(path, e))?
            .label(policy)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2)));
    }
    legend(&mut chart, SeriesLabelPosition::UpperLeft, path)?;
    root.present().map_err(|e| plot_err(path, e))?;
    Ok(true)
}

/// Throughput (top) and dirty + writeback pages (bottom) over time.
fn timeline_chart(path: &Path, title: &str, runs: &[&RunResult]) -> Result<bool, CliError> {
    if runs.iter().all(|r| r.timeline.is_empty()) {
        return Ok(false);
    }
    let t_max = runs
        .iter()
        .flat_map(|r| r.timeline.iter().map(|p| p.t))
        .fold(0.1, f64::max);
    let ops_max = runs
        .iter()
        .flat_map(|r| r.timeline.iter().map(|p| p.ops_per_sec))
        .fold(1.0, f64::max);
    let pages_max = runs
        .iter()
        .flat_map(|r| {
            r.timeline
                .iter()
                .map(|p| (p.dirty_pages + p.writeback_pages) as f64)
        })
        .fold(1.0, f64::max);
    let root = SVGBackend::new(path, (900, 760)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| plot_err(path, e))?;
    let root = root
        .titled(title, ("sans-serif", 20))
        .map_err(|e| plot_err(path, e))?;
    let (top, bottom) = root.split_vertically(360);
    let mut c1 = ChartBuilder::on(&top)
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..t_max, 0.0..ops_max * 1.1)
        .map_err(|e| plot_err(path, e))?;
    c1.configure_mesh()
        .x_desc("seconds")
        .y_desc("ops/s")
        .y_label_formatter(&|y: &f64| super::report::si(*y))
        .draw()
        .map_err(|e| plot_err(path, e))?;
    for r in runs {
        let c = color(&r.policy);
        c1.draw_series(LineSeries::new(
            r.timeline.iter().map(|p| (p.t, p.ops_per_sec)),
            c.stroke_width(2),
        ))
        .map_err(|e| plot_err(path, e))?
        .label(r.policy.as_str())
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2)));
    }
    legend(&mut c1, SeriesLabelPosition::MiddleRight, path)?;
    let mut c2 = ChartBuilder::on(&bottom)
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..t_max, 0.0..pages_max * 1.1)
        .map_err(|e| plot_err(path, e))?;
    c2.configure_mesh()
        .x_desc("seconds")
        .y_desc("pages (solid: dirty, dashed: writeback)")
        .y_label_formatter(&|y: &f64| super::report::si(*y))
        .draw()
        .map_err(|e| plot_err(path, e))?;
    for r in runs {
        let c = color(&r.policy);
        c2.draw_series(LineSeries::new(
            r.timeline.iter().map(|p| (p.t, p.dirty_pages as f64)),
            c.stroke_width(2),
        ))
        .map_err(|e| plot_err(path, e))?
        .label(format!("{} dirty", r.policy))
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2)));
        c2.draw_series(DashedLineSeries::new(
            r.timeline.iter().map(|p| (p.t, p.writeback_pages as f64)),
            6,
            4,
            c.stroke_width(1),
        ))
        .map_err(|e| plot_err(path, e))?;
    }
    legend(&mut c2, SeriesLabelPosition::MiddleRight, path)?;
    root.present().map_err(|e| plot_err(path, e))?;
    Ok(true)
}

/// Writes every plot for `runs` into `dir`; returns the files written.
pub fn all(dir: &Path, runs: &[RunResult]) -> Result<Vec<PathBuf>, CliError> {
    let mut workloads: Vec<&str> = Vec::new();
    for r in runs {
        if !workloads.contains(&r.workload.as_str()) {
            workloads.push(&r.workload);
        }
    }
    let mut out = Vec::new();
    for w in workloads {
        let rs: Vec<&RunResult> = runs.iter().filter(|r| r.workload == w).collect();
        let p = dir.join(format!("latency-{w}.svg"));
        if cdf_chart(&p, &format!("{w}: latency CDF, all operations"), &rs, |r| {
            Some(&r.cdf)
        })? {
            out.push(p);
        }
        let mut roles: Vec<&str> = Vec::new();
        for r in &rs {
            for k in r.roles.keys() {
                if !roles.contains(&k.as_str()) {
                    roles.push(k);
                }
            }
        }
        if roles.len() > 1 {
            for role in roles {
                let p = dir.join(format!("latency-{w}-{role}.svg"));
                if cdf_chart(&p, &format!("{w}: latency CDF, {role}"), &rs, |r| {
                    r.roles.get(role).map(|x| &x.cdf)
                })? {
                    out.push(p);
                }
            }
        }
        if rs.iter().any(|r| r.work == "fixed") {
            let p = dir.join(format!("fixed-{w}.svg"));
            fixed_chart(&p, &format!("{w}: time for the fixed work"), &rs)?;
            out.push(p);
            let p = dir.join(format!("wsize-{w}.svg"));
            if write_size_chart(&p, &format!("{w}: writes by size"), &rs)? {
                out.push(p);
            }
        }
        let p = dir.join(format!("timeline-{w}.svg"));
        if timeline_chart(
            &p,
            &format!("{w}: throughput and dirty pages over time"),
            &rs,
        )? {
            out.push(p);
        }
    }
    Ok(out)
}

/// Horizontal bars, one per run, of `value(run)` (runs where it is `None`
/// are left out); returns whether anything was drawn.
fn bars(
    area: &DrawingArea<SVGBackend, plotters::coord::Shift>,
    path: &Path,
    what: &str,
    runs: &[&RunResult],
    value: impl Fn(&RunResult) -> Option<f64>,
) -> Result<(), CliError> {
    let vals: Vec<(&str, f64)> = runs
        .iter()
        .filter_map(|r| Some((r.policy.as_str(), value(r)?)))
        .collect();
    let max = vals.iter().map(|v| v.1).fold(1e-6, f64::max);
    let n = vals.len().max(1);
    let mut chart = ChartBuilder::on(area)
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(10)
        .build_cartesian_2d(0.0..max * 1.15, 0.0..n as f64)
        .map_err(|e| plot_err(path, e))?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .disable_y_axis()
        .x_desc(what)
        .draw()
        .map_err(|e| plot_err(path, e))?;
    chart
        .draw_series(vals.iter().enumerate().map(|(i, (p, v))| {
            let c = color(p);
            Rectangle::new([(0.0, i as f64 + 0.15), (*v, i as f64 + 0.85)], c.filled())
        }))
        .map_err(|e| plot_err(path, e))?;
    // Each bar named at its base, with its value.
    chart
        .draw_series(vals.iter().enumerate().map(|(i, (p, v))| {
            Text::new(
                format!("{p}: {v:.2}"),
                (max * 0.01, i as f64 + 0.62),
                ("sans-serif", 14).into_font().color(&BLACK),
            )
        }))
        .map_err(|e| plot_err(path, e))?;
    Ok(())
}

/// Elapsed time and allocation stall time by policy, side by side.
fn fixed_chart(path: &Path, title: &str, runs: &[&RunResult]) -> Result<(), CliError> {
    let root = SVGBackend::new(path, (900, 360)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| plot_err(path, e))?;
    let root = root
        .titled(title, ("sans-serif", 20))
        .map_err(|e| plot_err(path, e))?;
    let (left, right) = root.split_horizontally(450);
    bars(&left, path, "elapsed (s)", runs, |r| Some(r.elapsed_secs))?;
    bars(&right, path, "allocation stall (s)", runs, |r| {
        r.alloc_stall_ns.map(|n| n as f64 / 1e9)
    })?;
    root.present().map_err(|e| plot_err(path, e))?;
    Ok(())
}

/// Writes by size class, one line per policy (share of that policy's
/// writes); returns whether any policy had a histogram.
fn write_size_chart(path: &Path, title: &str, runs: &[&RunResult]) -> Result<bool, CliError> {
    let series: Vec<(&str, Vec<(f64, f64)>)> = runs
        .iter()
        .filter_map(|r| {
            let h = r.writeback.size_histogram.as_ref()?;
            let total: u64 = h.iter().map(|x| x[1]).sum();
            (total > 0).then(|| {
                (
                    r.policy.as_str(),
                    h.iter()
                        .enumerate()
                        .map(|(i, x)| (i as f64, x[1] as f64 / total as f64))
                        .collect(),
                )
            })
        })
        .collect();
    if series.is_empty() {
        return Ok(false);
    }
    let classes = series.iter().map(|s| s.1.len()).max().unwrap_or(1);
    let root = SVGBackend::new(path, (900, 420)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| plot_err(path, e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(44)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..(classes - 1).max(1) as f64, 0.0..1.05)
        .map_err(|e| plot_err(path, e))?;
    chart
        .configure_mesh()
        .x_desc("write size (up to)")
        .x_labels(classes)
        .x_label_formatter(&|x: &f64| super::report::bytes((4096u64 << x.round() as u32) as f64))
        .y_desc("share of writes")
        .draw()
        .map_err(|e| plot_err(path, e))?;
    for (policy, pts) in series {
        let c = color(policy);
        chart
            .draw_series(LineSeries::new(pts.clone(), c.stroke_width(2)))
            .map_err(|e| plot_err(path, e))?
            .label(policy)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2)));
        chart
            .draw_series(pts.into_iter().map(|p| Circle::new(p, 3, c.filled())))
            .map_err(|e| plot_err(path, e))?;
    }
    legend(&mut chart, SeriesLabelPosition::UpperRight, path)?;
    root.present().map_err(|e| plot_err(path, e))?;
    Ok(true)
}
