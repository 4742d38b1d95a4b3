//! `nodewright simulate` as a newcomer runs it: the tutorial scenario end to end with the
//! controller, through the binary.

use std::process::Command;

use serde_json::Value;

fn simulate(args: &[&str]) -> (Option<i32>, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_nodewright"))
        .arg("simulate")
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("the binary runs");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn the_tutorial_launches_one_spot_node_and_removes_it_once_empty() {
    // At the default speed, as a newcomer runs it: the scenario's 5 m timeouts are 10 s of
    // real time, room enough on a loaded machine.
    let (code, stdout, stderr) = simulate(&["examples/tutorial/scenario.yaml", "-o", "json"]);
    assert_eq!(code, Some(0), "stdout: {stdout}\nstderr: {stderr}");
    let report: Value = serde_json::from_str(&stdout).expect("one JSON object");
    assert_eq!(report["launched"], 1, "{report}\n{stderr}");
    assert_eq!(report["terminated"], 1, "{report}\n{stderr}");
    assert_eq!(report["nodes"].as_array().map(Vec::len), Some(0));
    let steps = report["steps"].as_array().cloned().unwrap_or_default();
    assert_eq!(steps.len(), 6);
    assert!(steps.iter().all(|s| s["ok"] == true), "{steps:?}");
    // The controller's own words, stamped with simulated time, on stderr in JSON mode.
    for line in [
        "Launched instance: i-",
        "capacityType: spot",
        "Added TTL to empty node",
        "Triggering termination after 30s for empty node",
        "Cordoned node",
        "Deleted node",
    ] {
        assert!(stderr.contains(line), "{line:?} missing from:\n{stderr}");
    }
}

/// The shared price table, read in place.
fn prices() -> String {
    let data = std::env::var("NODEWRIGHT_DATA")
        .unwrap_or_else(|_| format!("{}/../shared/data", env!("CARGO_MANIFEST_DIR")));
    format!("{data}/prices-us-east-1.json")
}

#[test]
fn prices_given_on_the_command_line_price_the_launch() {
    let prices = prices();
    let args = [
        "examples/tutorial/scenario.yaml",
        "--prices",
        &prices,
        "-o",
        "json",
    ];
    let (code, stdout, stderr) = simulate(&args);
    assert_eq!(code, Some(0), "stdout: {stdout}\nstderr: {stderr}");
    let report: Value = serde_json::from_str(&stdout).expect("one JSON object");
    assert_eq!(report["launched"], 1, "{report}\n{stderr}");
    let expecting = stderr
        .lines()
        .find(|line| line.contains("Created machine, expecting"))
        .unwrap_or_else(|| panic!("no machine created:\n{stderr}"));
    assert!(expecting.contains("/h"), "{expecting}");
    assert!(!expecting.contains("unknown price"), "{expecting}");
}

#[test]
fn a_missing_price_file_is_bad_input() {
    let args = [
        "examples/tutorial/scenario.yaml",
        "--prices",
        "no-such-prices.json",
    ];
    let (code, _, stderr) = simulate(&args);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("no-such-prices.json"), "{stderr}");
}

#[test]
fn a_missing_scenario_file_is_bad_input() {
    let (code, _, stderr) = simulate(&["examples/tutorial/no-such-scenario.yaml"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("no-such-scenario.yaml"), "{stderr}");
}
