//! The throughput-versus-concurrency plot, as SVG.

use std::path::Path;

use plotters::prelude::*;

/// One line: (concurrency, msgs/s) points.
pub struct Series {
    pub label: String,
    pub points: Vec<(f64, f64)>,
}

const COLORS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];

/// Writes msgs/s against concurrency (log2 axis), one line per series;
/// pairs of series are one backend: exactly-once thick, at-least-once
/// thinner in a lighter shade of the same colour.
pub fn throughput(path: &Path, series: &[Series]) -> Result<(), String> {
    let err = |e: &dyn std::fmt::Display| format!("plot {}: {e}", path.display());
    let points = || series.iter().flat_map(|s| s.points.iter());
    // x is log2(concurrency), labelled with the concurrency itself.
    let max_x = points().map(|p| p.0.log2()).fold(1.0, f64::max);
    let max_y = points().map(|p| p.1).fold(1.0, f64::max) * 1.1;

    let root = SVGBackend::new(path, (800, 480)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption("exactly: throughput vs concurrency", ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(40)
        .y_label_area_size(64)
        .build_cartesian_2d(-0.2..max_x + 0.2, 0.0..max_y)
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .x_desc("workers per endpoint (concurrency)")
        .y_desc("messages / s")
        .x_labels(max_x as usize + 1)
        .x_label_formatter(&|x| {
            if (x - x.round()).abs() < 1e-6 {
                format!("{:.0}", 2f64.powf(x.round()))
            } else {
                String::new()
            }
        })
        .y_label_formatter(&|y| format!("{y:.0}"))
        .draw()
        .map_err(|e| err(&e))?;
    for (i, s) in series.iter().enumerate() {
        let color = COLORS[(i / 2) % COLORS.len()];
        // Pairs of series are (exactly-once, at-least-once) of one backend.
        let style = if i % 2 == 0 {
            color.stroke_width(3)
        } else {
            color.mix(0.5).stroke_width(2)
        };
        chart
            .draw_series(LineSeries::new(
                s.points.iter().map(|&(x, y)| (x.log2(), y)),
                style,
            ))
            .map_err(|e| err(&e))?
            .label(&s.label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_an_svg() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.svg");
        let series = [
            Series {
                label: "a exactly-once".into(),
                points: vec![(1.0, 10.0), (2.0, 18.0), (4.0, 30.0)],
            },
            Series {
                label: "a at-least-once".into(),
                points: vec![(1.0, 20.0), (2.0, 35.0), (4.0, 60.0)],
            },
        ];
        throughput(&path, &series).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        assert!(svg.contains("<svg") && svg.contains("a exactly-once"));
    }
}
