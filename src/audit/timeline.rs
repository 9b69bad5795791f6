//! The audit's timeline: the breaths' whole span in one line of cells, each a character, so
//! that a person sees at a glance where breaths went missing, were doubled, or paused.

use super::passes::Gap;
use super::MINUTE;

/// The most characters the timeline may take; its cells widen to fit.
const MAX_CELLS: i64 = 480;
/// Cell widths in minutes, from one minute to a day; past that, whole days.
const WIDTHS: &[i64] = &[1, 2, 5, 10, 15, 30, 60, 120, 180, 360, 720, 1440];

/// One character per cell of time, from `start`.
#[derive(Debug, Default)]
pub struct Timeline {
    pub start: i64,
    pub cell: i64,
    cells: Vec<Cell>,
}

/// What a cell's character is made of.
#[derive(Clone, Debug, Default)]
struct Cell {
    breaths: u64,
    longest_gap: i64,
    lost: bool,
    doubled: bool,
}

impl Timeline {
    /// Cells from `earliest` to `latest`, as narrow as `MAX_CELLS` allows.
    pub fn spanning(earliest: Option<i64>, latest: Option<i64>) -> Timeline {
        let (Some(earliest), Some(latest)) = (earliest, latest) else {
            return Timeline::default();
        };
        let minutes = (latest - earliest) / MINUTE + 1;
        let width = WIDTHS
            .iter()
            .copied()
            .find(|w| minutes / w < MAX_CELLS)
            .unwrap_or_else(|| (minutes / MAX_CELLS / 1440 + 1) * 1440);
        let cell = width * MINUTE;
        let start = earliest.div_euclid(cell) * cell;
        let count = (latest - start) / cell + 1;
        Timeline {
            start,
            cell,
            cells: vec![Cell::default(); count as usize],
        }
    }

    /// The cell of `time`; times outside (from breaths written between the passes) go to
    /// the nearest.
    fn at(&mut self, time: i64) -> Option<&mut Cell> {
        let index = self.index(time);
        self.cells.get_mut(index)
    }

    fn index(&self, time: i64) -> usize {
        let last = self.cells.len().saturating_sub(1);
        if self.cell == 0 || time < self.start {
            return 0;
        }
        (((time - self.start) / self.cell) as usize).min(last)
    }

    /// Every cell a gap spans remembers the longest gap over it.
    pub fn touch(&mut self, gap: Gap) {
        let (from, to) = (self.index(gap.start), self.index(gap.start + gap.length));
        for cell in self.cells.iter_mut().take(to + 1).skip(from) {
            cell.longest_gap = cell.longest_gap.max(gap.length);
        }
    }

    /// A breath taken at `time`, counted once.
    pub fn count(&mut self, time: i64) {
        if let Some(cell) = self.at(time) {
            cell.breaths += 1;
        }
    }

    /// A second copy of a breath taken at `time`.
    pub fn mark_doubled(&mut self, time: i64) {
        if let Some(cell) = self.at(time) {
            cell.doubled = true;
        }
    }

    /// Breaths lost in the minute `minute` (minutes since the epoch).
    pub fn mark_lost(&mut self, minute: i64) {
        if let Some(cell) = self.at(minute * MINUTE) {
            cell.lost = true;
        }
    }

    /// `#` breaths as usual, `.` a gap longer than `gap` or no breath, `x` lost, `d` doubled.
    pub fn render(&self, gap: f64) -> String {
        self.cells
            .iter()
            .map(|cell| match cell {
                Cell { lost: true, .. } => 'x',
                Cell { doubled: true, .. } => 'd',
                Cell { breaths: 0, .. } => '.',
                Cell { longest_gap, .. } if *longest_gap as f64 > gap => '.',
                _ => '#',
            })
            .collect()
    }
}

/// A gap worth a `.`: more than twice the usual gap, and more than a second over it.
pub fn notable(usual_gap: Option<f64>) -> f64 {
    let usual = usual_gap.unwrap_or(0.0);
    (2.0 * usual).max(usual + 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_spans_get_wider_cells() {
        let day = 1440 * MINUTE;
        let timeline = Timeline::spanning(Some(0), Some(day));
        assert_eq!(timeline.cell, 5 * MINUTE);
        assert_eq!(timeline.cells.len(), 289);
        let timeline = Timeline::spanning(Some(0), Some(1000 * day));
        assert_eq!(timeline.cell, 3 * day);
    }
}
