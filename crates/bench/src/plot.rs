//! The benchmarks' plots: throughput against loss, one line per protocol
//! (the suite); latency over time (the soak).

use plotters::prelude::*;

use crate::suite::Proto;

/// Writes an SVG of Mbit/s against loss (percent) for each protocol, from
/// `(loss, [(protocol, Mbit/s)])` points on a link of `link_mbit`.
pub fn throughput_vs_loss(
    path: &std::path::Path,
    link_mbit: f64,
    points: &[(f64, Vec<(Proto, f64)>)],
) -> anyhow::Result<()> {
    let root = SVGBackend::new(path, (800, 500)).into_drawing_area();
    root.fill(&WHITE)?;
    let max_loss = points.iter().map(|(l, _)| l * 100.0).fold(1.0, f64::max);
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("Throughput against loss, {link_mbit:.0} Mbit/s link, 20 ms RTT"),
            ("sans-serif", 20),
        )
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..max_loss * 1.05, 0.0..link_mbit * 1.05)?;
    chart
        .configure_mesh()
        .x_desc("random loss each way (%)")
        .y_desc("Mbit/s")
        .draw()?;
    let protos: Vec<Proto> = crate::suite::PROTOS.to_vec();
    for (i, proto) in protos.iter().enumerate() {
        let series: Vec<(f64, f64)> = points
            .iter()
            .filter_map(|(loss, rows)| {
                rows.iter()
                    .find(|(p, _)| p == proto)
                    .map(|(_, mbit)| (loss * 100.0, *mbit))
            })
            .collect();
        if series.is_empty() {
            continue;
        }
        let color = Palette99::pick(i).to_rgba();
        chart
            .draw_series(LineSeries::new(series.clone(), color.stroke_width(2)))?
            .label(proto.label())
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], color.stroke_width(2)));
        chart.draw_series(series.iter().map(|&p| Circle::new(p, 4, color.filled())))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}

/// Writes an SVG of delivery latency (p50 and p99, ms, log scale) against
/// time (s), from `(t, p50, p99)` points, marking a server restart.
pub fn latency_over_time(
    path: &std::path::Path,
    points: &[(f64, f64, f64)],
    restart: Option<f64>,
) -> anyhow::Result<()> {
    let root = SVGBackend::new(path, (800, 500)).into_drawing_area();
    root.fill(&WHITE)?;
    let t_max = points.iter().map(|p| p.0).fold(10.0, f64::max);
    let y_max = points.iter().map(|p| p.2).fold(1.0, f64::max) * 2.0;
    let y_min = points
        .iter()
        .map(|p| p.1)
        .fold(f64::MAX, f64::min)
        .clamp(0.01, 1.0)
        / 2.0;
    let mut chart = ChartBuilder::on(&root)
        .caption("Delivery latency during the soak", ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..t_max * 1.02, (y_min..y_max).log_scale())?;
    chart
        .configure_mesh()
        .x_desc("time since sending started (s)")
        .y_desc("latency (ms)")
        .draw()?;
    for (i, (label, pick)) in [("p50", 1usize), ("p99", 2)].into_iter().enumerate() {
        let series: Vec<(f64, f64)> = points
            .iter()
            .map(|p| (p.0, if pick == 1 { p.1 } else { p.2 }))
            .collect();
        let color = Palette99::pick(i).to_rgba();
        chart
            .draw_series(LineSeries::new(series, color.stroke_width(2)))?
            .label(label)
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], color.stroke_width(2)));
    }
    if let Some(at) = restart {
        chart
            .draw_series(LineSeries::new(
                [(at, y_min), (at, y_max)],
                BLACK.stroke_width(1),
            ))?
            .label("restart")
            .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], BLACK));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}
