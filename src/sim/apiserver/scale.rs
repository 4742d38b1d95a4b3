//! The `/scale` subresource: an autoscaling/v1 `Scale` view of `.spec.replicas` (what
//! `kubectl scale` reads and writes).

use serde_json::{Value, json};

use super::meta;
use super::resources::ResourceType;
use super::selectors::LabelSelector;
use super::status::ApiError;
use super::write::{Part, Writer};

/// The Scale of a deployment, replica set or stateful set.
pub fn of(object: &Value) -> Value {
    let selector = object
        .pointer("/spec/selector")
        .and_then(LabelSelector::from_object)
        .map(|selector| selector.to_query())
        .unwrap_or_default();
    let metadata = meta::metadata(object).cloned().unwrap_or_default();
    let mut scale_metadata = json!({});
    for key in [
        "name",
        "namespace",
        "uid",
        "resourceVersion",
        "creationTimestamp",
    ] {
        if let Some(value) = metadata.get(key) {
            scale_metadata[key] = value.clone();
        }
    }
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": scale_metadata,
        "spec": {"replicas": object.pointer("/spec/replicas").and_then(Value::as_i64).unwrap_or(0)},
        "status": {
            "replicas": object.pointer("/status/replicas").and_then(Value::as_i64).unwrap_or(0),
            "selector": selector,
        },
    })
}

fn replicas(scale: &Value) -> Result<i64, ApiError> {
    let name = meta::name(scale).unwrap_or_default();
    scale
        .pointer("/spec/replicas")
        .and_then(Value::as_i64)
        .filter(|replicas| *replicas >= 0)
        .ok_or_else(|| {
            ApiError::invalid(
                "Scale",
                name,
                vec![(
                    "spec.replicas".into(),
                    "Invalid value: must be a non-negative integer".into(),
                )],
            )
        })
}

/// The object with the Scale's replicas, and the Scale's resourceVersion as a precondition.
fn scaled(current: &Value, scale: &Value) -> Result<Value, ApiError> {
    let replicas = replicas(scale)?;
    let mut updated = current.clone();
    if let Some(spec) = updated.get_mut("spec").and_then(Value::as_object_mut) {
        spec.insert("replicas".into(), json!(replicas));
    } else if let Some(root) = updated.as_object_mut() {
        root.insert("spec".into(), json!({"replicas": replicas}));
    }
    match meta::resource_version(scale) {
        Some(version) => meta::set(&mut updated, "resourceVersion", json!(version)),
        None => meta::remove(&mut updated, "resourceVersion"),
    }
    Ok(updated)
}

/// PUT of a Scale.
pub fn replace(
    writer: &mut Writer<'_>,
    rt: &ResourceType,
    namespace: &str,
    name: &str,
    scale: &Value,
) -> Result<Value, ApiError> {
    writer.modify(rt, namespace, name, Part::Main, |current| {
        scaled(current, scale)
    })
}

/// PATCH of a Scale: the patch applies to the Scale view, whose replicas are then written.
pub fn patch(
    writer: &mut Writer<'_>,
    rt: &ResourceType,
    namespace: &str,
    name: &str,
    apply: impl FnOnce(&Value) -> Result<Value, ApiError>,
) -> Result<Value, ApiError> {
    writer.modify(rt, namespace, name, Part::Main, |current| {
        let patched = apply(&of(current))?;
        scaled(current, &patched)
    })
}
