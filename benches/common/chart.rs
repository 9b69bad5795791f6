//! SVG charts of a benchmark's own results, drawn by the run that measured them, so that the
//! pictures in the README never disagree with `benches/results.md`.
//!
//! Two shapes are enough: grouped horizontal bars (one group per scenario, one bar per writer)
//! and lines on log-log axes (time against backlog size). plotters draws them with its SVG
//! backend alone; text is left to the viewer's fonts, so no font crate is built.

use std::path::PathBuf;

use plotters::prelude::*;

const WIDTH: u32 = 900;
const FONT: &str = "sans-serif";
/// Colour-blind-safe (Okabe-Ito), in the order the series come.
const COLOURS: [RGBColor; 5] = [
    RGBColor(0, 114, 178),
    RGBColor(230, 159, 0),
    RGBColor(0, 158, 115),
    RGBColor(204, 121, 167),
    RGBColor(86, 180, 233),
];

/// Bars: for each group, one value (or none) per series.
pub struct Bars<'a> {
    pub title: &'a str,
    pub x_label: &'a str,
    pub groups: Vec<String>,
    pub series: Vec<(String, Vec<Option<f64>>)>,
}

/// Lines through points `(x, y)` on log-log axes, and a horizontal target line.
pub struct Lines<'a> {
    pub title: &'a str,
    pub x_label: &'a str,
    pub y_label: &'a str,
    pub series: Vec<(String, Vec<(f64, f64)>)>,
    pub target: Option<(f64, String)>,
}

/// `benches/<name>.svg`.
pub fn path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("benches/{name}.svg"))
}

/// Draws `bars` to `benches/<name>.svg`, printing where, or why it could not.
pub fn bars(name: &str, bars: &Bars) {
    report(name, draw_bars(name, bars));
}

/// Draws `lines` to `benches/<name>.svg`, printing where, or why it could not.
pub fn lines(name: &str, lines: &Lines) {
    report(name, draw_lines(name, lines));
}

fn report(name: &str, drawn: Result<(), Box<dyn std::error::Error>>) {
    match drawn {
        Ok(()) => println!("wrote {}", path(name).display()),
        Err(e) => eprintln!("could not draw {}: {e}", path(name).display()),
    }
}

fn draw_bars(name: &str, bars: &Bars) -> Result<(), Box<dyn std::error::Error>> {
    // Each group: a row for its name, then a row a bar.
    let per_group = bars.series.len() + 1;
    let rows = (bars.groups.len() * per_group) as f64;
    let height = 110 + (rows * 20.0) as u32;
    let path = path(name);
    let root = SVGBackend::new(&path, (WIDTH, height)).into_drawing_area();
    root.fill(&WHITE)?;
    let largest = bars
        .series
        .iter()
        .flat_map(|(_, values)| values.iter().flatten())
        .fold(0.0_f64, |a, &b| a.max(b));
    let mut chart = ChartBuilder::on(&root)
        .caption(bars.title, (FONT, 20))
        .margin(14)
        .x_label_area_size(45)
        .y_label_area_size(8)
        .build_cartesian_2d(0.0..largest * 1.15, rows..0.0)?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .light_line_style(TRANSPARENT)
        .y_labels(0)
        .x_desc(bars.x_label)
        .label_style((FONT, 13))
        .draw()?;
    let titles = bars.groups.iter().enumerate().map(|(g, group)| {
        let row = (g * per_group) as f64;
        Text::new(
            group.clone(),
            (0.0, row + 0.2),
            (FONT, 14).into_font().style(FontStyle::Bold),
        )
    });
    chart.draw_series(titles)?;
    for (s, (label, values)) in bars.series.iter().enumerate() {
        let colour = COLOURS[s % COLOURS.len()];
        let row = |g: usize| (g * per_group + s + 1) as f64;
        let rects = values.iter().enumerate().filter_map(|(g, v)| {
            v.map(|v| Rectangle::new([(0.0, row(g) + 0.1), (v, row(g) + 0.9)], colour.filled()))
        });
        chart
            .draw_series(rects)?
            .label(label.as_str())
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], colour.filled()));
        let numbers = values.iter().enumerate().filter_map(|(g, v)| {
            v.map(|v| {
                Text::new(
                    format!("{v:.2}"),
                    (v + largest * 0.006, row(g) + 0.2),
                    (FONT, 12),
                )
            })
        });
        chart.draw_series(numbers)?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK.mix(0.3))
        .label_font((FONT, 13))
        .draw()?;
    root.present()?;
    Ok(())
}

fn draw_lines(name: &str, lines: &Lines) -> Result<(), Box<dyn std::error::Error>> {
    let path = path(name);
    let root = SVGBackend::new(&path, (WIDTH, 520)).into_drawing_area();
    root.fill(&WHITE)?;
    let points = lines.series.iter().flat_map(|(_, p)| p.iter());
    let (mut x_min, mut x_max, mut y_min, mut y_max) = (f64::MAX, 0.0_f64, f64::MAX, 0.0_f64);
    for &(x, y) in points {
        (x_min, x_max) = (x_min.min(x), x_max.max(x));
        (y_min, y_max) = (y_min.min(y), y_max.max(y));
    }
    if let Some((target, _)) = lines.target {
        (y_min, y_max) = (y_min.min(target), y_max.max(target));
    }
    let mut chart = ChartBuilder::on(&root)
        .caption(lines.title, (FONT, 20))
        .margin(16)
        .x_label_area_size(45)
        .y_label_area_size(70)
        .build_cartesian_2d(
            (x_min / 2.0..x_max * 2.0).log_scale(),
            // Headroom above the highest point for the legend.
            (y_min / 2.0..y_max * 20.0).log_scale(),
        )?;
    chart
        .configure_mesh()
        .x_desc(lines.x_label)
        .y_desc(lines.y_label)
        .x_label_formatter(&|x| super::thousands(x.round() as u64))
        .y_label_formatter(&|y| format!("{y}"))
        .label_style((FONT, 13))
        .draw()?;
    if let Some((target, label)) = &lines.target {
        let grey = RGBColor(120, 120, 120);
        chart
            .draw_series(DashedLineSeries::new(
                [(x_min / 2.0, *target), (x_max * 2.0, *target)],
                6,
                4,
                grey.stroke_width(1),
            ))?
            .label(label.as_str())
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 14, y)], grey));
    }
    for (s, (label, points)) in lines.series.iter().enumerate() {
        let colour = COLOURS[s % COLOURS.len()];
        chart
            .draw_series(LineSeries::new(
                points.iter().copied(),
                colour.stroke_width(2),
            ))?
            .label(label.as_str())
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 14, y)], colour.stroke_width(2)));
        chart.draw_series(points.iter().map(|&p| Circle::new(p, 4, colour.filled())))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK.mix(0.3))
        .label_font((FONT, 13))
        .draw()?;
    root.present()?;
    Ok(())
}
