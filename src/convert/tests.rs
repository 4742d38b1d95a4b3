//! Conversion from Kubernetes objects, checked on the YAML users write.

use k8s_openapi::api::core::v1::{Node, Pod};
use nodewright_scheduling::allocatable::Threshold;
use nodewright_scheduling::pod::{SelectorOperator, WhenUnsatisfiable};
use nodewright_scheduling::requirements::Operator;
use nodewright_scheduling::taints::{TaintEffect, TolerationOperator};

use super::{node, pod, provisioner};
use crate::apis::Provisioner;

fn yaml<T: serde::de::DeserializeOwned>(text: &str) -> T {
    serde_saphyr::from_str(text).expect("test YAML parses")
}

const MI: i64 = 1 << 20;

#[test]
fn container_limits_stand_in_for_missing_requests() {
    let p: Pod = yaml(
        "metadata: {name: a}\nspec:\n  containers:\n    - name: c\n      resources:\n        limits: {cpu: 2, memory: 1Gi}\n        requests: {cpu: 500m}\n",
    );
    let core = pod::pod(&p).expect("converts");
    assert_eq!(core.requests.cpu_millis, 500);
    assert_eq!(core.requests.memory_bytes, 1024 * MI);
    assert_eq!(core.requests.pods, 1);
    assert_eq!(core.namespace, "default");
}

#[test]
fn init_containers_count_at_their_peak_and_sidecars_add_up() {
    let p: Pod = yaml(
        "metadata: {name: a, namespace: ns}\nspec:\n  initContainers:\n    - {name: big-init, resources: {requests: {cpu: 3}}}\n    - {name: proxy, restartPolicy: Always, resources: {requests: {cpu: 200m, memory: 64Mi}}}\n  containers:\n    - {name: app, resources: {requests: {cpu: 1, memory: 1Gi}}}\n    - {name: side, resources: {requests: {cpu: 250m}}}\n  overhead: {cpu: 100m}\n",
    );
    let core = pod::pod(&p).expect("converts");
    // max(3 cpu init, 1 + 0.25 + 0.2 running) + 0.1 overhead.
    assert_eq!(core.requests.cpu_millis, 3100);
    assert_eq!(core.requests.memory_bytes, 1024 * MI + 64 * MI);
}

#[test]
fn affinity_spread_tolerations_and_ports_are_carried_over() {
    let p: Pod = yaml(
        r#"
metadata:
  name: web-1
  namespace: shop
  labels: {app: web, pod-template-hash: abc}
  ownerReferences:
    - {apiVersion: apps/v1, kind: ReplicaSet, name: web-abc, uid: u1, controller: true}
spec:
  nodeSelector: {kubernetes.io/arch: amd64}
  affinity:
    nodeAffinity:
      requiredDuringSchedulingIgnoredDuringExecution:
        nodeSelectorTerms:
          - matchExpressions:
              - {key: karpenter.k8s.aws/instance-cpu, operator: Gt, values: ["3"]}
          - matchExpressions:
              - {key: karpenter.sh/capacity-type, operator: In, values: [on-demand]}
      preferredDuringSchedulingIgnoredDuringExecution:
        - weight: 10
          preference:
            matchExpressions:
              - {key: topology.kubernetes.io/zone, operator: In, values: [us-east-1a]}
    podAntiAffinity:
      requiredDuringSchedulingIgnoredDuringExecution:
        - topologyKey: kubernetes.io/hostname
          labelSelector: {matchLabels: {app: web}}
          namespaceSelector: {}
  topologySpreadConstraints:
    - maxSkew: 1
      topologyKey: topology.kubernetes.io/zone
      whenUnsatisfiable: ScheduleAnyway
      labelSelector:
        matchExpressions: [{key: app, operator: Exists}]
      matchLabelKeys: [pod-template-hash]
  tolerations:
    - {key: dedicated, operator: Exists, effect: NoSchedule}
    - {key: team, value: a}
  containers:
    - name: web
      ports: [{containerPort: 80, hostPort: 8080}, {containerPort: 81}]
"#,
    );
    let core = pod::pod(&p).expect("converts");
    assert_eq!(core.owner.as_deref(), Some("ReplicaSet/web-abc"));
    assert_eq!(core.placement.node_selector["kubernetes.io/arch"], "amd64");
    assert_eq!(
        core.placement.required_node_affinity.len(),
        2,
        "two OR-ed terms"
    );
    assert_eq!(
        core.placement.required_node_affinity[0][0].operator,
        Operator::Gt
    );
    assert_eq!(core.placement.preferred_node_affinity[0].weight, 10);
    let anti = &core.placement.pod_anti_affinity[0];
    assert!(
        anti.all_namespaces,
        "an empty namespaceSelector selects every namespace"
    );
    assert_eq!(anti.topology_key, "kubernetes.io/hostname");
    let spread = &core.placement.topology_spread[0];
    assert_eq!(spread.when_unsatisfiable, WhenUnsatisfiable::ScheduleAnyway);
    assert_eq!(
        spread.label_selector.match_expressions[0].operator,
        SelectorOperator::Exists
    );
    assert_eq!(
        spread.label_selector.match_labels["pod-template-hash"],
        "abc"
    );
    assert_eq!(
        core.placement.tolerations[0].operator,
        TolerationOperator::Exists
    );
    assert_eq!(
        core.placement.tolerations[0].effect,
        Some(TaintEffect::NoSchedule)
    );
    assert_eq!(
        core.placement.tolerations[1].operator,
        TolerationOperator::Equal
    );
    assert_eq!(core.placement.host_ports.len(), 1);
    assert_eq!(core.placement.host_ports[0].port, 8080);
}

