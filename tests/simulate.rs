//! `nodewright simulate` as a newcomer runs it: the tutorial scenario end to end with the
//! controller, through the binary.

use std::path::PathBuf;
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
    // As a newcomer runs it, on virtual time.
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
    // In the seed's layout: time, level, logger, message, then the fields as JSON.
    for (logger, message) in [
        ("controller.provisioning", "Launched instance: i-"),
        ("controller.node", "Added TTL to empty node"),
        (
            "controller.node",
            "Triggering termination after 30s for empty node",
        ),
        ("controller.termination", "Cordoned node"),
        ("controller.termination", "Deleted node"),
    ] {
        let line = stderr
            .lines()
            .find(|line| line.contains(&format!("\tINFO\t{logger}\t{message}")))
            .unwrap_or_else(|| panic!("{logger} {message:?} missing from:\n{stderr}"));
        let columns: Vec<&str> = line.split('\t').collect();
        assert_eq!(columns.len(), 5, "{line}");
        assert!(
            columns[0].len() == 24 && columns[0].ends_with('Z'),
            "an RFC 3339 time with milliseconds: {line}"
        );
        assert!(columns[4].starts_with("{\"commit\": "), "{line}");
    }
    assert!(stderr.contains("capacityType: spot"), "{stderr}");
    assert!(stderr.contains("hostname: ip-192-168-"), "{stderr}");
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
fn without_a_price_file_the_tutorial_prices_its_launch_from_the_embedded_list_prices() {
    let (code, stdout, stderr) = simulate(&["examples/tutorial/scenario.yaml", "-o", "json"]);
    assert_eq!(code, Some(0), "stdout: {stdout}\nstderr: {stderr}");
    let expecting = stderr
        .lines()
        .find(|line| line.contains("Created machine, expecting"))
        .unwrap_or_else(|| panic!("no machine created:\n{stderr}"));
    // The tutorial asks for spot, whose price offline is an estimate and says so.
    let price = expecting
        .split(" at ~$")
        .nth(1)
        .and_then(|rest| rest.split("/h est.").next())
        .and_then(|figure| figure.parse::<f64>().ok())
        .unwrap_or_else(|| panic!("an estimated price: {expecting}"));
    assert!(price > 0.0, "{expecting}");
    // A current-generation type, as a list price ranks it.
    let instance_type = expecting
        .split("expecting ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .unwrap_or_default();
    let generation: u32 = instance_type
        .chars()
        .skip_while(|c| !c.is_ascii_digit())
        .take_while(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .unwrap_or(0);
    assert!(generation >= 5, "{expecting}");
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

/// The tutorial's manifests, for scenarios written by the tests.
const TUTORIAL: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/tutorial");

/// Writes `text` as `name` in a scratch directory for `tag` (made if missing); returns the
/// directory (the test removes it) and the file.
fn scratch_scenario(tag: &str, name: &str, text: &str) -> (PathBuf, PathBuf) {
    let dir = std::env::temp_dir().join(format!("nodewright-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a scratch directory");
    let file = dir.join(name);
    std::fs::write(&file, text).expect("the scenario is written");
    (dir, file)
}

/// When the first controller log line carrying `message` was stamped (simulated time).
fn logged_at(stderr: &str, message: &str) -> k8s_openapi::jiff::Timestamp {
    let line = stderr
        .lines()
        .find(|line| line.contains(message))
        .unwrap_or_else(|| panic!("{message:?} missing from:\n{stderr}"));
    let stamp = line.split('\t').next().unwrap_or_default();
    stamp
        .parse()
        .unwrap_or_else(|error| panic!("{stamp:?}: {error}"))
}

/// On virtual time a run decides the same way every time, however busy the machine: three runs
/// side by side launch the same nodes at the same simulated moments, and the first launch comes
/// one batch idle window (Karpenter's 1 s) after the pods appear, as in a real cluster.
#[test]
fn the_tutorial_decides_the_same_way_run_after_run() {
    let (dir, scenario) = scratch_scenario(
        "repeat",
        "scenario.yaml",
        &format!(
            "steps:\n  - apply: {TUTORIAL}/provisioner.yaml\n  - apply: {TUTORIAL}/deployment.yaml\n\
             \x20 - scale: {{deployment: inflate, namespace: default, replicas: 4}}\n\
             \x20 - until: {{podsRunning: 4, timeout: 5m}}\n\
             \x20 - wait: 2m\n"
        ),
    );
    let path = scenario.to_str().expect("a UTF-8 path").to_string();
    let runs: Vec<_> = (0..3)
        .map(|_| {
            let path = path.clone();
            std::thread::spawn(move || simulate(&[&path, "-o", "json"]))
        })
        .collect();
    let mut reports = Vec::new();
    for run in runs {
        let (code, stdout, stderr) = run.join().expect("a run");
        assert_eq!(code, Some(0), "stdout: {stdout}\nstderr: {stderr}");
        let report: Value = serde_json::from_str(&stdout).expect("one JSON object");
        let launched = logged_at(&stderr, "Launched instance: i-");
        let started = logged_at(&stderr, "caches synced");
        let window = launched.duration_since(started).as_secs_f64();
        assert!((1.0..2.0).contains(&window), "{window} s\n{stderr}");
        reports.push(report);
    }
    let decisions = |report: &Value| {
        let nodes: Vec<_> = report["nodes"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|node| {
                (
                    node["instanceType"].clone(),
                    node["capacityType"].clone(),
                    node["zone"].clone(),
                    node["pricePerHour"].clone(),
                    node["pods"].as_array().map(Vec::len),
                )
            })
            .collect();
        (
            nodes,
            report["launched"].clone(),
            report["costPerHour"].clone(),
        )
    };
    let first = &reports[0];
    assert_eq!(first["launched"], 1, "{first}");
    assert!(
        first["costPerHour"].as_f64().unwrap_or_default() > 0.0,
        "{first}"
    );
    for report in &reports[1..] {
        assert_eq!(decisions(report), decisions(first), "{report}\n{first}");
        let at = |report: &Value| -> Vec<f64> {
            let steps = report["steps"].as_array().cloned().unwrap_or_default();
            steps.iter().filter_map(|s| s["at"].as_f64()).collect()
        };
        let (these, those) = (at(report), at(first));
        assert_eq!(these.len(), those.len());
        for (this, that) in these.iter().zip(&those) {
            assert!((this - that).abs() < 1.0, "{these:?} vs {those:?}");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Metric names a PromQL expression reads (`karpenter_…`, `nodewright_…`), with a histogram's or
/// summary's `_bucket`/`_sum`/`_count` kept: those are the series `/metrics` must carry.
fn metric_names(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = expr;
    while let Some(start) = ["karpenter_", "nodewright_"]
        .iter()
        .filter_map(|prefix| rest.find(prefix))
        .min()
    {
        let tail = &rest[start..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        names.push(tail[..end].to_string());
        rest = &tail[end..];
    }
    names
}

/// What Karpenter v0.31's capacity and performance dashboards read (from their JSON), less
/// node-exporter's series, plus the v0.31 series the issue names for its panels.
const KARPENTER_V031_DASHBOARD_METRICS: [&str; 16] = [
    "karpenter_deprovisioning_actions_performed",
    "karpenter_nodes_created",
    "karpenter_nodes_terminated",
    "karpenter_pods_state",
    "karpenter_provisioner_usage",
    "karpenter_provisioner_limit",
    "karpenter_nodes_allocatable",
    "karpenter_nodes_total_daemon_requests",
    "karpenter_nodes_total_pod_requests",
    "karpenter_nodes_termination_time_seconds",
    "karpenter_pods_startup_time_seconds",
    "controller_runtime_reconcile_time_seconds_bucket",
    "controller_runtime_reconcile_total",
    "karpenter_cloudprovider_instance_type_price_estimate",
    "karpenter_deprovisioning_eligible_machines",
    "karpenter_nodes_system_overhead",
];

#[test]
fn every_metric_a_shipped_or_karpenter_dashboard_reads_is_served_after_the_tutorial() {
    // The tutorial, then two pods again, so nodes and pods are live when the metrics are read.
    let (dir, scenario) = scratch_scenario(
        "dashboards",
        "scenario.yaml",
        &format!(
            "steps:\n  - apply: {TUTORIAL}/provisioner.yaml\n  - apply: {TUTORIAL}/deployment.yaml\n\
             \x20 - scale: {{deployment: inflate, namespace: default, replicas: 4}}\n\
             \x20 - until: {{podsRunning: 4, timeout: 5m}}\n\
             \x20 - scale: {{deployment: inflate, namespace: default, replicas: 0}}\n\
             \x20 - until: {{managedNodes: 0, timeout: 5m}}\n\
             \x20 - scale: {{deployment: inflate, namespace: default, replicas: 2}}\n\
             \x20 - until: {{podsRunning: 2, timeout: 5m}}\n"
        ),
    );
    let metrics_file = dir.join("metrics.txt");
    let (code, stdout, stderr) = simulate(&[
        scenario.to_str().expect("a UTF-8 path"),
        "--metrics",
        metrics_file.to_str().expect("a UTF-8 path"),
    ]);
    assert_eq!(code, Some(0), "stdout: {stdout}\nstderr: {stderr}");
    let served = std::fs::read_to_string(&metrics_file).expect("the metrics file");
    let mut wanted: Vec<(String, String)> = KARPENTER_V031_DASHBOARD_METRICS
        .iter()
        .map(|name| ("Karpenter v0.31".to_string(), name.to_string()))
        .collect();
    let dashboards = concat!(env!("CARGO_MANIFEST_DIR"), "/charts/nodewright/dashboards");
    for entry in std::fs::read_dir(dashboards).expect("the dashboards directory") {
        let path = entry.expect("a dashboard").path();
        let text = std::fs::read_to_string(&path).expect("a readable dashboard");
        let dashboard: Value = serde_json::from_str(&text).expect("a JSON dashboard");
        let panels = dashboard["panels"].as_array().cloned().unwrap_or_default();
        assert!(!panels.is_empty(), "{} has no panels", path.display());
        for panel in panels {
            for target in panel["targets"].as_array().cloned().unwrap_or_default() {
                let expr = target["expr"].as_str().unwrap_or_default();
                for name in metric_names(expr) {
                    wanted.push((path.display().to_string(), name));
                }
            }
        }
    }
    let missing: Vec<String> = wanted
        .iter()
        .filter(|(_, name)| {
            !served.lines().any(|line| {
                line.starts_with(&format!("{name}{{")) || line.starts_with(&format!("{name} "))
            })
        })
        .map(|(from, name)| format!("{name} (read by {from})"))
        .collect();
    assert!(missing.is_empty(), "not served: {missing:?}\n{served}");
    // Every pod that waited for a node is one startup: four, then two.
    assert!(
        served
            .lines()
            .any(|line| line == "karpenter_pods_startup_time_seconds_count 6"),
        "{served}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_simulated_controller_reads_the_controllers_environment() {
    let run = |name: &str, value: &str| {
        Command::new(env!("CARGO_BIN_EXE_nodewright"))
            .args(["simulate", "examples/tutorial/scenario.yaml", "-o", "json"])
            .env(name, value)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .expect("the binary runs")
    };
    // Karpenter's BIND_PODS, as a controller in a cluster would read it.
    let bound = run("BIND_PODS", "true");
    let stderr = String::from_utf8_lossy(&bound.stderr);
    assert_eq!(bound.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("Bound 4 pod(s) to node ip-192-168-"),
        "{stderr}"
    );
    let refused = run("FEATURE_GATES", "Teleport=true");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("unknown feature gate \"Teleport\""),
        "{stderr}"
    );
}

/// A scenario's `settings:` block switches the controller's behaviour, by Karpenter's names: a
/// lone spot node left nearly idle is replaced with a cheaper spot node only when the
/// SpotToSpotConsolidation gate is on, as in Karpenter.
#[test]
fn a_scenarios_settings_switch_spot_to_spot_consolidation() {
    let run = |gate: bool| {
        let (dir, scenario) = scratch_scenario(
            "spot",
            &format!("spot-to-spot-{gate}.yaml"),
            &format!(
                "settings:\n  FEATURE_GATES: SpotToSpotConsolidation={gate}\n\
                 steps:\n\
                 \x20 - apply:\n\
                 \x20     apiVersion: karpenter.sh/v1alpha5\n\
                 \x20     kind: Provisioner\n\
                 \x20     metadata: {{name: default}}\n\
                 \x20     spec:\n\
                 \x20       requirements: [{{key: karpenter.sh/capacity-type, operator: In, values: [spot]}}]\n\
                 \x20       provider: {{subnetSelector: {{karpenter.sh/discovery: sim}}, securityGroupSelector: {{karpenter.sh/discovery: sim}}, instanceProfile: NodeProfile}}\n\
                 \x20       consolidation: {{enabled: true}}\n\
                 \x20 - apply: {TUTORIAL}/deployment.yaml\n\
                 \x20 - scale: {{deployment: inflate, namespace: default, replicas: 10}}\n\
                 \x20 - until: {{podsRunning: 10, timeout: 5m}}\n\
                 \x20 - scale: {{deployment: inflate, namespace: default, replicas: 1}}\n\
                 \x20 - wait: 10m\n\
                 \x20 - until: {{podsRunning: 1, timeout: 5m}}\n"
            ),
        );
        let (code, stdout, stderr) = simulate(&[scenario.to_str().expect("UTF-8"), "-o", "json"]);
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(code, Some(0), "stdout: {stdout}\nstderr: {stderr}");
        let report: Value = serde_json::from_str(&stdout).expect("one JSON object");
        (report, stderr)
    };
    let (off, off_log) = run(false);
    let (on, on_log) = run(true);
    assert_eq!(off["launched"], 1, "{off}\n{off_log}");
    assert_eq!(on["launched"], 2, "{on}\n{on_log}");
    let cost = |report: &Value| report["costPerHour"].as_f64().unwrap_or_default();
    assert!(cost(&on) < cost(&off), "{on}\n{off}");
}

/// Karpenter v0.31's getting-started guide: settings in the karpenter-global-settings
/// ConfigMap, a node template without an instance profile. It runs as it did there.
#[test]
fn karpenter_v031s_guide_runs_with_its_settings_configmap() {
    let (code, stdout, stderr) = simulate(&["examples/karpenter-v0.31/scenario.yaml"]);
    assert_eq!(code, Some(0), "stdout: {stdout}\nstderr: {stderr}");
    assert!(stdout.contains("launched 1, terminated 1"), "{stdout}");
    // The keys that change nothing here say so, once each (the log is on stdout in text mode).
    assert_eq!(
        stdout.matches("aws.enablePodENI has no effect").count(),
        1,
        "{stdout}"
    );
    assert!(!stdout.contains("instanceProfile"), "{stdout}");
}
