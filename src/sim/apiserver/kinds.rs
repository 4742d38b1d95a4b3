//! What the real API server does per kind beyond generic storage: defaults on create, status reset
//! on create, validation (422 Invalid) and the fields an update may not change.

use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::resources::ResourceType;
use crate::apis::validation::ValidationErrors;
use crate::apis::{AwsNodeTemplate, Machine, Provisioner};

/// A problem of one field: (path, message).
pub type Cause = (String, String);

/// Seconds a pod gets to stop when its delete names no grace period.
pub const DEFAULT_POD_GRACE_SECONDS: i64 = 30;
/// How long the defaulted not-ready/unreachable tolerations last (DefaultTolerationSeconds).
const DEFAULT_TOLERATION_SECONDS: i64 = 300;

/// Defaults and status resets the real server applies on create.
pub fn prepare_create(rt: &ResourceType, object: &mut Value) {
    if rt.status && !rt.is("", "nodes") && !rt.is("", "namespaces") {
        // Status is written through /status; the create body's is dropped (pods start Pending).
        if let Some(root) = object.as_object_mut() {
            root.remove("status");
        }
    }
    match (rt.group.as_str(), rt.plural.as_str()) {
        ("", "pods") => default_pod(object),
        ("", "namespaces") => default_namespace(object),
        ("apps", "deployments") => default_deployment(object),
        _ => {}
    }
}

fn entry<'a>(object: &'a mut Value, key: &str, default: Value) -> &'a mut Value {
    if !object.is_object() {
        *object = json!({});
    }
    match object {
        Value::Object(map) => map.entry(key.to_string()).or_insert(default),
        // Unreachable: made an object above.
        other => other,
    }
}

fn default_pod(pod: &mut Value) {
    let spec = entry(pod, "spec", json!({}));
    for (key, value) in [
        ("restartPolicy", json!("Always")),
        (
            "terminationGracePeriodSeconds",
            json!(DEFAULT_POD_GRACE_SECONDS),
        ),
        ("dnsPolicy", json!("ClusterFirst")),
        ("schedulerName", json!("default-scheduler")),
        ("priority", json!(0)),
    ] {
        entry(spec, key, value);
    }
    let tolerations = entry(spec, "tolerations", json!([]));
    if let Some(list) = tolerations.as_array_mut() {
        for key in [
            "node.kubernetes.io/not-ready",
            "node.kubernetes.io/unreachable",
        ] {
            let present = list.iter().any(|toleration| {
                toleration.get("key").and_then(Value::as_str) == Some(key)
                    && toleration.get("effect").and_then(Value::as_str) == Some("NoExecute")
            });
            if !present {
                list.push(
                    json!({"key": key, "operator": "Exists", "effect": "NoExecute",
                    "tolerationSeconds": DEFAULT_TOLERATION_SECONDS}),
                );
            }
        }
    }
    *entry(pod, "status", json!({})) = json!({"phase": "Pending"});
}

fn default_namespace(namespace: &mut Value) {
    let name = super::meta::name(namespace).unwrap_or_default().to_string();
    if let Some(meta) = super::meta::metadata_mut(namespace) {
        let labels = meta.entry("labels").or_insert_with(|| json!({}));
        if let Some(labels) = labels.as_object_mut() {
            labels.insert("kubernetes.io/metadata.name".into(), json!(name));
        }
    }
    entry(namespace, "spec", json!({"finalizers": ["kubernetes"]}));
    *entry(namespace, "status", json!({})) = json!({"phase": "Active"});
}

fn default_deployment(deployment: &mut Value) {
    let spec = entry(deployment, "spec", json!({}));
    for (key, value) in [
        ("replicas", json!(1)),
        ("revisionHistoryLimit", json!(10)),
        ("progressDeadlineSeconds", json!(600)),
        (
            "strategy",
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}}),
        ),
    ] {
        entry(spec, key, value);
    }
}

/// Whether the object decodes as its built-in type, as the real server decodes every body:
/// a field of the wrong shape (`"replicas": "three"`) is a 400 naming the field.
pub fn decodes(rt: &ResourceType, object: &Value) -> Result<(), String> {
    use k8s_openapi::api::{apps, coordination, core, events, policy};
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1 as apiextensions;
    fn check<K: DeserializeOwned>(object: &Value) -> Result<(), String> {
        serde_path_to_error::deserialize::<_, K>(object.clone())
            .map(|_| ())
            .map_err(|error| format!("{}: {}", error.path(), error.inner()))
    }
    match (rt.group.as_str(), rt.plural.as_str()) {
        ("", "pods") => check::<core::v1::Pod>(object),
        ("", "nodes") => check::<core::v1::Node>(object),
        ("", "namespaces") => check::<core::v1::Namespace>(object),
        ("", "events") => check::<core::v1::Event>(object),
        ("", "configmaps") => check::<core::v1::ConfigMap>(object),
        ("", "services") => check::<core::v1::Service>(object),
        ("", "serviceaccounts") => check::<core::v1::ServiceAccount>(object),
        ("apps", "deployments") => check::<apps::v1::Deployment>(object),
        ("apps", "replicasets") => check::<apps::v1::ReplicaSet>(object),
        ("apps", "daemonsets") => check::<apps::v1::DaemonSet>(object),
        ("apps", "statefulsets") => check::<apps::v1::StatefulSet>(object),
        ("policy", "poddisruptionbudgets") => check::<policy::v1::PodDisruptionBudget>(object),
        ("coordination.k8s.io", "leases") => check::<coordination::v1::Lease>(object),
        ("events.k8s.io", "events") => check::<events::v1::Event>(object),
        ("apiextensions.k8s.io", "customresourcedefinitions") => {
            check::<apiextensions::CustomResourceDefinition>(object)
        }
        _ => Ok(()),
    }
}

