//! mabel end to end: each test runs the real binary against the simulated replica set (or a
//! real one, with `MABEL_TEST_URI`), and checks what it printed against what was stored. One
//! test binary, a module per theme, so that the support code is compiled once.

mod support;

mod admin_commands;
mod audit;
mod audit_index;
mod bad_input;
mod catchup;
mod clean_run;
mod collections;
mod compose;
mod failing_disk;
mod failover;
mod failover_report;
mod graceful_stop;
mod lag;
mod lost_reply;
mod no_set;
mod overload;
mod partition;
mod randomized_failover;
mod refused_writes;
mod server_faults;
mod simulator;
mod spool;
mod stdout;
