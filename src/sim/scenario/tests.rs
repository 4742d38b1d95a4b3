//! Scenario parsing, the report's exit code and the instance counting, without a cluster.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use super::report::{NodeReport, Report, StepReport};
use super::steps::{StepFailure, humanize};
use super::*;
use crate::clock::ManualClock;
use crate::cloudprovider::fake::FakeCloudProvider;
use crate::cloudprovider::{CloudProvider, LaunchRequest, MachineId};

/// A fresh directory holding `files`.
fn dir_with(files: &[(&str, &str)]) -> PathBuf {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "nodewright-scenario-unit-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).expect("a temporary directory");
    for (name, text) in files {
        std::fs::write(dir.join(name), text).expect("a fixture file");
    }
    dir
}

fn parse(text: &str) -> Result<Scenario, ScenarioError> {
    let dir = dir_with(&[]);
    Scenario::parse(&dir.join("scenario.yaml"), text)
}

fn error(text: &str) -> ScenarioError {
    parse(text).expect_err("the scenario is refused")
}

fn step_of(error: &ScenarioError) -> Option<(usize, &str)> {
    error.step.as_ref().map(|(n, action)| (*n, action.as_str()))
}

#[test]
fn every_step_kind_parses_with_its_defaults() {
    let scenario = parse(
        "steps:\n\
         - apply: {apiVersion: v1, kind: Namespace, metadata: {name: team}}\n\
         - scale: {deployment: inflate, replicas: 4}\n\
         - delete: {kind: deployment, name: inflate}\n\
         - delete: {kind: Provisioner, name: default}\n\
         - wait: 1m30s\n\
         - until: {podsRunning: 4, managedNodes: 1}\n",
    )
    .expect("a valid scenario");
    assert_eq!(scenario.region, "us-east-1");
    let labels: Vec<&str> = scenario.steps.iter().map(|s| s.label.as_str()).collect();
    assert_eq!(
        labels,
        [
            "apply Namespace team",
            "scale default/inflate to 4",
            "delete Deployment default/inflate",
            "delete Provisioner default",
            "wait 1m30s",
            "until podsRunning=4, managedNodes=1",
        ]
    );
    match &scenario.steps[3].action {
        Action::Delete { namespace, .. } => assert_eq!(namespace, &None),
        other => panic!("expected a delete, got {other:?}"),
    }
    match &scenario.steps[4].action {
        Action::Wait(duration) => assert_eq!(*duration, Duration::from_secs(90)),
        other => panic!("expected a wait, got {other:?}"),
    }
    match &scenario.steps[5].action {
        Action::Until(until) => {
            assert_eq!(until.timeout, DEFAULT_UNTIL_TIMEOUT);
            assert_eq!(
                until.conditions,
                [(Count::PodsRunning, 4), (Count::ManagedNodes, 1)]
            );
        }
        other => panic!("expected an until, got {other:?}"),
    }
}

#[test]
fn a_large_apply_is_summed_up_by_kind_in_its_line() {
    let mut text = String::new();
    for i in 0..1000 {
        text += &format!("---\napiVersion: v1\nkind: Pod\nmetadata: {{name: p{i}}}\n");
    }
    text += "---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\n";
    let dir = dir_with(&[
        ("many.yaml", &text),
        (
            "few.yaml",
            "apiVersion: v1\nkind: Pod\nmetadata: {name: only}\n",
        ),
    ]);
    let scenario = Scenario::parse(
        &dir.join("scenario.yaml"),
        "steps:\n- apply: many.yaml\n- apply: few.yaml\n",
    )
    .expect("a valid scenario");
    let notes: Vec<String> = scenario
        .steps
        .iter()
        .map(|step| {
            let Action::Apply(objects) = &step.action else {
                panic!("expected an apply");
            };
            let done: Vec<(&str, &ApplyObject)> =
                objects.iter().map(|object| ("created", object)).collect();
            super::steps::applied_note(&done)
        })
        .collect();
    assert_eq!(
        notes,
        [
            "created 1000 Pods, created 1 Deployment",
            "created Pod default/only"
        ]
    );
}

