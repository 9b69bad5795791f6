//! What mabel tells a person beyond each breath's `wrote` line: a line for each incident as
//! it happens, and a summary of the run when it ends.
//!
//! An incident is a breath that needed more than one attempt, or the first breath written to
//! a new primary. The second half is there because the driver retries a write once by
//! itself: a stepdown, or a crash noticed between two breaths, often costs a breath a second
//! or two but only one of mabel's attempts, and a person watching a failover wants to see it
//! all the same. A breath that was only slow, on the same primary, is not an incident.

use std::time::Duration;

use bson::oid::ObjectId;
use mongodb::options::ServerAddress;

use crate::wording::count;

/// A breath that is in the database, and what it took.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Written {
    /// Attempts made, the successful one included.
    pub attempts: u32,
    /// The last attempt met the breath's own `_id`: an earlier one had landed.
    pub already_written: bool,
    /// From the first attempt to the confirmation.
    pub waited: Duration,
}

/// The run so far.
#[derive(Debug, Default)]
pub struct Tally {
    written: u64,
    incidents: u64,
    already_written: u64,
    /// The longest a breath waited, and which breath.
    longest: Option<(Duration, ObjectId)>,
    /// The member that answered for the breaths written last, if any has.
    primary: Option<ServerAddress>,
}

impl Tally {
    /// Counts breaths confirmed by one attempt (one breath, or part of a batch) that went to
    /// `primary`. Returns the incident line to print if it was an incident: one line for the
    /// group, named by its first breath.
    pub fn add(
        &mut self,
        breaths: &[ObjectId],
        written: &Written,
        primary: Option<&ServerAddress>,
    ) -> Option<String> {
        let (&id, rest) = breaths.split_first()?;
        let before = std::mem::replace(&mut self.primary, primary.cloned());
        let before = before.as_ref();
        let n = breaths.len() as u64;
        self.written += n;
        if written.already_written {
            self.already_written += n;
        }
        if self
            .longest
            .is_none_or(|(longest, _)| written.waited > longest)
        {
            self.longest = Some((written.waited, id));
        }
        let new_primary = before.is_some() && before != primary;
        if written.attempts == 1 && !new_primary {
            return None;
        }
        self.incidents += 1;
        let more = match rest.len() {
            0 => String::new(),
            n => format!(" (and {n} more)"),
        };
        let attempts = count(u64::from(written.attempts), "attempt");
        let primary = match (before, primary) {
            (Some(before), Some(now)) if before == now => format!("primary {now} (unchanged)"),
            (before, now) => format!("primary {} -> {}", or_unknown(before), or_unknown(now)),
        };
        Some(format!(
            "incident: breath {id}{more} waited {:.3} s, {attempts}, {primary}, already written: {}",
            written.waited.as_secs_f64(),
            if written.already_written { "yes" } else { "no" },
        ))
    }

    /// One line for the end of a run: `stopped_by` names the signal that ended it, if one did.
    pub fn summary(&self, stopped_by: Option<&str>) -> String {
        let how = match stopped_by {
            Some(signal) => format!("stopped by {signal}"),
            None => String::from("done"),
        };
        let longest = match self.longest {
            Some((waited, id)) => {
                format!(", longest wait {:.3} s (breath {id})", waited.as_secs_f64())
            }
            None => String::new(),
        };
        format!(
            "{how}: {} written, {}{longest}, {} already written",
            count(self.written, "breath"),
            count(self.incidents, "incident"),
            self.already_written
        )
    }
}

