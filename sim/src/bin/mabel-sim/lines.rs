//! How the simulator's lines read. Each event is one line with its UTC time, in mabel's own
//! format, so that the two sort together (`make demo`); every line names the set as
//! simulated, so that nobody reads it as a mongod's log.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mabel_sim::{Event, MemberStatus, Phase, ReplicaSet, Role, Timers};

use crate::cli::Options;

/// The word that starts every event line after its time, padded as `stamp` pads its label.
pub const SIM: &str = "sim";

/// `2026-12-02T10:00:02.014Z sim   member 0 (127.0.0.1:27017) was killed`.
pub fn event(event: &Event, hosts: &[String]) -> String {
    let host = hosts.get(event.member).map_or("?", String::as_str);
    let m = event.member;
    labelled(
        event.wall,
        SIM,
        &format!("member {m} ({host}) {}", event.kind),
    )
}

/// A line after its time and a label, the label padded so that the text lines up.
pub fn labelled(time: SystemTime, label: &str, text: &str) -> String {
    format!("{} {label:<5} {text}", utc(time))
}

/// What the simulator says first: that it is a simulation, that its data is in memory, and
/// how to reach it and steer it.
pub fn banner(options: &Options, set: &ReplicaSet) -> Vec<String> {
    let timers = set.timers();
    let hosts = set.hosts().join(",");
    vec![
        "mabel-sim: a simulated MongoDB 7.0 replica set, not MongoDB: its data lives in memory \
         only and is gone when it stops"
            .to_string(),
        format!(
            "mabel-sim: set {} on mongodb://{hosts}/?replicaSet={}",
            set.set_name(),
            set.set_name()
        ),
        format!("mabel-sim: {}", timing(&timers)),
        format!(
            "mabel-sim: commands, one a line, on stdin or with `mabel-sim ctl --control {} \
             COMMAND`: kill N|primary, revive N|all, hang N|primary, unhang N|all, \
             isolate N|primary, heal N|all, stepdown, lag N MS, status, quit",
            options.control.display()
        ),
    ]
}

fn timing(timers: &Timers) -> String {
    let Some(timeout) = timers.election_timeout else {
        return "no elections but those it is told to hold".to_string();
    };
    let whose = if timeout == Timers::mongod().election_timeout.unwrap_or_default() {
        "mongod's timers"
    } else {
        "mongod's timers, scaled"
    };
    format!(
        "{whose}: an election {} after the primary is last heard from (plus up to 15 %), \
         heartbeats every {}, a silent member given up on after {}",
        seconds(timeout),
        seconds(timers.heartbeat_interval),
        seconds(timers.heartbeat_timeout)
    )
}

/// The answer to `status`: the set, then a line a member.
pub fn status(set: &ReplicaSet) -> String {
    let members = set.status();
    let term = members.iter().map(|m| m.term).max().unwrap_or(0);
    let mut lines = vec![format!(
        "simulated set {} (not MongoDB), newest term {term}",
        set.set_name()
    )];
    lines.extend(members.iter().enumerate().map(|(i, m)| member(i, m)));
    lines.join("\n")
}

/// `member 1 (127.0.0.1:27018) PRIMARY, term 2, last applied 2026-...Z (Timestamp(..., 3)), 40
/// oplog entries`, with what is wrong with it, if anything.
fn member(i: usize, m: &MemberStatus) -> String {
    let state = match m.role {
        None => "down".to_string(),
        Some(Role::Primary(Phase::CatchUp)) => "PRIMARY (catching up)".to_string(),
        Some(Role::Primary(Phase::Drain)) => "PRIMARY (draining, no writes yet)".to_string(),
        Some(role) => role.name().to_string(),
    };
    let mut notes = Vec::new();
    if m.hung {
        notes.push("hung".to_string());
    }
    if m.isolated {
        notes.push("cut off from the others".to_string());
    }
    if !m.lag.is_zero() {
        notes.push(format!("lags {} ms", m.lag.as_millis()));
    }
    let notes: String = notes.iter().map(|n| format!(", {n}")).collect();
    let last = m.last_write.map_or("nothing".to_string(), |ts| {
        let when = UNIX_EPOCH + Duration::from_secs(u64::from(ts.time));
        format!(
            "{} (Timestamp({}, {}))",
            utc_seconds(when),
            ts.time,
            ts.increment
        )
    });
    format!(
        "member {i} ({}) {state}{notes}, term {}, last applied {last}, {} oplog entries",
        m.host, m.term, m.entries
    )
}

/// `10 s`, `0.2 s`.
fn seconds(d: Duration) -> String {
    format!("{} s", d.as_secs_f64())
}

/// `2026-12-02T10:00:02.014Z`, as mabel writes its times.
pub fn utc(time: SystemTime) -> String {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let (date, clock) = civil(since.as_secs());
    format!("{date}T{clock}.{:03}Z", since.subsec_millis())
}

/// `2026-12-02T10:00:02Z`.
fn utc_seconds(time: SystemTime) -> String {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let (date, clock) = civil(since.as_secs());
    format!("{date}T{clock}Z")
}

/// The date and time of day of a Unix time, in UTC (Howard Hinnant's `civil_from_days`).
fn civil(secs: u64) -> (String, String) {
    let days = (secs / 86_400) as i64;
    let of_day = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (
        format!("{year:04}-{month:02}-{day:02}"),
        format!(
            "{:02}:{:02}:{:02}",
            of_day / 3_600,
            of_day / 60 % 60,
            of_day % 60
        ),
    )
}

/// Whether `line` starts with a time as `utc` writes it; if so, that time and the rest.
pub fn leading_time(line: &str) -> Option<(&str, &str)> {
    let time = line.get(..24)?;
    let shape = time.bytes().enumerate().all(|(i, b)| match i {
        4 | 7 => b == b'-',
        10 => b == b'T',
        13 | 16 => b == b':',
        19 => b == b'.',
        23 => b == b'Z',
        _ => b.is_ascii_digit(),
    });
    let rest = line[24..].strip_prefix(' ')?;
    shape.then_some((time, rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_read_as_mabel_writes_them() {
        let at = |secs: u64, millis: u64| {
            UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_millis(millis)
        };
        assert_eq!(utc(at(0, 0)), "1970-01-01T00:00:00.000Z");
        // `date -u -d @1764669602` and a leap day.
        assert_eq!(utc(at(1_764_669_602, 14)), "2025-12-02T10:00:02.014Z");
        assert_eq!(utc(at(951_782_400, 999)), "2000-02-29T00:00:00.999Z");
        assert_eq!(utc_seconds(at(4_102_444_799, 0)), "2099-12-31T23:59:59Z");
    }

    #[test]
    fn a_leading_time_is_found_only_in_that_shape() {
        assert_eq!(
            leading_time("2026-12-02T10:00:02.014Z Warning no writable primary"),
            Some(("2026-12-02T10:00:02.014Z", "Warning no writable primary"))
        );
        assert_eq!(
            leading_time("wrote 6b0725dd time 2026-12-02T10:00:02.014Z"),
            None
        );
        assert_eq!(leading_time("2026-12-02T10:00:02Z short"), None);
        assert_eq!(leading_time(""), None);
    }
}
