//! `nodewright plan` end to end: manifests in, the plan a user reads out (the JSON contract of
//! DESIGN.md §5, the table, exit codes for bad input).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use nodewright::plan::{self, CatalogSource, ClusterInput};
use nodewright_scheduling::allocatable::AllocatableSettings;
use nodewright_scheduling::labels;
use serde_json::Value;

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// The shared price table, read in place.
fn prices() -> PathBuf {
    let data = std::env::var("NODEWRIGHT_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|_| repo("../shared/data"));
    data.join("prices-us-east-1.json")
}

fn nodewright(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_nodewright"))
        .args(args)
        .env("LOG_FORMAT", "text")
        .output()
        .expect("the nodewright binary runs")
}

fn plan_json(file: &str, extra: &[&str]) -> Value {
    let file = repo(file);
    let mut args = vec![
        "plan",
        "-f",
        file.to_str().unwrap_or_default(),
        "-o",
        "json",
    ];
    args.extend_from_slice(extra);
    let out = nodewright(&args);
    assert!(
        out.status.success(),
        "plan failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("plan -o json prints one JSON object")
}

/// The pods a JSON plan puts on new nodes, in order.
fn pods_on_new_nodes(plan: &Value) -> Vec<&str> {
    plan["nodes"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|n| n["pods"].as_array().into_iter().flatten())
        .filter_map(Value::as_str)
        .collect()
}

/// Every pod named anywhere in a JSON plan, with how often.
fn pod_mentions(plan: &Value) -> BTreeMap<String, usize> {
    let mut seen = BTreeMap::new();
    let lists = [(&plan["nodes"], "pods"), (&plan["existing"], "pods")];
    for (entries, field) in lists {
        for entry in entries.as_array().into_iter().flatten() {
            for pod in entry[field].as_array().into_iter().flatten() {
                *seen
                    .entry(pod.as_str().unwrap_or_default().to_string())
                    .or_default() += 1;
            }
        }
    }
    for entry in plan["unschedulable"].as_array().into_iter().flatten() {
        *seen
            .entry(entry["pod"].as_str().unwrap_or_default().to_string())
            .or_default() += 1;
    }
    seen
}

#[test]
fn tutorial_pods_fit_one_spot_node() {
    let prices = prices();
    let plan = plan_json(
        "examples/plan/tutorial.yaml",
        &["--prices", prices.to_str().unwrap_or_default()],
    );
    let nodes = plan["nodes"].as_array().expect("nodes is a list");
    assert_eq!(nodes.len(), 1, "4 × 1 cpu pods take one node: {plan:#}");
    let node = &nodes[0];
    assert_eq!(node["provisioner"], "default");
    assert_eq!(node["capacityType"], "spot");
    assert_eq!(node["pods"].as_array().map(Vec::len), Some(4));
    let candidates = node["instanceTypes"].as_array().expect("instanceTypes");
    assert!(!candidates.is_empty() && candidates.len() <= 60);
    assert_eq!(
        node["instanceType"], candidates[0],
        "the expected launch is the cheapest"
    );
    assert!(
        node["zone"]
            .as_str()
            .is_some_and(|z| z.starts_with("us-east-1"))
    );
    let price = node["pricePerHour"].as_f64().expect("a price");
    assert!(price > 0.0);
    assert_eq!(plan["totalPricePerHour"].as_f64(), Some(price));
    assert_eq!(plan["pricesKnown"], true);
    assert!(plan["unschedulable"].as_array().is_some_and(Vec::is_empty));
    // The provisioner names no arch or instance kinds, so Karpenter's defaults apply: amd64,
    // categories c/m/r, generation above 2 — the tutorial's images run on what is planned.
    let catalog = CatalogSource::default().load().expect("catalog loads");
    for name in candidates.iter().filter_map(Value::as_str) {
        let labels = &catalog
            .instance_types
            .iter()
            .find(|t| t.name == name)
            .expect("candidate is in the catalog")
            .labels;
        assert_eq!(labels[labels::ARCH], "amd64", "{name}");
        assert!(
            ["c", "m", "r"].contains(&labels[labels::INSTANCE_CATEGORY].as_str()),
            "{name}"
        );
        let generation: u32 = labels[labels::INSTANCE_GENERATION]
            .parse()
            .expect("a number");
        assert!(generation > 2, "{name}");
    }
}

#[test]
fn json_plan_keeps_the_contract_field_names() {
    let prices = prices();
    let plan = plan_json(
        "tests/fixtures/plan/mixed.yaml",
        &["--prices", prices.to_str().unwrap_or_default()],
    );
    for key in ["nodes", "existing", "unschedulable", "totalPricePerHour"] {
        assert!(plan.get(key).is_some(), "missing {key}: {plan:#}");
    }
    for key in [
        "provisioner",
        "instanceType",
        "instanceTypes",
        "zone",
        "capacityType",
        "pricePerHour",
        "pods",
    ] {
        assert!(plan["nodes"][0].get(key).is_some(), "node lacks {key}");
    }
    assert!(plan["existing"][0].get("node").is_some());
    assert!(plan["unschedulable"][0].get("reason").is_some());
}

#[test]
fn every_input_pod_appears_exactly_once() {
    let prices = prices();
    let plan = plan_json(
        "tests/fixtures/plan/mixed.yaml",
        &["--prices", prices.to_str().unwrap_or_default()],
    );
    let seen = pod_mentions(&plan);
    let expected = [
        "default/web-0",
        "default/small",
        "default/batch",
        "default/huge",
        "default/done",
    ];
    assert_eq!(
        seen.keys().map(String::as_str).collect::<Vec<_>>().len(),
        expected.len(),
        "{seen:?}"
    );
    for pod in expected {
        assert_eq!(seen.get(pod), Some(&1), "{pod} in {plan:#}");
    }
}

#[test]
fn pending_pod_goes_to_an_existing_node_with_room_before_a_new_one() {
    let plan = plan_json("tests/fixtures/plan/mixed.yaml", &[]);
    let existing = &plan["existing"][0];
    assert_eq!(existing["node"], "ip-10-0-1-5.ec2.internal");
    let pods: Vec<&str> = existing["pods"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(pods, ["default/web-0", "default/small"]);
    let new_pods = pods_on_new_nodes(&plan);
    assert_eq!(new_pods, ["default/batch"]);
}

#[test]
fn impossible_pod_is_explained_per_provisioner() {
    let plan = plan_json("tests/fixtures/plan/mixed.yaml", &[]);
    let huge = plan["unschedulable"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|u| u["pod"] == "default/huge")
        .expect("the 900-cpu pod is unschedulable");
    let reason = huge["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("provisioner gpu: taint nvidia.com/gpu=true:NoSchedule not tolerated"),
        "{reason}"
    );
    assert!(
        reason.contains("provisioner general:") && reason.contains("900"),
        "{reason}"
    );
}

#[test]
fn daemonset_overhead_is_reserved_on_new_nodes() {
    let input =
        ClusterInput::read_files(&[repo("tests/fixtures/plan/mixed.yaml")]).expect("fixture reads");
    let offerings = CatalogSource {
        prices: Some(prices()),
        ..CatalogSource::default()
    }
    .load()
    .expect("catalog loads");
    let report = plan::plan(&input, &offerings, &AllocatableSettings::default()).expect("plans");
    let node = &report.plan.nodes[0];
    // batch (3 cpu, 6 Gi) plus the logger daemonset (100m, 128 Mi).
    assert_eq!(node.requests.cpu_millis, 3100);
    assert_eq!(node.requests.memory_bytes, (6 << 30) + (128 << 20));
    let allocatable_of = |name: &str| {
        let t = offerings
            .instance_types
            .iter()
            .find(|t| t.name == name)
            .expect("candidate is in the catalog");
        t.allocatable(&Default::default(), &AllocatableSettings::default())
    };
    for candidate in &node.instance_types {
        assert!(
            node.requests.fits(&allocatable_of(candidate)),
            "{candidate} cannot hold {:?}",
            node.requests
        );
    }
}

#[test]
fn without_a_price_file_the_plan_prices_from_the_list_prices_and_marks_spot_estimates() {
    let plan = plan_json("examples/plan/tutorial.yaml", &[]);
    assert_eq!(plan["pricesKnown"], true);
    let total = plan["totalPricePerHour"].as_f64().unwrap_or_default();
    assert!(total > 0.0, "{plan}");
    let tutorial = repo("examples/plan/tutorial.yaml");
    let table = nodewright(&["plan", "-f", tutorial.to_str().unwrap_or_default()]);
    let text = String::from_utf8_lossy(&table.stdout);
    // The tutorial's provisioner is spot-only: every node's price is an estimate, and says so.
    assert!(text.contains(&format!("~{total:.4} est.")), "{text}");
    assert!(text.contains("estimated at 40% of on-demand"), "{text}");
}

#[test]
fn in_a_region_without_list_prices_the_plan_ranks_by_size_and_says_so() {
    let plan = plan_json("examples/plan/tutorial.yaml", &["--region", "eu-west-1"]);
    assert_eq!(plan["pricesKnown"], false);
    assert_eq!(plan["nodes"].as_array().map(Vec::len), Some(1));
    let tutorial = repo("examples/plan/tutorial.yaml");
    let table = nodewright(&[
        "plan",
        "-f",
        tutorial.to_str().unwrap_or_default(),
        "--region",
        "eu-west-1",
    ]);
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(text.contains("prices unknown"), "{text}");
    assert!(text.contains("--prices"), "{text}");
}

#[test]
fn table_shows_nodes_existing_unschedulable_and_the_lower_bound() {
    let prices = prices();
    let out = nodewright(&[
        "plan",
        "-f",
        repo("tests/fixtures/plan/mixed.yaml")
            .to_str()
            .unwrap_or_default(),
        "--prices",
        prices.to_str().unwrap_or_default(),
    ]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for expected in [
        "PROVISIONER",
        "EXISTING NODE",
        "ip-10-0-1-5.ec2.internal",
        "UNSCHEDULABLE POD",
        "default/huge",
        "provisioner general: $",
        "lower bound $",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in\n{text}");
    }
}

/// Writes `text` to a temporary file named after the test.
fn input_file(name: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("nodewright-plan-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join(format!("{name}.yaml"));
    std::fs::write(&file, text).expect("write input");
    file
}

/// Writes `text` to a temporary file named after the test and runs `plan` on it.
fn plan_on(name: &str, text: &str) -> (i32, String) {
    let file = input_file(name, text);
    let out = nodewright(&["plan", "-f", file.to_str().unwrap_or_default()]);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn bad_input_exits_2_naming_file_document_and_field() {
    let cases: &[(&str, &str, &[&str])] = &[
        (
            "unknown-kind",
            "apiVersion: v1\nkind: Pod\nmetadata: {name: a}\n---\napiVersion: v1\nkind: Service\nmetadata: {name: s}\n",
            &["unknown-kind.yaml, document 2", "unsupported kind Service"],
        ),
        (
            "not-yaml",
            "kind: [unclosed\n",
            &["not-yaml.yaml", "not valid YAML"],
        ),
        (
            "wrong-type",
            "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: 5}\n",
            &["document 1", "Pod p", "spec.containers"],
        ),
        (
            "bad-quantity",
            "apiVersion: v1\nkind: Pod\nmetadata: {name: q}\nspec:\n  containers:\n    - {name: c, resources: {requests: {memory: lots}}}\n",
            &["bad-quantity.yaml, document 1", "Pod default/q", "memory"],
        ),
        (
            "invalid-provisioner",
            "apiVersion: karpenter.sh/v1alpha5\nkind: Provisioner\nmetadata: {name: p}\nspec:\n  weight: 0\n  providerRef: {name: d}\n",
            &["document 1", "Provisioner p is invalid", "spec.weight"],
        ),
        (
            "no-kind",
            "metadata: {name: x}\n",
            &["document 1", "needs apiVersion and kind"],
        ),
    ];
    for (name, text, expected) in cases {
        let (code, stderr) = plan_on(name, text);
        assert_eq!(code, 2, "{name}: {stderr}");
        for fragment in *expected {
            assert!(
                stderr.contains(fragment),
                "{name}: {fragment:?} not in {stderr}"
            );
        }
    }
}

#[test]
fn a_missing_file_and_a_bad_flag_are_bad_input() {
    let out = nodewright(&["plan", "-f", "/nonexistent/cluster.yaml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/cluster.yaml"));
    let tutorial = repo("examples/plan/tutorial.yaml");
    let out = nodewright(&[
        "plan",
        "-f",
        tutorial.to_str().unwrap_or_default(),
        "--region",
        "mars-north-1",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("mars-north-1"));
}

/// `limits.resources.cpu: 0` is how a provisioner is paused: nothing launches from it, and
/// each pod says why.
#[test]
fn a_provisioner_with_a_cpu_limit_of_zero_launches_nothing() {
    let tutorial =
        std::fs::read_to_string(repo("examples/plan/tutorial.yaml")).expect("the tutorial reads");
    let paused = tutorial.replace("cpu: 1000", "cpu: 0");
    assert_ne!(paused, tutorial, "the tutorial sets a cpu limit");
    let plan = plan_json_of("paused", &paused);
    assert_eq!(plan["nodes"].as_array().map(Vec::len), Some(0), "{plan}");
    let pending = plan["unschedulable"].as_array().expect("a list");
    assert_eq!(pending.len(), 4);
    for entry in pending {
        let reason = entry["reason"].as_str().unwrap_or_default();
        assert!(
            reason.contains("limit"),
            "the reason names the limit: {reason}"
        );
    }
}

/// A provisioner, a node of its with `node_extra` merged into its metadata and spec, and the
/// pods given (YAML documents).
fn cluster_with_node(node_metadata: &str, node_spec: &str, pods: &str) -> String {
    format!(
        r#"apiVersion: karpenter.sh/v1alpha5
kind: Provisioner
metadata: {{name: default}}
spec:
  startupTaints: [{{key: example.com/agent-not-ready, effect: NoSchedule}}]
  provider: {{subnetSelector: {{karpenter.sh/discovery: c}}, securityGroupSelector: {{karpenter.sh/discovery: c}}}}
---
apiVersion: v1
kind: Node
metadata:
  name: ip-10-0-1-5.ec2.internal
  labels:
    karpenter.sh/provisioner-name: default
    kubernetes.io/hostname: ip-10-0-1-5.ec2.internal
    kubernetes.io/arch: amd64
    kubernetes.io/os: linux
    topology.kubernetes.io/zone: us-east-1a
    node.kubernetes.io/instance-type: m5.xlarge
    karpenter.sh/capacity-type: on-demand
  {node_metadata}
spec: {node_spec}
status:
  capacity: {{cpu: "4", memory: 15Gi, pods: "58"}}
  allocatable: {{cpu: 3920m, memory: 14Gi, pods: "58"}}
{pods}"#
    )
}

fn one_cpu_pod(name: &str, node: Option<&str>) -> String {
    let bound = node
        .map(|n| format!("\n  nodeName: {n}"))
        .unwrap_or_default();
    let status = if node.is_some() {
        "{phase: Running}"
    } else {
        "{phase: Pending, conditions: [{type: PodScheduled, status: \"False\", reason: Unschedulable}]}"
    };
    format!(
        "---\napiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: default}}\nspec:{bound}\n  containers: [{{name: c, image: pause, resources: {{requests: {{cpu: \"1\"}}}}}}]\nstatus: {status}\n"
    )
}

/// `plan -o json` of `text`, written to a temporary file named after the test.
fn plan_json_of(name: &str, text: &str) -> Value {
    let file = input_file(name, text);
    plan_json(file.to_str().unwrap_or_default(), &[])
}

/// A node being deleted is no capacity: its pods need a new node, and pending pods do not
/// go there (the controller decides the same from the same cache).
#[test]
fn a_node_being_deleted_takes_no_pods_and_its_pods_get_a_new_node() {
    let node = "ip-10-0-1-5.ec2.internal";
    let pods = [
        one_cpu_pod("web-1", Some(node)),
        one_cpu_pod("web-2", Some(node)),
        one_cpu_pod("new-1", None),
    ]
    .concat();
    let text = cluster_with_node(
        "deletionTimestamp: \"2024-01-01T00:00:00Z\"\n  finalizers: [karpenter.sh/termination]",
        "{unschedulable: true}",
        &pods,
    );
    let plan = plan_json_of("deleting-node", &text);
    let placed = pods_on_new_nodes(&plan);
    for pod in ["default/web-1", "default/web-2", "default/new-1"] {
        assert!(placed.contains(&pod), "{pod} gets a new node: {plan}");
    }
    assert_eq!(
        pod_mentions(&plan).values().max(),
        Some(&1),
        "each pod once: {plan}"
    );
}

/// A node still coming up (not initialized) is seen without its startup and not-ready taints,
/// as Karpenter sees it: a pending pod waits for it instead of buying another node.
#[test]
fn a_node_coming_up_is_used_without_its_startup_and_not_ready_taints() {
    let taints = "{taints: [{key: node.kubernetes.io/not-ready, effect: NoSchedule}, {key: example.com/agent-not-ready, effect: NoSchedule}]}";
    let text = cluster_with_node("{}", taints, &one_cpu_pod("new-1", None)).replace("  {}\n", "");
    let plan = plan_json_of("coming-up", &text);
    assert_eq!(
        plan["nodes"].as_array().map(Vec::len),
        Some(0),
        "no new node: {plan}"
    );
    let existing = plan["existing"].as_array().expect("a list");
    assert!(
        existing.iter().any(|e| e["pods"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|p| p == "default/new-1")),
        "the pod goes to the node coming up: {plan}"
    );
}

/// A daemonset whose running pod requests more than its template (a VPA raised it): new nodes
/// are sized for what its pods really request, as Karpenter sizes them.
#[test]
fn daemonset_overhead_comes_from_its_running_pod_when_it_has_one() {
    let daemonset = r#"---
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: agent, namespace: kube-system, uid: ds-agent}
spec:
  selector: {matchLabels: {app: agent}}
  template:
    metadata: {labels: {app: agent}}
    spec:
      containers: [{name: agent, image: agent, resources: {requests: {cpu: 100m}}}]
---
apiVersion: v1
kind: Pod
metadata:
  name: agent-x1
  namespace: kube-system
  ownerReferences: [{apiVersion: apps/v1, kind: DaemonSet, name: agent, uid: ds-agent, controller: true}]
spec:
  nodeName: ip-10-0-1-5.ec2.internal
  containers: [{name: agent, image: agent, resources: {requests: {cpu: "2"}}}]
status: {phase: Running}
"#;
    let pods = [
        one_cpu_pod("filler-1", Some("ip-10-0-1-5.ec2.internal")),
        one_cpu_pod("new-1", None),
        daemonset.to_string(),
    ]
    .concat();
    let text = cluster_with_node("{}", "{}", &pods).replace("  {}\n", "");
    let plan = plan_json_of("daemonset-pod", &text);
    let node = &plan["nodes"][0];
    let types: Vec<&str> = node["instanceTypes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        !types.is_empty(),
        "a node is launched for the pending pod: {plan}"
    );
    let two_vcpu_or_less = ["large", "medium", "small", "micro", "nano"];
    for name in &types {
        let size = name.split('.').nth(1).unwrap_or_default();
        assert!(
            !two_vcpu_or_less.contains(&size),
            "{name} cannot hold the 2-cpu daemon pod and the 1-cpu pod: {types:?}"
        );
    }
}

/// What `kubectl get pods -A -o yaml` writes for `count` pending pods: one `kind: List`.
fn pending_pods_list(count: usize) -> String {
    let mut text = String::from("apiVersion: v1\nkind: List\nitems:\n");
    for i in 0..count {
        text.push_str(&format!(
            "- apiVersion: v1\n  kind: Pod\n  metadata:\n    name: web-{i}\n    namespace: default\n    labels: {{app: web}}\n  spec:\n    containers:\n    - name: web\n      image: web:1\n      resources:\n        requests: {{cpu: 100m, memory: 64Mi}}\n  status:\n    phase: Pending\n    conditions:\n    - {{type: PodScheduled, status: \"False\", reason: Unschedulable}}\n"
        ));
    }
    text
}

/// Real clusters have tens of thousands of pods: a `kind: List` past the YAML parser's default
/// budget (250,000 nodes, about 6,000 pods) and a stream of more than 1,024 documents both plan.
#[test]
fn large_lists_and_long_document_streams_are_read_whole() {
    let provisioner = "apiVersion: karpenter.sh/v1alpha5\nkind: Provisioner\nmetadata: {name: default}\nspec: {provider: {subnetSelector: {a: b}, securityGroupSelector: {a: b}}}\n---\n";
    let list = format!("{provisioner}{}", pending_pods_list(7_000));
    let plan = plan_json_of("large-list", &list);
    assert_eq!(pod_mentions(&plan).len(), 7_000, "every pod is in the plan");
    assert!(plan["unschedulable"].as_array().is_some_and(Vec::is_empty));

    let stream: String = std::iter::once(provisioner.to_string())
        .chain(pending_pods_list(1_100).split("\n- ").skip(1).map(|item| {
            // Each list item as a document of its own.
            let document: String = item
                .lines()
                .map(|line| line.strip_prefix("  ").unwrap_or(line))
                .collect::<Vec<_>>()
                .join("\n");
            format!("{document}\n---\n")
        }))
        .collect();
    let plan = plan_json_of("long-stream", &stream);
    assert_eq!(pod_mentions(&plan).len(), 1_100, "every document is read");
}