fn or_unknown(address: Option<&ServerAddress>) -> String {
    address.map_or_else(|| String::from("unknown"), ToString::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn written(attempts: u32, already_written: bool, waited_ms: u64) -> Written {
        Written {
            attempts,
            already_written,
            waited: Duration::from_millis(waited_ms),
        }
    }

    fn address(port: u16) -> ServerAddress {
        ServerAddress::Tcp {
            host: "127.0.0.1".into(),
            port: Some(port),
        }
    }

    /// A tally whose last breaths went to `primary`.
    fn after(primary: &ServerAddress) -> Tally {
        Tally {
            primary: Some(primary.clone()),
            ..Tally::default()
        }
    }

    #[test]
    fn one_attempt_on_the_same_primary_is_no_incident() {
        let mut tally = Tally::default();
        let a = address(1);
        let id = ObjectId::new();
        assert_eq!(tally.add(&[id], &written(1, false, 4), Some(&a)), None);
        assert_eq!(tally.add(&[id], &written(1, false, 900), Some(&a)), None);
        assert_eq!(
            tally.summary(None),
            format!("done: 2 breaths written, 0 incidents, longest wait 0.900 s (breath {id}), 0 already written")
        );
    }

    #[test]
    fn retries_and_new_primaries_are_incidents() {
        let (a, b) = (address(1), address(2));
        let mut tally = after(&a);
        let id = ObjectId::new();
        let line = tally.add(&[id], &written(3, true, 12_105), Some(&b));
        assert_eq!(
            line.unwrap(),
            format!(
                "incident: breath {id} waited 12.105 s, 3 attempts, primary 127.0.0.1:1 -> \
                 127.0.0.1:2, already written: yes"
            )
        );
        let line = tally.add(&[id], &written(1, false, 1_500), Some(&a));
        assert!(line
            .unwrap()
            .contains("1 attempt, primary 127.0.0.1:2 -> 127.0.0.1:1,"));
        let line = tally.add(&[id], &written(2, false, 300), Some(&a));
        assert!(line.unwrap().contains("primary 127.0.0.1:1 (unchanged)"));
        let line = tally.add(&[id], &written(1, false, 300), None);
        assert!(line.unwrap().contains("primary 127.0.0.1:1 -> unknown"));
        let line = tally.add(&[id], &written(2, false, 300), None);
        assert!(line.unwrap().contains("primary unknown -> unknown"));
        assert!(tally.summary(Some("SIGINT")).starts_with(
            "stopped by SIGINT: 5 breaths written, 5 incidents, longest wait 12.105 s"
        ));
    }

    #[test]
    fn the_primary_before_is_the_one_of_the_breaths_written_last() {
        let (a, b) = (address(1), address(2));
        let mut tally = Tally::default();
        let id = ObjectId::new();
        assert_eq!(tally.add(&[id], &written(1, false, 5), None), None);
        assert_eq!(tally.add(&[id], &written(1, false, 5), Some(&a)), None);
        // No breath written: the primary before stays the one that wrote the last breaths.
        assert_eq!(tally.add(&[], &written(1, false, 5), Some(&b)), None);
        assert_eq!(tally.add(&[id], &written(1, false, 5), Some(&a)), None);
        let line = tally.add(&[id], &written(1, false, 5), Some(&b));
        assert!(line
            .unwrap()
            .contains("primary 127.0.0.1:1 -> 127.0.0.1:2,"));
    }

    #[test]
    fn an_empty_run_has_a_summary_too() {
        assert_eq!(
            Tally::default().summary(Some("SIGTERM")),
            "stopped by SIGTERM: 0 breaths written, 0 incidents, 0 already written"
        );
    }

    #[test]
    fn a_batch_is_one_incident_named_by_its_first_breath() {
        let a = address(1);
        let mut tally = after(&a);
        let ids = [ObjectId::new(), ObjectId::new(), ObjectId::new()];
        let line = tally.add(&ids, &written(2, false, 700), Some(&a));
        assert_eq!(
            line.unwrap(),
            format!(
                "incident: breath {} (and 2 more) waited 0.700 s, 2 attempts, primary \
                 127.0.0.1:1 (unchanged), already written: no",
                ids[0]
            )
        );
        assert_eq!(tally.add(&[], &written(2, true, 700), Some(&a)), None);
        assert_eq!(tally.written, 3);
        assert!(tally.summary(None).ends_with(", 0 already written"));
    }
}
