//! The pod subresources with rules of their own: `pods/binding` (what a scheduler posts) and
//! `pods/eviction` (a delete that honours PodDisruptionBudgets, refused with 429 when it would
//! break one; the budget arithmetic is in [`super::budgets`]).

use serde_json::{Value, json};

use super::meta;
use super::resources::ResourceType;
use super::status::ApiError;
use super::target;
use super::write::{DeleteOptions, Deleted, Writer};

impl Writer<'_> {
    /// Binds a pod to the node a `v1.Binding` names; a bound or deleting pod is a conflict.
    pub fn bind(
        &mut self,
        pods: &ResourceType,
        namespace: &str,
        name: &str,
        binding: &Value,
    ) -> Result<Value, ApiError> {
        if let Some(named) = meta::name(binding)
            && named != name
        {
            return Err(ApiError::bad_request(format!(
                "the name of the binding ({named}) does not match the pod on the URL ({name})"
            )));
        }
        let node = binding
            .pointer("/target/name")
            .and_then(Value::as_str)
            .filter(|node| !node.is_empty())
            .ok_or_else(|| {
                ApiError::invalid(
                    "Binding",
                    name,
                    vec![("target.name".into(), "Required value".into())],
                )
            })?
            .to_string();
        let mut pod = self.state.get(pods, namespace, name)?.clone();
        if meta::is_deleting(&pod) {
            return Err(ApiError::conflict(
                target(pods, name),
                &format!("pod {name} is being deleted, cannot be assigned to a host"),
            ));
        }
        if let Some(bound) = pod
            .pointer("/spec/nodeName")
            .and_then(Value::as_str)
            .filter(|bound| !bound.is_empty())
        {
            return Err(ApiError::conflict(
                target(pods, name),
                &format!("pod {name} is already assigned to node \"{bound}\""),
            ));
        }
        let now = meta::format_time(self.now());
        if let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) {
            spec.insert("nodeName".into(), json!(node));
        }
        set_condition(
            &mut pod,
            json!({"type": "PodScheduled", "status": "True", "lastProbeTime": null,
                "lastTransitionTime": now}),
        );
        Ok(self
            .state
            .put(pods.key(), (namespace.into(), name.into()), pod))
    }

    /// Evicts a pod: deletes it (gracefully) unless the one PDB selecting it would drop below
    /// its budget, which is `429 TooManyRequests` naming the budget.
    pub fn evict(
        &mut self,
        pods: &ResourceType,
        namespace: &str,
        name: &str,
        options: &DeleteOptions,
    ) -> Result<Deleted, ApiError> {
        let pod = self.state.get(pods, namespace, name)?.clone();
        if !ignores_budgets(&pod) {
            self.check_budgets(pods, namespace, &pod)?;
        }
        self.delete(pods, namespace, name, options)
    }
}

/// Pods a budget does not protect: finished, not yet running, or already being deleted.
fn ignores_budgets(pod: &Value) -> bool {
    meta::is_deleting(pod)
        || matches!(
            pod.pointer("/status/phase").and_then(Value::as_str),
            Some("Succeeded" | "Failed" | "Pending") | None
        )
}

/// Sets a pod condition by type, replacing one of the same type.
fn set_condition(pod: &mut Value, condition: Value) {
    let Some(root) = pod.as_object_mut() else {
        return;
    };
    let status = root.entry("status").or_insert_with(|| json!({}));
    let Some(status) = status.as_object_mut() else {
        return;
    };
    let conditions = status.entry("conditions").or_insert_with(|| json!([]));
    if let Some(list) = conditions.as_array_mut() {
        list.retain(|existing| existing.get("type") != condition.get("type"));
        list.push(condition);
    }
}
