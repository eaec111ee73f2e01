//! What a fault test saw, for `RELIABILITY.md`: with `NODEGRID_RELIABILITY_DIR` set (as
//! `scripts/reliability.sh` does), each test that calls [`record`] writes one JSON file there;
//! the script turns them into the report's table. Without the variable nothing is written.

use std::time::Duration;

use serde_json::json;

/// One row of the report.
pub struct Outcome<'a> {
    /// The fault or attack.
    pub fault: &'a str,
    /// What happened, in a sentence.
    pub happened: String,
    /// Messages accepted (acked) and never delivered; 0 expected.
    pub lost: u64,
    /// From the fault's end to service as before.
    pub recovered_in: Option<Duration>,
    /// The test's path, e.g. `faults::a_hundred_producers_ride_out_a_redis_restart`.
    pub test: &'a str,
}

pub fn record(outcome: Outcome<'_>) {
    let Some(dir) = std::env::var_os("NODEGRID_RELIABILITY_DIR") else {
        return;
    };
    let dir = std::path::PathBuf::from(dir);
    std::fs::create_dir_all(&dir).unwrap();
    let row = json!({
        "fault": outcome.fault,
        "happened": outcome.happened,
        "lost": outcome.lost,
        "recovered_ms": outcome.recovered_in.map(|elapsed| elapsed.as_millis() as u64),
        "test": outcome.test,
    });
    std::fs::write(
        dir.join(format!("{}.json", outcome.test.replace("::", "__"))),
        row.to_string(),
    )
    .unwrap();
}
