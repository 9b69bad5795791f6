//! Turns the repetitions into the table, the ratios to mabel and the verdict on each target.

use std::time::Duration;

use crate::common::{self, secs};
use crate::writers::{Writer, WRITERS};
use crate::{Fault, Rep, SCENARIOS};

/// Targets for mabel.
const OVERHEAD_MEDIAN_TARGET: Duration = Duration::from_millis(50);
const OVERHEAD_MAX_TARGET: Duration = Duration::from_millis(100);
const HANG_STALL_TARGET: Duration = Duration::from_secs(3);
/// mabel's `connectTimeoutMS` plus its heartbeat: how long the driver's streaming monitor
/// waits on a silent member before it gives up on it and frees what waits there.
const HANG_DETECTION: &str = "2.5";

pub fn describe(rep: &Rep) -> String {
    let show = |d: Option<Duration>| d.map_or("-".to_string(), |d| format!("{} s", secs(d)));
    format!(
        "{} | {} #{}: writable again after {} s, overhead {}, stall {}, lost {}, doubled {}{} ({} s)",
        SCENARIOS[rep.job.scenario].name,
        rep.job.writer.name(),
        rep.job.rep + 1,
        secs(rep.outage),
        show(rep.overhead),
        show(rep.stall),
        rep.lost,
        rep.doubled,
        rep.note
            .as_ref()
            .map(|n| format!(" [{n}]"))
            .unwrap_or_default(),
        secs(rep.took),
    )
}

struct Summary {
    recovered: usize,
    reps: usize,
    overhead: Option<Stats>,
    stall: Option<Stats>,
    lost: usize,
    doubled: usize,
    late: usize,
}

#[derive(Clone, Copy)]
struct Stats {
    median: Duration,
    p90: Duration,
    max: Duration,
}

impl Stats {
    fn of(mut values: Vec<Duration>) -> Option<Stats> {
        if values.is_empty() {
            return None;
        }
        values.sort();
        let n = values.len();
        let median = if n % 2 == 1 {
            values[n / 2]
        } else {
            (values[n / 2 - 1] + values[n / 2]) / 2
        };
        // Nearest rank.
        let p90 = values[(n * 9).div_ceil(10) - 1];
        Some(Stats {
            median,
            p90,
            max: values[n - 1],
        })
    }
}

fn summarize(results: &[Rep], scenario: usize, writer: Writer) -> Summary {
    let reps: Vec<&Rep> = results
        .iter()
        .filter(|r| r.job.scenario == scenario && r.job.writer == writer)
        .collect();
    let recovered: Vec<&&Rep> = reps.iter().filter(|r| r.overhead.is_some()).collect();
    Summary {
        recovered: recovered.len(),
        reps: reps.len(),
        overhead: Stats::of(recovered.iter().filter_map(|r| r.overhead).collect()),
        stall: Stats::of(recovered.iter().filter_map(|r| r.stall).collect()),
        lost: reps.iter().map(|r| r.lost).sum(),
        doubled: reps.iter().map(|r| r.doubled).sum(),
        late: reps.iter().map(|r| r.late).sum(),
    }
}

