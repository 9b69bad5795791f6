//! One breath: the document the seed writes every second.
//!
//! The `_id` is made here, on the client, before any attempt to write, so that every retry
//! sends the same document and a duplicate-key error can prove an earlier attempt landed.

use bson::oid::ObjectId;
use bson::{doc, Document};
use chrono::{DateTime, Utc};

#[derive(Clone, Debug, PartialEq)]
pub struct Breath {
    pub id: ObjectId,
    pub time: DateTime<Utc>,
    pub oxygen: f64,
}

impl Breath {
    /// Measures a breath now. The oxygen is random, as in the seed's test rig.
    pub fn new() -> Breath {
        Breath::at(Utc::now(), rand::random())
    }

    /// A breath taken at `time`. BSON keeps milliseconds, so the time is cut to milliseconds
    /// here and the breath in memory is exactly the breath in the database.
    pub fn at(time: DateTime<Utc>, oxygen: f64) -> Breath {
        let time = bson::DateTime::from_chrono(time).to_chrono();
        Breath {
            id: ObjectId::new(),
            time,
            oxygen,
        }
    }

    pub fn to_document(&self) -> Document {
        doc! {
            "_id": self.id,
            "time": bson::DateTime::from_chrono(self.time),
            "oxygen": self.oxygen,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn document_has_the_seeds_shape() {
        let breath = Breath::new();
        let doc = breath.to_document();
        let keys: Vec<&str> = doc.keys().map(String::as_str).collect();
        assert_eq!(keys, ["_id", "time", "oxygen"]);
        assert_eq!(doc.get_object_id("_id").unwrap(), breath.id);
        assert_eq!(doc.get_datetime("time").unwrap().to_chrono(), breath.time);
        let oxygen = doc.get_f64("oxygen").unwrap();
        assert!((0.0..1.0).contains(&oxygen));
    }

    #[test]
    fn every_breath_has_its_own_id() {
        assert_ne!(Breath::new().id, Breath::new().id);
    }

    #[test]
    fn time_is_kept_to_the_millisecond() {
        let time = DateTime::parse_from_rfc3339("2026-11-25T16:00:00.123456789Z")
            .unwrap()
            .with_timezone(&Utc);
        let breath = Breath::at(time, 0.5);
        assert_eq!(breath.time.timestamp_subsec_nanos(), 123_000_000);
    }
}