#[test]
fn apply_reads_multi_document_files_lists_and_inline_objects() {
    let dir = dir_with(&[(
        "both.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\n\
         apiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: ConfigMap, metadata: {name: b, namespace: other}}\n",
    )]);
    let scenario = Scenario::parse(
        &dir.join("scenario.yaml"),
        "steps:\n- apply: [both.yaml, {apiVersion: v1, kind: ConfigMap, metadata: {name: c}}]\n",
    )
    .expect("a valid scenario");
    let Action::Apply(objects) = &scenario.steps[0].action else {
        panic!("expected an apply");
    };
    let described: Vec<String> = objects.iter().map(ApplyObject::describe).collect();
    assert_eq!(
        described,
        [
            "ConfigMap default/a",
            "ConfigMap other/b",
            "ConfigMap default/c"
        ]
    );
    assert_eq!(
        scenario.steps[0].label,
        "apply both.yaml, ConfigMap default/c"
    );
}

#[test]
fn an_unknown_step_names_file_step_and_the_word() {
    let error = error("steps:\n- wait: 1s\n- scal: {deployment: inflate, replicas: 1}\n");
    assert_eq!(step_of(&error), Some((2, "scal")));
    let text = error.to_string();
    assert!(text.contains("scenario.yaml: step 2 (scal)"), "{text}");
    assert!(text.contains("unknown step \"scal\""), "{text}");
}

#[test]
fn unknown_keys_are_refused_at_every_level() {
    let top = error("region: us-east-1\nstep: []\n");
    assert_eq!(step_of(&top), None);
    assert!(top.reason.contains("unknown field `step`"), "{top}");

    let scale = error("steps:\n- scale: {deployment: inflate, replica: 1}\n");
    assert_eq!(step_of(&scale), Some((1, "scale")));
    assert!(scale.reason.contains("unknown field `replica`"), "{scale}");

    let until = error("steps:\n- until: {podsrunning: 1}\n");
    assert!(
        until.reason.contains("unknown field `podsrunning`"),
        "{until}"
    );

    let two = error("steps:\n- {wait: 1s, until: {nodes: 1}}\n");
    assert!(two.reason.contains("exactly one action"), "{two}");
}

#[test]
fn durations_need_a_unit() {
    let bare = error("steps:\n- wait: 90\n");
    assert_eq!(step_of(&bare), Some((1, "wait")));
    assert!(bare.reason.contains("not a duration"), "{bare}");
    let unit = error("steps:\n- until: {nodes: 1, timeout: 5x}\n");
    assert!(unit.reason.contains("timeout"), "{unit}");
    assert!(unit.reason.contains("unknown unit"), "{unit}");
}

