//! The chart values Karpenter v0.31's chart has for the pod and its objects, set as a user's
//! values file would set them.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::rbac::v1::ClusterRole;

use crate::render::{RELEASE, render, render_values};

const V031_VALUES: &str = r#"
additionalAnnotations:
  team: platform
additionalClusterRoleRules:
  - apiGroups: [""]
    resources: ["secrets"]
    verbs: ["get"]
strategy:
  rollingUpdate:
    maxUnavailable: 0
    maxSurge: 1
terminationGracePeriodSeconds: 60
hostNetwork: true
dnsConfig:
  options:
    - name: ndots
      value: "1"
extraVolumes:
  - name: scratch
    emptyDir: {}
controller:
  envFrom:
    - secretRef:
        name: proxy-settings
  extraVolumeMounts:
    - name: scratch
      mountPath: /scratch
  sidecarContainer:
    - name: proxy
      image: envoyproxy/envoy:v1.27.0
  sidecarVolumeMounts:
    - name: scratch
      mountPath: /scratch
      readOnly: true
extraObjects:
  - apiVersion: v1
    kind: ConfigMap
    metadata:
      name: "{{ .Release.Name }}-extra"
    data:
      greeting: hello
"#;

#[test]
fn karpenter_v031s_pod_and_object_values_land_where_they_did() {
    let rendered = render_values(V031_VALUES);
    let deployment: Deployment = rendered.typed("Deployment");
    let spec = deployment.spec.clone().expect("a Deployment spec");
    let rolling = spec
        .strategy
        .and_then(|s| s.rolling_update)
        .expect("the strategy given");
    assert_eq!(
        rolling.max_surge,
        Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(1))
    );
    let pod = spec.template.spec.expect("a pod spec");
    assert_eq!(pod.termination_grace_period_seconds, Some(60));
    assert_eq!(pod.host_network, Some(true));
    let ndots = pod.dns_config.and_then(|c| c.options).unwrap_or_default();
    assert_eq!(ndots[0].name.as_deref(), Some("ndots"));
    assert_eq!(pod.volumes.unwrap_or_default()[0].name, "scratch");
    let [controller, sidecar] = pod.containers.as_slice() else {
        panic!("the controller and one sidecar: {:?}", pod.containers);
    };
    assert_eq!(controller.name, "controller");
    let env_from = controller.env_from.clone().unwrap_or_default();
    assert_eq!(
        env_from[0].secret_ref.as_ref().map(|s| s.name.as_str()),
        Some("proxy-settings")
    );
    let mounts = controller.volume_mounts.clone().unwrap_or_default();
    assert_eq!(mounts[0].mount_path, "/scratch");
    assert_eq!(sidecar.name, "proxy");
    let sidecar_mounts = sidecar.volume_mounts.clone().unwrap_or_default();
    assert_eq!(sidecar_mounts[0].read_only, Some(true));

    // additionalAnnotations on every object the chart itself makes.
    for object in &rendered.objects {
        let kind = object["kind"].as_str().unwrap_or_default();
        if kind == "ConfigMap" {
            continue;
        }
        assert_eq!(
            object["metadata"]["annotations"]["team"], "platform",
            "{kind} carries additionalAnnotations"
        );
    }
    let role: ClusterRole = rendered.typed("ClusterRole");
    let rules = role.rules.unwrap_or_default();
    assert!(
        rules
            .iter()
            .any(|r| r.resources.as_deref() == Some(&["secrets".to_string()][..])),
        "the additional rule is appended: {rules:?}"
    );
    let extra = rendered.one("ConfigMap");
    assert_eq!(extra["metadata"]["name"], format!("{RELEASE}-extra"));
    assert_eq!(extra["data"]["greeting"], "hello");
}

#[test]
fn by_default_the_pod_keeps_its_network_and_one_replica_at_a_time_is_replaced() {
    let rendered = render(&[]);
    let deployment: Deployment = rendered.typed("Deployment");
    let spec = deployment.spec.expect("a Deployment spec");
    let rolling = spec
        .strategy
        .and_then(|s| s.rolling_update)
        .expect("a rolling update");
    assert_eq!(
        rolling.max_unavailable,
        Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(1))
    );
    let pod = spec.template.spec.expect("a pod spec");
    assert_eq!(pod.host_network, None);
    assert_eq!(pod.termination_grace_period_seconds, None);
    assert_eq!(pod.containers.len(), 1);
    assert!(rendered.all_of("ConfigMap").is_empty());
}