pub fn report(
    results: &[Rep],
    scenarios: &[usize],
    reps: usize,
    lanes: usize,
    wall: Duration,
    cpu: Duration,
) -> String {
    let mut out = common::section_heading("Failover", "make bench-failover");
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    out.push_str(&format!(
        "- {reps} repetitions per scenario and writer, {lanes} lanes at once, {} s in all; \
         the run used {} s of CPU ({:.0}% of {cpus} CPUs; load average {} when it ended)\n\n",
        wall.as_secs(),
        cpu.as_secs(),
        100.0 * cpu.as_secs_f64() / (wall.as_secs_f64() * cpus as f64),
        common::load_average(),
    ));
    out.push_str(
        "The simulated set elects by itself on mongod's timers, scaled to a 1 s election \
         timeout unless the scenario says otherwise, and the driver streams from it. Seconds. \
         overhead = first write at or after the moment the next primary took writes, minus \
         that moment: what the client adds to the set's own recovery; stall = that write minus \
         the last one before it; x mabel = median overhead over mabel's. lost and doubled are \
         totals over the repetitions.\n\n",
    );
    out.push_str(
        "| scenario | writer | recovered | overhead median | p90 | max | x mabel \
         | stall median | p90 | max | lost | doubled |\n",
    );
    out.push_str("|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    let mut targets = Vec::new();
    let mut late = 0;
    for &s in scenarios {
        let scenario = SCENARIOS[s];
        let mabel = summarize(results, s, Writer::Mabel);
        for writer in WRITERS {
            let sum = summarize(results, s, writer);
            late += sum.late;
            let stat = |stats: Option<Stats>, f: fn(&Stats) -> Duration| {
                stats.map_or("-".to_string(), |st| secs(f(&st)))
            };
            let ratio = match (sum.overhead, mabel.overhead) {
                (Some(w), Some(m)) if !m.median.is_zero() => {
                    format!("{:.1}", w.median.as_secs_f64() / m.median.as_secs_f64())
                }
                _ => "-".to_string(),
            };
            out.push_str(&format!(
                "| {} | {} | {}/{} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
                scenario.name,
                writer.name(),
                sum.recovered,
                sum.reps,
                stat(sum.overhead, |s| s.median),
                stat(sum.overhead, |s| s.p90),
                stat(sum.overhead, |s| s.max),
                ratio,
                stat(sum.stall, |s| s.median),
                stat(sum.stall, |s| s.p90),
                stat(sum.stall, |s| s.max),
                sum.lost,
                sum.doubled,
            ));
        }
        targets.extend(check_targets(results, s));
    }
    out.push_str("\nTargets for mabel:\n\n");
    for line in targets {
        out.push_str(&format!("- {line}\n"));
    }
    out.push_str("\n![failover overhead per scenario and writer](failover.svg)\n");
    if late > 0 {
        out.push_str(&format!(
            "\nWrites confirmed after the failure but before the next primary took writes: \
             {late}. Where a member died, they had reached the old primary before it failed and \
             count as before the failure; in the partition they are writes the cut-off primary \
             acknowledged on its own (the seed's, at w: 1) before it stepped down, which its \
             rollback took back: the lost column.\n"
        ));
    }
    let notes: Vec<String> = results
        .iter()
        .filter(|r| r.note.is_some())
        .map(describe)
        .collect();
    if !notes.is_empty() {
        out.push_str("\nRepetitions with a note:\n\n");
        for note in notes {
            out.push_str(&format!("- {note}\n"));
        }
    }
    out
}

fn check_targets(results: &[Rep], s: usize) -> Vec<String> {
    let scenario = SCENARIOS[s];
    let mabel = summarize(results, s, Writer::Mabel);
    let bare = summarize(results, s, Writer::Bare);
    let verdict = |ok: bool| if ok { "met" } else { "MISSED" };
    let mut lines = Vec::new();
    let all = mabel.recovered == mabel.reps;
    if bare.recovered > 0 && !all {
        lines.push(format!(
            "{}: MISSED: the bare driver recovered in {}/{} and mabel only in {}/{}",
            scenario.name, bare.recovered, bare.reps, mabel.recovered, mabel.reps
        ));
    }
    match scenario.fault {
        Fault::Hang => {
            if let (Some(stall), Some(o)) = (mabel.stall, mabel.overhead) {
                lines.push(format!(
                    "{}: stall max {} s <= {} s: {}. (Its overhead, the time still stuck on the \
                     silent member after the next primary took writes, median {} s and max {} s, \
                     is bounded by the {} s the driver's monitor waits on a silent member, not by \
                     the election; the overhead targets, {} s and {} s, are {} here.)",
                    scenario.name,
                    secs(stall.max),
                    secs(HANG_STALL_TARGET),
                    verdict(all && stall.max <= HANG_STALL_TARGET),
                    secs(o.median),
                    secs(o.max),
                    HANG_DETECTION,
                    secs(OVERHEAD_MEDIAN_TARGET),
                    secs(OVERHEAD_MAX_TARGET),
                    if o.median <= OVERHEAD_MEDIAN_TARGET && o.max <= OVERHEAD_MAX_TARGET {
                        "met even so"
                    } else {
                        "not met there and not applied"
                    }
                ));
            }
        }
        _ => {
            if let Some(o) = mabel.overhead {
                lines.push(format!(
                    "{}: overhead median {} s <= {} s: {}; max {} s <= {} s: {}",
                    scenario.name,
                    secs(o.median),
                    secs(OVERHEAD_MEDIAN_TARGET),
                    verdict(o.median <= OVERHEAD_MEDIAN_TARGET),
                    secs(o.max),
                    secs(OVERHEAD_MAX_TARGET),
                    verdict(all && o.max <= OVERHEAD_MAX_TARGET)
                ));
            }
        }
    }
    if mabel.lost + mabel.doubled > 0 {
        lines.push(format!(
            "{}: MISSED: mabel lost {} and doubled {}",
            scenario.name, mabel.lost, mabel.doubled
        ));
    }
    lines
}

/// `benches/failover.svg`: mabel's median overhead beside the other writers', per scenario.
pub fn draw(results: &[Rep], scenarios: &[usize]) {
    let series = WRITERS
        .iter()
        .map(|&writer| {
            let medians = scenarios
                .iter()
                .map(|&s| summarize(results, s, writer).overhead)
                .map(|o| o.map(|o| o.median.as_secs_f64()))
                .collect();
            (writer.name().to_string(), medians)
        })
        .collect();
    common::chart::bars(
        "failover",
        &common::chart::Bars {
            title: "Failover overhead: first write after the new primary takes writes, median",
            x_label: "seconds after the new primary takes writes",
            groups: scenarios
                .iter()
                .map(|&s| SCENARIOS[s].name.to_string())
                .collect(),
            series,
        },
    );
}