#[test]
fn settings_are_taken_by_karpenters_names_and_bad_values_refused() {
    let scenario = parse(
        "settings:\n  BIND_PODS: true\n  batchIdleDuration: 2s\n  aws.tags: {team: ml}\nsteps: []\n",
    )
    .expect("valid settings");
    assert_eq!(scenario.settings["BIND_PODS"], "true");
    assert_eq!(scenario.settings["aws.tags"], r#"{"team":"ml"}"#);

    let bad = error("settings:\n  BATCH_IDLE_DURATION: soon\nsteps: []\n");
    assert_eq!(step_of(&bad), None);
    assert!(bad.reason.starts_with("settings:"), "{bad}");
    assert!(bad.reason.contains("soon"), "{bad}");
    let gate = error("settings:\n  FEATURE_GATES: Teleport=true\nsteps: []\n");
    assert!(gate.reason.contains("Teleport"), "{gate}");
    let list = error("settings:\n  batchMaxDuration: [1, 2]\nsteps: []\n");
    assert!(list.reason.contains("batchMaxDuration"), "{list}");
}

#[test]
fn an_until_needs_something_to_count() {
    let error = error("steps:\n- until: {timeout: 1m}\n");
    assert!(error.reason.contains("at least one of"), "{error}");
}

#[test]
fn missing_files_and_unserved_kinds_are_named() {
    let missing = error("steps:\n- apply: nowhere.yaml\n");
    assert_eq!(step_of(&missing), Some((1, "apply")));
    assert!(missing.reason.contains("nowhere.yaml"), "{missing}");

    let kind =
        error("steps:\n- apply: {apiVersion: example.com/v1, kind: Widget, metadata: {name: w}}\n");
    assert!(
        kind.reason.contains("serves no example.com/v1 Widget"),
        "{kind}"
    );

    let nameless = error("steps:\n- apply: {apiVersion: v1, kind: ConfigMap, metadata: {}}\n");
    assert!(nameless.reason.contains("metadata.name"), "{nameless}");

    let delete = error("steps:\n- delete: {kind: Widget, name: w}\n");
    assert!(delete.reason.contains("Widget"), "{delete}");

    let nodes = error("nodes: absent.yaml\n");
    assert!(nodes.reason.contains("absent.yaml"), "{nodes}");

    let prices = error("prices: absent.json\n");
    assert!(prices.reason.contains("absent.json"), "{prices}");
}

#[test]
fn scenario_nodes_become_ready_with_allocatable() {
    let dir = dir_with(&[(
        "nodes.yaml",
        "apiVersion: v1\nkind: Node\nmetadata: {name: n1}\nstatus:\n  capacity: {cpu: '4', memory: 16Gi, pods: '110'}\n  conditions: [{type: Ready, status: 'False'}]\n",
    )]);
    let scenario =
        Scenario::parse(&dir.join("s.yaml"), "nodes: nodes.yaml\n").expect("a valid scenario");
    let node = &scenario.nodes[0];
    assert_eq!(node["status"]["allocatable"]["cpu"], "4");
    let conditions = node["status"]["conditions"].as_array().expect("conditions");
    assert_eq!(conditions.len(), 1);
    assert_eq!(conditions[0]["status"], "True");

    let empty = dir_with(&[(
        "nodes.yaml",
        "apiVersion: v1\nkind: Node\nmetadata: {name: n1}\n",
    )]);
    let error = Scenario::parse(&empty.join("s.yaml"), "nodes: nodes.yaml\n")
        .expect_err("a node without capacity is refused");
    assert!(error.reason.contains("status.capacity"), "{error}");
}

#[test]
fn the_tutorial_scenario_resolves_its_files() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/tutorial/scenario.yaml");
    let scenario = Scenario::load(&path).expect("the tutorial scenario parses");
    assert_eq!(scenario.steps.len(), 6);
    assert!(scenario.prices.is_none());
}

#[test]
fn the_scale_scenario_resolves_its_files() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/scale/scenario.yaml");
    let scenario = Scenario::load(&path).expect("the scale scenario parses");
    assert_eq!(scenario.steps.len(), 6);
}

fn step(failure: Option<StepFailure>) -> StepReport {
    StepReport {
        step: "s".into(),
        ok: failure.is_none(),
        at: 0.0,
        error: None,
        failure,
    }
}

fn report(steps: Vec<StepReport>) -> Report {
    Report {
        nodes: Vec::new(),
        pending_pods: Vec::new(),
        launched: 0,
        terminated: 0,
        cost_per_hour: 0.0,
        unpriced_nodes: 0,
        simulated_seconds: 0.0,
        steps,
    }
}

fn node_priced(name: &str, price_per_hour: Option<f64>) -> NodeReport {
    NodeReport {
        name: name.into(),
        instance_type: Some("m5.large".into()),
        zone: Some("us-east-1a".into()),
        capacity_type: Some("spot".into()),
        provisioner: Some("default".into()),
        price_per_hour,
        price_estimated: false,
        pods: vec!["default/web-0".into()],
    }
}

