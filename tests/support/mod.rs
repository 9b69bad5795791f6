//! What mabel's tests share: the binary runner (`mabel`), the Makefile run on the simulator
//! (`make`), the set a test writes to, simulated or real (`target`, `real`), spool files with
//! a backlog in them (`spool_file`), and mabel run under strace for real failing system calls
//! (`strace`).

pub mod mabel;
pub mod make;
pub mod real;
pub mod spool_file;
pub mod strace;
pub mod target;
