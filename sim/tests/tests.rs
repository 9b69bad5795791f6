//! The simulated set checked against the real `mongodb` driver, so that mabel's tests built on
//! it can trust what it says about failover, duplicates and reads. One test binary, a module
//! per theme.

mod binary;
mod by_itself;
mod collections;
mod driver;
mod elections;
mod index_builds;
mod replica_set;
mod retryable_writes;
mod streaming;
mod write_concern;