#[test]
fn a_summary_with_unpriced_nodes_says_so_beside_the_known_cost() {
    let mut partial = report(Vec::new());
    partial.nodes = vec![node_priced("a", Some(0.0345)), node_priced("b", None)];
    partial.cost_per_hour = 0.0345;
    partial.unpriced_nodes = 1;
    let first_line = partial
        .text()
        .lines()
        .next()
        .unwrap_or_default()
        .to_string();
    assert!(
        first_line.ends_with("; $0.0345/hour + 1 node(s) at an unknown price"),
        "{first_line}"
    );
    let row_b = partial
        .text()
        .lines()
        .nth(2)
        .unwrap_or_default()
        .to_string();
    assert!(
        row_b.contains(" - "),
        "an unpriced node's price is a dash: {row_b}"
    );

    let mut priced = report(Vec::new());
    priced.nodes = vec![node_priced("a", Some(0.0345))];
    priced.cost_per_hour = 0.0345;
    assert!(
        priced
            .text()
            .lines()
            .next()
            .unwrap_or_default()
            .ends_with("; $0.0345/hour")
    );

    let mut estimated = report(Vec::new());
    estimated.nodes = vec![NodeReport {
        price_estimated: true,
        ..node_priced("a", Some(0.0345))
    }];
    estimated.cost_per_hour = 0.0345;
    let text = estimated.text();
    let mut lines = text.lines();
    let (summary, row) = (
        lines.next().unwrap_or_default(),
        lines.next().unwrap_or_default(),
    );
    assert!(
        summary.ends_with("; $0.0345/hour (spot estimated)"),
        "{summary}"
    );
    assert!(row.contains("~$0.0345/h est."), "{row}");
}

#[test]
fn the_first_real_failure_decides_the_exit_code() {
    assert_eq!(report(vec![step(None), step(None)]).exit_code(), 0);
    let timed_out = StepFailure::TimedOut("t".into());
    let refused = StepFailure::Refused("r".into());
    assert_eq!(
        report(vec![
            step(Some(timed_out)),
            step(Some(StepFailure::Skipped))
        ])
        .exit_code(),
        1
    );
    assert_eq!(report(vec![step(None), step(Some(refused))]).exit_code(), 2);
}

#[test]
fn durations_print_as_written() {
    assert_eq!(humanize(Duration::from_secs(300)), "5m");
    assert_eq!(humanize(Duration::from_secs(90)), "1m30s");
    assert_eq!(humanize(Duration::from_secs(20)), "20s");
    assert_eq!(humanize(Duration::from_millis(1500)), "1.5s");
}

#[tokio::test]
async fn the_observed_cloud_counts_launches_and_terminations() {
    let clock = Arc::new(ManualClock::fixed());
    let fake = FakeCloudProvider::from_catalog("us-east-1", None, clock).expect("the catalog");
    let observed = ObservedCloud::new(Arc::new(fake));
    let request = LaunchRequest {
        machine_name: "m1".into(),
        machine_uid: "uid-1".into(),
        provisioner_name: "default".into(),
        instance_types: vec!["m5.large".into()],
        ..LaunchRequest::default()
    };
    let instance = observed.create(&request).await.expect("a launch");
    observed.list().await.expect("a list");
    assert_eq!((observed.launched(), observed.terminated()), (1, 0));
    observed
        .delete(&MachineId::new("m1", Some(instance.provider_id)))
        .await
        .expect("a termination");
    observed.list().await.expect("a list");
    observed.list().await.expect("a list");
    assert_eq!((observed.launched(), observed.terminated()), (1, 1));
}

#[test]
fn step_lines_are_stamped_with_simulated_seconds() {
    assert_eq!(report::stamp(32.0), "[  32.0s]");
}
