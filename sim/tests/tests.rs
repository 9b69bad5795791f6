//! The simulated set checked against the real `mongodb` driver, so that mabel's tests built on
//! it can trust what it says about failover, duplicates and reads. One test binary, a module
//! per theme.

mod driver;
mod elections;
mod replica_set;
mod write_concern;
