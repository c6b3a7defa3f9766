//! A short fuzzing run of every target on each test run; `thanos-fuzz` runs the long ones.

use fuzz::{Target, fuzz};

#[test]
fn every_target_survives_a_short_run() {
    let corpus = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    for target in Target::ALL {
        let report = fuzz(target, 3_000, 7, &corpus);
        assert_eq!(report.executions, 3_000, "{}", target.name());
        assert!(
            report.crashes.is_empty(),
            "{}: {:?}",
            target.name(),
            report
                .crashes
                .first()
                .map(|(input, msg)| (msg, input.len()))
        );
    }
}
