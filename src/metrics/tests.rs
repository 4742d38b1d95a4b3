//! Metric names, label sets and values as `/metrics` shows them.

use std::time::Duration;

use nodewright_scheduling::instance_type::CapacityType;
use nodewright_scheduling::resources::Resources;

use super::*;

fn metrics() -> Metrics {
    Metrics::new().expect("metrics register")
}

fn line_with<'a>(text: &'a str, name: &str, fragments: &[&str]) -> Option<&'a str> {
    text.lines().find(|line| {
        line.starts_with(&format!("{name}{{")) && fragments.iter().all(|f| line.contains(f))
    })
}

#[test]
fn counters_appear_with_karpenters_names_and_labels() {
    let m = metrics();
    m.node_created("default");
    m.node_created("default");
    m.node_terminated("default", Duration::from_secs(12));
    m.machine_created(REASON_PROVISIONING, "default");
    m.machine_terminated("emptiness", "default");
    m.machine_launched("default");
    m.machine_registered("default");
    m.machine_initialized("default");
    let text = m.encode().expect("encodes");
    // v0.31's names: no `_total` suffix on its counters.
    assert!(text.contains("# TYPE karpenter_nodes_created counter"));
    assert_eq!(
        line_with(
            &text,
            "karpenter_nodes_created",
            &[r#"provisioner="default""#]
        ),
        Some(r#"karpenter_nodes_created{nodepool="",provisioner="default"} 2"#)
    );
    assert!(text.contains("# TYPE karpenter_nodes_termination_time_seconds summary"));
    assert_eq!(
        line_with(
            &text,
            "karpenter_nodes_termination_time_seconds",
            &[r#"quantile="0.5""#]
        ),
        Some(
            r#"karpenter_nodes_termination_time_seconds{provisioner="default",quantile="0.5"} 12"#
        )
    );
    assert!(
        line_with(
            &text,
            "karpenter_machines_created",
            &[r#"reason="provisioning""#, r#"provisioner="default""#]
        )
        .is_some()
    );
    for name in [
        "karpenter_nodes_terminated",
        "karpenter_machines_terminated",
        "karpenter_machines_launched",
        "karpenter_machines_registered",
        "karpenter_machines_initialized",
    ] {
        assert!(
            line_with(&text, name, &[r#"provisioner="default""#]).is_some(),
            "{name} missing in\n{text}"
        );
    }
}

#[test]
fn durations_and_cloud_provider_errors_are_recorded() {
    let m = metrics();
    m.observe_scheduling(Duration::from_millis(30));
    let ice = CloudProviderError::InsufficientCapacity {
        message: "none left".into(),
        offerings: Vec::new(),
    };
    m.observe_cloudprovider_call(
        "provisioning",
        "Create",
        "aws",
        Duration::from_millis(800),
        Some(&ice),
    );
    m.observe_cloudprovider_call("provisioning", "Create", "aws", Duration::ZERO, None);
    let text = m.encode().expect("encodes");
    assert!(text.contains("karpenter_provisioner_scheduling_duration_seconds_count 1"));
    assert!(
        text.contains("karpenter_provisioner_scheduling_duration_seconds_bucket{le=\"0.05\"} 1")
    );
    let count = line_with(
        &text,
        "karpenter_cloudprovider_duration_seconds_count",
        &[
            r#"controller="provisioning""#,
            r#"method="Create""#,
            r#"provider="aws""#,
        ],
    );
    assert!(count.is_some_and(|l| l.ends_with(" 2")), "{text}");
    assert_eq!(
        line_with(
            &text,
            "karpenter_cloudprovider_errors_total",
            &[r#"error="InsufficientCapacityError""#, r#"method="Create""#]
        )
        .map(|l| l.ends_with(" 1")),
        Some(true)
    );
}

#[test]
fn pods_state_counts_pods_alike_and_drops_series_nobody_matches() {
    let m = metrics();
    let pending = PodStateLabels {
        namespace: "shop".into(),
        phase: "Pending".into(),
        ..PodStateLabels::default()
    };
    let running = PodStateLabels {
        provisioner: "default".into(),
        capacity_type: "spot".into(),
        phase: "Running".into(),
        ..pending.clone()
    };
    m.set_pods_state(&[(pending.clone(), 3), (running.clone(), 2)].into());
    let series = |text: &str| -> Vec<String> {
        text.lines()
            .filter(|l| l.starts_with("karpenter_pods_state{"))
            .map(str::to_string)
            .collect()
    };
    let text = m.encode().expect("encodes");
    let first = series(&text);
    assert_eq!(first.len(), 2, "{text}");
    for label in POD_STATE_LABELS {
        assert!(first[0].contains(&format!("{label}=")), "{label} missing");
    }
    let running_line = first
        .iter()
        .find(|l| l.contains(r#"phase="Running""#))
        .expect("a Running series");
    assert!(running_line.ends_with(" 2"), "{running_line}");
    // All five pods now run: the Pending series goes.
    m.set_pods_state(&[(running, 5)].into());
    let after = series(&m.encode().expect("encodes"));
    assert_eq!(after.len(), 1, "{after:?}");
    assert!(after[0].contains(r#"phase="Running""#) && after[0].ends_with(" 5"));
}

#[test]
fn provisioner_gauges_are_in_kubernetes_units_and_forgotten_with_the_provisioner() {
    let m = metrics();
    let limits = Resources::default().with("cpu", 1_000_000);
    let usage = Resources::cpu_memory(250_000, 1 << 30);
    m.set_provisioner_resources("default", &limits, &usage);
    m.set_cost_per_hour("default", CapacityType::Spot, 0.42);
    let text = m.encode().expect("encodes");
    let cpu = [r#"provisioner="default""#, r#"resource_type="cpu""#];
    assert_eq!(
        line_with(&text, "karpenter_provisioner_limit", &cpu),
        Some(r#"karpenter_provisioner_limit{provisioner="default",resource_type="cpu"} 1000"#)
    );
    assert!(
        line_with(&text, "karpenter_provisioner_usage", &cpu).is_some_and(|l| l.ends_with(" 250"))
    );
    assert!(
        line_with(&text, "karpenter_provisioner_usage_pct", &cpu)
            .is_some_and(|l| l.ends_with(" 25"))
    );
    assert!(
        line_with(
            &text,
            "nodewright_provisioner_cost_per_hour",
            &[r#"capacity_type="spot""#, r#"provisioner="default""#]
        )
        .is_some_and(|l| l.ends_with(" 0.42"))
    );
    m.set_provisioner_resources("default", &limits, &Resources::default().with("cpu", 1000));
    let text = m.encode().expect("encodes");
    assert!(
        line_with(
            &text,
            "karpenter_provisioner_usage",
            &[r#"resource_type="memory""#]
        )
        .is_none(),
        "memory usage went to zero and its series with it"
    );
    m.forget_provisioner("default");
    let text = m.encode().expect("encodes");
    assert!(!text.contains(r#"provisioner="default""#), "{text}");
}

#[test]
fn node_gauges_carry_the_nodes_labels_and_drop_gone_nodes() {
    let m = metrics();
    let node = NodeResources {
        name: "ip-192-168-0-4.ec2.internal".into(),
        labels: [
            (labels::PROVISIONER_NAME.to_string(), "default".to_string()),
            (labels::CAPACITY_TYPE.to_string(), "spot".to_string()),
            (
                "karpenter.k8s.aws/instance-family".to_string(),
                "m5".to_string(),
            ),
        ]
        .into(),
        allocatable: Resources::default().with("cpu", 1930).with("pods", 29),
        capacity: Resources::default().with("cpu", 2000).with("pods", 29),
        pod_requests: Resources::default().with("cpu", 1500),
        daemon_requests: Resources::default().with("cpu", 100),
        ..NodeResources::default()
    };
    m.set_node_resources(std::slice::from_ref(&node));
    let text = m.encode().expect("encodes");
    let cpu = [
        r#"resource_type="cpu""#,
        r#"node_name="ip-192-168-0-4.ec2.internal""#,
    ];
    let allocatable = line_with(&text, "karpenter_nodes_allocatable", &cpu).unwrap_or_default();
    assert!(allocatable.ends_with(" 1.93"), "{allocatable}");
    for label in [
        r#"provisioner="default""#,
        r#"capacity_type="spot""#,
        r#"instance_family="m5""#,
        r#"zone="""#,
    ] {
        assert!(allocatable.contains(label), "{label} in {allocatable}");
    }
    for (name, value) in [
        ("karpenter_nodes_total_pod_requests", " 1.5"),
        ("karpenter_nodes_total_daemon_requests", " 0.1"),
        ("karpenter_nodes_system_overhead", " 0.07"),
    ] {
        let line = line_with(&text, name, &cpu).unwrap_or_default();
        assert!(line.ends_with(value), "{name}: {line}");
    }
    m.set_node_resources(&[]);
    let text = m.encode().expect("encodes");
    assert!(!text.contains("ip-192-168-0-4"), "{text}");
}