/// Every problem of an object the real server would refuse with 422.
pub fn validate(rt: &ResourceType, object: &Value) -> Vec<Cause> {
    match (rt.group.as_str(), rt.plural.as_str()) {
        ("", "pods") => validate_pod(object),
        ("apps", "deployments" | "replicasets" | "daemonsets" | "statefulsets") => {
            validate_workload(object)
        }
        ("karpenter.sh", "provisioners") => typed::<Provisioner>(object, Provisioner::validate),
        ("karpenter.sh", "machines") => typed::<Machine>(object, Machine::validate),
        ("karpenter.k8s.aws", "awsnodetemplates") => {
            typed::<AwsNodeTemplate>(object, AwsNodeTemplate::validate)
        }
        _ => Vec::new(),
    }
}

/// Schema check by deserializing into the Rust type, then the kind's own `validate()`.
fn typed<K: DeserializeOwned>(
    object: &Value,
    validate: fn(&K) -> Result<(), ValidationErrors>,
) -> Vec<Cause> {
    match serde_path_to_error::deserialize::<_, K>(object.clone()) {
        Err(error) => vec![(error.path().to_string(), error.inner().to_string())],
        Ok(typed) => match validate(&typed) {
            Ok(()) => Vec::new(),
            Err(errors) => errors
                .errors()
                .iter()
                .map(|error| (error.path.to_string(), error.problem.to_string()))
                .collect(),
        },
    }
}

fn validate_pod(pod: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    let containers = pod.pointer("/spec/containers").and_then(Value::as_array);
    match containers {
        None => causes.push(("spec.containers".into(), "Required value".into())),
        Some(list) if list.is_empty() => {
            causes.push(("spec.containers".into(), "Required value".into()))
        }
        Some(list) => {
            for (index, container) in list.iter().enumerate() {
                for field in ["name", "image"] {
                    let present = container
                        .get(field)
                        .and_then(Value::as_str)
                        .is_some_and(|value| !value.is_empty());
                    if !present {
                        causes.push((
                            format!("spec.containers[{index}].{field}"),
                            "Required value".into(),
                        ));
                    }
                }
            }
        }
    }
    causes
}

/// A workload's selector must exist and select its own pod template.
fn validate_workload(workload: &Value) -> Vec<Cause> {
    let selector = workload.pointer("/spec/selector");
    let Some(selector) = selector.and_then(super::selectors::LabelSelector::from_object) else {
        return vec![("spec.selector".into(), "Required value".into())];
    };
    if selector.is_empty() {
        return vec![(
            "spec.selector".into(),
            "Invalid value: empty selector is invalid for deployment".into(),
        )];
    }
    let template = workload
        .pointer("/spec/template")
        .cloned()
        .unwrap_or(json!({}));
    if !selector.matches(&template) {
        return vec![(
            "spec.template.metadata.labels".into(),
            "Invalid value: `selector` does not match template `labels`".into(),
        )];
    }
    Vec::new()
}

/// Fields an update may not change (pods: all of spec but images, tolerations added,
/// activeDeadlineSeconds and schedulingGates removed; every kind: a selector of a workload).
pub fn validate_update(rt: &ResourceType, old: &Value, new: &Value) -> Vec<Cause> {
    match (rt.group.as_str(), rt.plural.as_str()) {
        ("", "pods") => {
            let comparable = |pod: &Value| {
                let mut spec = pod.get("spec").cloned().unwrap_or(json!({}));
                if let Some(map) = spec.as_object_mut() {
                    for mutable in ["activeDeadlineSeconds", "tolerations", "schedulingGates"] {
                        map.remove(mutable);
                    }
                    for list in ["containers", "initContainers"] {
                        for container in map
                            .get_mut(list)
                            .and_then(Value::as_array_mut)
                            .into_iter()
                            .flatten()
                        {
                            if let Some(container) = container.as_object_mut() {
                                container.remove("image");
                            }
                        }
                    }
                }
                spec
            };
            if comparable(old) != comparable(new) {
                return vec![(
                    "spec".into(),
                    "Forbidden: pod updates may not change fields other than `spec.containers[*].image`, `spec.initContainers[*].image`, `spec.activeDeadlineSeconds`, `spec.tolerations` (only additions to existing tolerations) or `spec.schedulingGates` (only removal)".into(),
                )];
            }
            Vec::new()
        }
        ("apps", "deployments" | "replicasets" | "daemonsets" | "statefulsets") => {
            if old.pointer("/spec/selector") != new.pointer("/spec/selector") {
                return vec![(
                    "spec.selector".into(),
                    "Invalid value: field is immutable".into(),
                )];
            }
            Vec::new()
        }
        _ => Vec::new(),
    }
}
