//! `nodewright simulate`'s scenario runner against the simulated cluster and the fake cloud,
//! with no controller or a stand-in one: steps, reports, exit codes and the controller hook.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use kube::ResourceExt;
use kube::api::{Api, ListParams, PostParams};
use nodewright::clock;
use nodewright::cloudprovider::{LaunchRequest, MachineId};
use nodewright::sim::scenario::{
    Action, ControllerHook, ControllerParts, OutputFormat, Pacing, Report, Scenario, ScenarioError,
    Simulation, SimulationOptions,
};
use serde_json::{Value, json};
use tokio::time::timeout;

// The AWS tests' moto fixtures (VPC, subnets, security group per test), used as they are.
#[allow(dead_code)]
#[path = "aws/support/mod.rs"]
mod aws_support;

#[path = "sim_scenario/aws.rs"]
mod aws;

/// A safety net for a whole run; never a synchronisation device.
const PATIENCE: Duration = Duration::from_secs(300);

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/sim_scenario")
        .join(name)
}

/// A fresh directory holding `files`.
fn dir_with(files: &[(&str, &str)]) -> PathBuf {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "nodewright-sim-scenario-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).expect("a temporary directory");
    for (name, text) in files {
        std::fs::write(dir.join(name), text).expect("a fixture file");
    }
    dir
}

fn options(speed: f64, output: OutputFormat) -> SimulationOptions {
    SimulationOptions {
        pacing: Pacing::RealTime { speed },
        output,
        ..SimulationOptions::default()
    }
}

/// Runs `scenario` to the end; returns the report and what was printed.
async fn simulate(
    scenario: Scenario,
    options: SimulationOptions,
    controller: Option<ControllerHook>,
) -> (Report, String) {
    let mut out = Vec::new();
    let report = timeout(
        PATIENCE,
        Simulation::new(scenario, options).run(controller, &mut out),
    )
    .await
    .expect("the simulation ends")
    .expect("the simulation runs");
    (report, String::from_utf8(out).expect("UTF-8 output"))
}

