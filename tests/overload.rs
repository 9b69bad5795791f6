//! An overloaded server, as servers from 8.2 on refuse work: errors labelled
//! `SystemOverloadedError` and `RetryableError` (the client-backpressure specification). A
//! 7.0 server never sends them, so the test puts them on through `failCommand`'s
//! `errorLabels`, as the specification's own tests do. The driver retries an error with both
//! labels itself, twice more, then returns it; mabel waits it out like a missing primary.

use std::time::Duration;

use crate::support::mabel::{assert_stored_exactly_once, Mabel};
use crate::support::target::{FailPoint, Mode, Target};

const WATCHDOG: Duration = Duration::from_secs(60);

/// 462 IngressRequestRateLimitExceeded, the specification's example of an overload error.
const RATE_LIMITED: i32 = 462;

#[test]
fn an_overloaded_server_is_waited_out_and_every_breath_stored_once() {
    // Both labels: each of mabel's attempts is three sends, the driver's two retries
    // included; one label: the driver leaves it to mabel at once.
    for (labels, sends_per_attempt) in [
        (&["SystemOverloadedError", "RetryableError"][..], 3),
        (&["SystemOverloadedError"][..], 1),
        (&["RetryableError"][..], 1),
    ] {
        let target = Target::start();
        let primary = target.wait_for_primary(WATCHDOG);
        let refused_attempts = 2;
        let overloaded = FailPoint::fail_command(
            &["insert"],
            Mode::Times(refused_attempts * sends_per_attempt),
        )
        .error_code(RATE_LIMITED)
        .error_labels(labels)
        .app_name("mabel");
        let args = [
            "run",
            "--interval",
            "0.05",
            "--count",
            "5",
            "--db",
            target.db(),
        ];
        let mut mabel = Mabel::start(&target.uri(), &args);
        mabel.wait_for_breaths(2, WATCHDOG);
        let guard = target.fail_point(primary, overloaded);
        let outcome = mabel.finish(WATCHDOG);

        assert_eq!(outcome.code, Some(0), "{labels:?}: {outcome:#?}");
        assert!(!outcome.stderr.contains("panicked"), "{}", outcome.stderr);
        assert_eq!(
            guard.times_entered(),
            i64::from(refused_attempts * sends_per_attempt)
        );
        let slow: Vec<u32> = outcome
            .confirmed()
            .iter()
            .map(|c| c.attempts)
            .filter(|&a| a > 1)
            .collect();
        assert_eq!(
            slow,
            [3],
            "{labels:?}: one breath, two refused attempts: {outcome:#?}"
        );
        let warnings: Vec<&str> = outcome
            .stderr
            .lines()
            .filter(|l| l.contains("Warning"))
            .collect();
        assert_eq!(warnings.len(), 2, "{}", outcome.stderr);
        for label in labels {
            assert!(warnings[0].contains(label), "{}", warnings[0]);
        }
        assert_stored_exactly_once(&outcome, &target.breaths());
        assert_eq!(target.breaths().len(), 5);
    }
}