#[test]
fn unknown_operators_and_effects_are_errors_naming_the_field() {
    let p: Pod = yaml(
        "metadata: {name: a}\nspec:\n  containers: [{name: c}]\n  tolerations: [{key: k, operator: Maybe}]\n",
    );
    let err = pod::pod(&p).expect_err("Maybe is no operator");
    assert_eq!(err.field, "spec.tolerations");
    assert!(err.message.contains("Maybe"));
}

#[test]
fn node_allocatable_taints_and_cordon_are_read() {
    let n: Node = yaml(
        "metadata: {name: n1, labels: {karpenter.sh/provisioner-name: default}}\nspec:\n  unschedulable: true\n  taints: [{key: gpu, value: 'true', effect: NoSchedule}]\nstatus:\n  capacity: {cpu: 4, memory: 16Gi, pods: 58}\n",
    );
    let core = node::existing_node(&n, Vec::new()).expect("converts");
    assert!(core.unschedulable);
    assert_eq!(core.taints[0].effect, TaintEffect::NoSchedule);
    assert_eq!(
        core.allocatable.cpu_millis, 4000,
        "allocatable falls back to capacity"
    );
    assert_eq!(core.provisioner(), Some("default"));
}

#[test]
fn provisioner_limits_weight_and_kubelet_thresholds_are_read() {
    let p: Provisioner = yaml(
        r#"
apiVersion: karpenter.sh/v1alpha5
kind: Provisioner
metadata: {name: default}
spec:
  weight: 7
  limits: {resources: {cpu: 1000, memory: 1000Gi}}
  kubeletConfiguration:
    maxPods: 20
    kubeReserved: {cpu: 200m}
    evictionHard: {memory.available: 5%, nodefs.available: 2Gi}
  startupTaints: [{key: cni, effect: NoSchedule}]
  providerRef: {name: default}
"#,
    );
    let core = provisioner::provisioner(&p).expect("converts");
    assert_eq!(core.weight, 7);
    assert_eq!(
        core.limits["cpu"], 1_000_000,
        "cpu limits are in millicores"
    );
    assert_eq!(core.limits["memory"], 1000 * 1024 * MI);
    assert_eq!(core.kubelet.max_pods, Some(20));
    assert_eq!(
        core.kubelet.kube_reserved.as_ref().map(|r| r.cpu_millis),
        Some(200)
    );
    assert_eq!(
        core.kubelet.eviction_hard_memory,
        Some(Threshold::Percent(5.0))
    );
    assert_eq!(
        core.kubelet.eviction_hard_nodefs,
        Some(Threshold::Quantity(2 * 1024 * MI))
    );
    assert_eq!(core.startup_taints.len(), 1);
    assert!(core.usage.is_none());
}

fn provisioner_with(spec: &str) -> nodewright_scheduling::provisioner::Provisioner {
    let p: Provisioner = yaml(&format!(
        "apiVersion: karpenter.sh/v1alpha5\nkind: Provisioner\nmetadata: {{name: p}}\nspec:\n  providerRef: {{name: d}}\n{spec}"
    ));
    provisioner::provisioner(&p).expect("converts")
}

fn requirement<'a>(
    p: &'a nodewright_scheduling::provisioner::Provisioner,
    key: &str,
) -> Option<&'a nodewright_scheduling::requirements::NodeSelectorRequirement> {
    p.requirements.iter().find(|r| r.key == key)
}

#[test]
fn open_provisioners_get_karpenters_defaults() {
    let p = provisioner_with("");
    let capacity = requirement(&p, "karpenter.sh/capacity-type").expect("defaulted");
    assert_eq!(capacity.values, ["on-demand"]);
    assert_eq!(
        requirement(&p, "kubernetes.io/arch")
            .expect("defaulted")
            .values,
        ["amd64"]
    );
    let category = requirement(&p, "karpenter.k8s.aws/instance-category").expect("defaulted");
    assert_eq!(category.values, ["c", "m", "r"]);
    let generation = requirement(&p, "karpenter.k8s.aws/instance-generation").expect("defaulted");
    assert_eq!(
        (generation.operator, generation.values.as_slice()),
        (Operator::Gt, &["2".to_string()][..])
    );
}

#[test]
fn named_keys_keep_their_values_and_suppress_defaults() {
    let p = provisioner_with(
        "  labels: {kubernetes.io/arch: arm64}\n  requirements:\n    - {key: karpenter.sh/capacity-type, operator: In, values: [spot]}\n    - {key: karpenter.k8s.aws/instance-family, operator: In, values: [t4g]}\n",
    );
    assert_eq!(
        requirement(&p, "karpenter.sh/capacity-type").map(|r| r.values.clone()),
        Some(vec!["spot".to_string()])
    );
    assert!(
        requirement(&p, "kubernetes.io/arch").is_none(),
        "a label names the arch"
    );
    assert!(requirement(&p, "karpenter.k8s.aws/instance-category").is_none());
    assert!(requirement(&p, "karpenter.k8s.aws/instance-generation").is_none());
    assert_eq!(p.labels["kubernetes.io/arch"], "arm64");
}