fn load(path: &Path) -> Scenario {
    Scenario::load(path).unwrap_or_else(|error| panic!("{error}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_that_fit_run_on_the_scenarios_nodes_and_the_json_report_lists_them() {
    let (report, printed) = simulate(
        load(&fixture("fits.yaml")),
        options(60.0, OutputFormat::Json),
        None,
    )
    .await;
    assert_eq!(report.exit_code(), 0, "{printed}");

    let json: Value = serde_json::from_str(&printed).expect("one JSON object");
    let steps = json["steps"].as_array().expect("steps");
    let names: Vec<&str> = steps.iter().filter_map(|s| s["step"].as_str()).collect();
    assert_eq!(
        names,
        [
            "apply deployment.yaml",
            "scale default/inflate to 3",
            "until podsRunning=3"
        ]
    );
    assert!(steps.iter().all(|s| s["ok"] == json!(true)), "{printed}");
    assert!(steps.iter().all(|s| s["at"].is_number()), "{printed}");

    let nodes = json["nodes"].as_array().expect("nodes");
    let node_names: Vec<&str> = nodes.iter().filter_map(|n| n["name"].as_str()).collect();
    assert_eq!(
        node_names,
        ["ip-10-0-1-5.ec2.internal", "ip-10-0-2-7.ec2.internal"]
    );
    let first = &nodes[0];
    assert_eq!(first["instanceType"], "m5.large");
    assert_eq!(first["zone"], "us-east-1a");
    assert_eq!(first["provisioner"], Value::Null, "not nodewright's node");
    // No capacity-type label: priced on-demand from the scenario's price file.
    assert_eq!(first["pricePerHour"], json!(0.096));
    let pods: Vec<&str> = nodes
        .iter()
        .flat_map(|n| n["pods"].as_array().into_iter().flatten())
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(pods.len(), 3, "{printed}");
    assert!(
        pods.iter().all(|p| p.starts_with("default/inflate-")),
        "{pods:?}"
    );
    assert_eq!(json["pendingPods"], json!([]));
    assert_eq!(json["launched"], json!(0));
    assert_eq!(json["terminated"], json!(0));
    assert_eq!(json["costPerHour"], json!(0.192));
    assert_eq!(json["unpricedNodes"], json!(0));
    assert!(json["simulatedSeconds"].as_f64().is_some_and(|s| s >= 0.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_output_stamps_each_step_with_simulated_time() {
    let (report, printed) = simulate(
        load(&fixture("fits.yaml")),
        options(60.0, OutputFormat::Text),
        None,
    )
    .await;
    assert_eq!(report.exit_code(), 0, "{printed}");
    let lines: Vec<&str> = printed.lines().collect();
    let stamped = |suffix: &str| {
        lines
            .iter()
            .any(|line| line.starts_with('[') && line.contains("s] ") && line.ends_with(suffix))
    };
    assert!(stamped("until podsRunning=3: ok"), "{printed}");
    assert!(
        stamped("apply deployment.yaml: ok (created Deployment default/inflate)"),
        "{printed}"
    );
    assert!(stamped("scale default/inflate to 3: ok"), "{printed}");
    assert!(
        printed.contains("ip-10-0-1-5.ec2.internal") && printed.contains("$0.1920/hour"),
        "the summary lists nodes and cost: {printed}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_until_that_cannot_be_met_times_out_and_skips_the_rest() {
    let (report, printed) = simulate(
        load(&fixture("overflows.yaml")),
        options(120.0, OutputFormat::Json),
        None,
    )
    .await;
    assert_eq!(report.exit_code(), 1, "{printed}");
    let json: Value = serde_json::from_str(&printed).expect("one JSON object");
    let outcomes: Vec<(String, bool)> = json["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .map(|s| {
            (
                s["step"].as_str().unwrap_or_default().to_string(),
                s["ok"] == json!(true),
            )
        })
        .collect();
    assert_eq!(
        outcomes,
        [
            ("apply deployment.yaml".to_string(), true),
            ("scale default/inflate to 5".to_string(), true),
            ("until podsRunning=4, pendingPods=1".to_string(), true),
            ("until podsRunning=5".to_string(), false),
            ("scale default/inflate to 0".to_string(), false),
        ]
    );
    let until = &json["steps"][3];
    let error = until["error"].as_str().unwrap_or_default();
    assert!(error.contains("timed out after 20s"), "{error}");
    assert!(error.contains("podsRunning=4"), "{error}");
    let settled = json["steps"][2]["at"].as_f64().unwrap_or_default();
    assert!(
        until["at"].as_f64().is_some_and(|at| at >= settled + 20.0),
        "the timeout is simulated time: {printed}"
    );
    // The fifth pod never found room, and the skipped scale-down left the others running.
    assert_eq!(json["pendingPods"].as_array().map(Vec::len), Some(1));
}

#[test]
fn malformed_scenarios_name_file_step_and_reason() {
    let cases = [
        (
            "steps:\n  - apply: ok.yaml\n  - scael: {deployment: inflate, replicas: 1}\n",
            "step 2 (scael)",
            "unknown step",
        ),
        (
            "steps:\n  - apply: missing.yaml\n",
            "step 1 (apply)",
            "missing.yaml",
        ),
        (
            "steps:\n  - wait: 90 seconds\n",
            "step 1 (wait)",
            "invalid duration",
        ),
        (
            "steps:\n  - until: {podsRunning: 1, timeout: soon}\n",
            "step 1 (until)",
            "timeout",
        ),
    ];
    let ok = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n";
    for (text, step, reason) in cases {
        let dir = dir_with(&[("scenario.yaml", text), ("ok.yaml", ok)]);
        let path = dir.join("scenario.yaml");
        let error: ScenarioError = Scenario::load(&path).expect_err("a malformed scenario");
        let message = error.to_string();
        assert!(
            message.starts_with(&format!("{}: {step}: ", path.display())),
            "{message}"
        );
        assert!(message.contains(reason), "{message}");
    }
    assert_eq!(ScenarioError::EXIT_CODE, 2);
}

#[test]
fn the_tutorial_scenario_parses_and_resolves_its_files() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/tutorial/scenario.yaml");
    let scenario = load(&path);
    let applied: Vec<String> = scenario
        .steps
        .iter()
        .filter_map(|step| match &step.action {
            Action::Apply(objects) => Some(objects.iter().map(|o| o.describe())),
            _ => None,
        })
        .flatten()
        .collect();
    assert_eq!(
        applied,
        ["Provisioner default", "Deployment default/inflate"]
    );
    let labels: Vec<&str> = scenario.steps.iter().map(|s| s.label.as_str()).collect();
    assert_eq!(
        labels[2..],
        [
            "scale default/inflate to 4",
            "until podsRunning=4",
            "scale default/inflate to 0",
            "until managedNodes=0"
        ]
    );
}

/// A stand-in controller: creates a node, then waits for the end and says it stopped.
fn node_creating_hook(stopped: Arc<AtomicBool>) -> ControllerHook {
    Box::new(move |parts: ControllerParts| {
        Box::pin(async move {
            let node: Node = serde_json::from_value(json!({
                "metadata": {"name": "made-by-the-hook"},
            }))
            .expect("a node");
            Api::<Node>::all(parts.client.clone())
                .create(&PostParams::default(), &node)
                .await
                .expect("the hook's client works");
            parts.stopped().await;
            stopped.store(true, Ordering::SeqCst);
        })
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_controller_hook_runs_with_a_working_client_and_is_stopped_at_the_end() {
    let dir = dir_with(&[(
        "scenario.yaml",
        "steps:\n  - until: {nodes: 1, timeout: 10m}\n",
    )]);
    let kubeconfig = dir.join("kubeconfig");
    let stopped = Arc::new(AtomicBool::new(false));
    let options = SimulationOptions {
        write_kubeconfig: Some(kubeconfig.clone()),
        ..options(60.0, OutputFormat::Json)
    };
    let (report, printed) = simulate(
        load(&dir.join("scenario.yaml")),
        options,
        Some(node_creating_hook(stopped.clone())),
    )
    .await;
    assert_eq!(report.exit_code(), 0, "{printed}");
    let names: Vec<&str> = report.nodes.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(names, ["made-by-the-hook"]);
    assert!(stopped.load(Ordering::SeqCst), "the hook saw the end");
    let written = std::fs::read_to_string(&kubeconfig).expect("a kubeconfig was written");
    assert!(written.contains("server: http://127.0.0.1:"), "{written}");
}

/// A stand-in controller that launches one instance, waits until its node registered and a
/// minute passed, then terminates it.
fn launching_hook() -> ControllerHook {
    Box::new(|parts: ControllerParts| {
        Box::pin(async move {
            let request = LaunchRequest {
                machine_name: "default-abc12".into(),
                machine_uid: "uid-abc12".into(),
                provisioner_name: "default".into(),
                instance_types: vec!["m5.large".into()],
                ..LaunchRequest::default()
            };
            let instance = parts.cloud.create(&request).await.expect("a launch");
            let nodes: Api<Node> = Api::all(parts.client.clone());
            let name = instance.hostname.clone().expect("a private DNS name");
            loop {
                let listed = nodes.list(&ListParams::default()).await.expect("nodes");
                if listed.items.iter().any(|n| n.name_any() == name) {
                    break;
                }
                tokio::select! {
                    () = parts.stopped() => return,
                    () = tokio::time::sleep(Duration::from_millis(20)) => {}
                }
            }
            clock::sleep(parts.clock.as_ref(), Duration::from_secs(60)).await;
            parts
                .cloud
                .delete(&MachineId::new("default-abc12", Some(instance.provider_id)))
                .await
                .expect("a termination");
            parts.stopped().await;
        })
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_launched_through_the_hooks_cloud_become_nodes_and_are_counted() {
    let prices = std::fs::read_to_string(fixture("prices.json")).expect("the price fixture");
    let dir = dir_with(&[
        ("prices.json", &prices),
        (
            "scenario.yaml",
            "prices: prices.json\nsteps:\n  - until: {managedNodes: 1, timeout: 10m}\n  - until: {managedNodes: 0, timeout: 10m}\n",
        ),
    ]);
    let running = Simulation::new(
        load(&dir.join("scenario.yaml")),
        options(60.0, OutputFormat::Json),
    )
    .start(Some(launching_hook()))
    .await
    .expect("the simulation starts");
    let mut out = Vec::new();
    let steps = timeout(PATIENCE, running.run_steps(&mut out))
        .await
        .expect("the steps end");
    assert!(steps.iter().all(|s| s.ok), "{steps:?}");
    let report = running.report(steps).await.expect("a report");
    assert_eq!((report.launched, report.terminated), (1, 1));
    assert!(report.nodes.is_empty(), "{:?}", report.nodes);
    // The boot delay (30 s simulated) passed before the node counted.
    assert!(report.steps[0].at >= 30.0, "{:?}", report.steps);
    running.stop().await.expect("the simulation stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_launched_node_reports_its_offering_and_price() {
    let prices = std::fs::read_to_string(fixture("prices.json")).expect("the price fixture");
    let dir = dir_with(&[
        ("prices.json", &prices),
        (
            "scenario.yaml",
            "prices: prices.json\nsteps:\n  - until: {managedNodes: 1, timeout: 10m}\n",
        ),
    ]);
    let hook: ControllerHook = Box::new(|parts: ControllerParts| {
        Box::pin(async move {
            let request = LaunchRequest {
                machine_name: "default-xyz89".into(),
                machine_uid: "uid-xyz89".into(),
                provisioner_name: "default".into(),
                instance_types: vec!["m5.large".into()],
                ..LaunchRequest::default()
            };
            parts.cloud.create(&request).await.expect("a launch");
            parts.stopped().await;
        })
    });
    let (report, printed) = simulate(
        load(&dir.join("scenario.yaml")),
        options(60.0, OutputFormat::Json),
        Some(hook),
    )
    .await;
    assert_eq!(report.exit_code(), 0, "{printed}");
    let json: Value = serde_json::from_str(&printed).expect("one JSON object");
    let node = &json["nodes"][0];
    assert_eq!(node["instanceType"], "m5.large");
    // The fake launches the cheapest offering: spot in the one zone with a spot price.
    assert_eq!(node["zone"], "us-east-1a");
    assert_eq!(node["capacityType"], "spot");
    assert_eq!(node["provisioner"], "default");
    assert_eq!(node["pricePerHour"], json!(0.04));
    assert_eq!(json["costPerHour"], json!(0.04));
    assert_eq!(json["launched"], json!(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_creates_then_replaces_and_delete_removes_custom_resources() {
    let provisioner = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/tutorial/provisioner.yaml"),
    )
    .expect("the tutorial's provisioner");
    let dir = dir_with(&[
        ("provisioner.yaml", &provisioner),
        (
            "scenario.yaml",
            "steps:\n  - apply: provisioner.yaml\n  - apply: provisioner.yaml\n  - delete: {kind: provisioner, name: default}\n",
        ),
    ]);
    let (report, printed) = simulate(
        load(&dir.join("scenario.yaml")),
        options(60.0, OutputFormat::Text),
        None,
    )
    .await;
    assert_eq!(report.exit_code(), 0, "{printed}");
    assert!(
        printed.contains("apply provisioner.yaml: ok (created Provisioner default)"),
        "{printed}"
    );
    assert!(
        printed.contains("apply provisioner.yaml: ok (replaced Provisioner default)"),
        "{printed}"
    );
    assert!(
        printed.contains("delete Provisioner default: ok"),
        "{printed}"
    );
    assert!(
        printed.contains("0 node(s)") && printed.contains("; $0.0000/hour"),
        "no nodes cost nothing (not -0): {printed}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_the_api_server_refuses_is_a_bad_scenario() {
    let dir = dir_with(&[(
        "scenario.yaml",
        "steps:\n  - scale: {deployment: absent, namespace: default, replicas: 1}\n  - wait: 1s\n",
    )]);
    let (report, printed) = simulate(
        load(&dir.join("scenario.yaml")),
        options(60.0, OutputFormat::Json),
        None,
    )
    .await;
    assert_eq!(report.exit_code(), ScenarioError::EXIT_CODE, "{printed}");
    let error = report.steps[0].error.as_deref().unwrap_or_default();
    assert!(error.contains("deployment default/absent"), "{error}");
    assert!(!report.steps[1].ok, "the wait after it is skipped");
}
