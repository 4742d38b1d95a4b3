//! The pod subresources with rules of their own: `pods/binding` (what a scheduler posts) and
//! `pods/eviction` (a delete that honours PodDisruptionBudgets, refused with 429 when it would
//! break one).

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::meta;
use super::resources::ResourceType;
use super::selectors::LabelSelector;
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

    fn check_budgets(
        &self,
        pods: &ResourceType,
        namespace: &str,
        pod: &Value,
    ) -> Result<(), ApiError> {
        let pdb_key = (String::from("policy"), String::from("poddisruptionbudgets"));
        let budgets: Vec<(String, LabelSelector, &Value)> = self
            .state
            .objects_in(&pdb_key, Some(namespace))
            .filter_map(|((_, pdb_name), pdb)| {
                let selector = LabelSelector::from_object(pdb.pointer("/spec/selector")?)?;
                selector
                    .matches(pod)
                    .then(|| (pdb_name.clone(), selector, pdb))
            })
            .collect();
        let [(pdb_name, selector, pdb)] = budgets.as_slice() else {
            if budgets.len() > 1 {
                return Err(ApiError::internal(
                    "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.",
                ));
            }
            return Ok(());
        };
        let selected: Vec<&Value> = self
            .state
            .objects_in(&pods.key(), Some(namespace))
            .map(|(_, candidate)| candidate)
            .filter(|candidate| selector.matches(candidate) && !is_finished(candidate))
            .collect();
        let expected = self.expected_pods(namespace, &selected);
        let healthy = selected
            .iter()
            .filter(|candidate| is_healthy(candidate))
            .count() as i64;
        let desired = desired_healthy(pdb, expected).map_err(|why| {
            ApiError::internal(format!(
                "PodDisruptionBudget {pdb_name} is malformed: {why}"
            ))
        })?;
        let allowed = if is_healthy(pod) {
            healthy > desired
        } else {
            healthy >= desired
        };
        if allowed {
            return Ok(());
        }
        let detail = format!(
            "The disruption budget {pdb_name} needs {desired} healthy pods and has {healthy} currently"
        );
        Err(ApiError::too_many_requests(
            format!(
                "Cannot evict pod as it would violate the pod's disruption budget {pdb_name}: {detail}."
            ),
            vec![json!({"reason": "DisruptionBudget", "message": detail})],
        ))
    }
}

impl Writer<'_> {
    /// How many pods a budget expects: the replicas of each controller owning selected pods
    /// (as the disruption controller reads them from `/scale`), plus one per pod without one.
    fn expected_pods(&self, namespace: &str, selected: &[&Value]) -> i64 {
        let mut controllers: BTreeMap<String, i64> = BTreeMap::new();
        let mut unowned = 0;
        for pod in selected {
            let replicas = controller_of(pod).and_then(|owner| {
                let field = |name: &str| owner.get(name).and_then(Value::as_str);
                let rt = self
                    .registry
                    .by_kind(field("apiVersion")?, field("kind")?)?;
                let key = (namespace.to_string(), field("name")?.to_string());
                let object = self.state.object(&rt.key(), &key)?;
                let replicas = object.pointer("/spec/replicas").and_then(Value::as_i64)?;
                Some((field("uid")?.to_string(), replicas))
            });
            match replicas {
                Some((uid, replicas)) => {
                    controllers.insert(uid, replicas);
                }
                None => unowned += 1,
            }
        }
        controllers.values().sum::<i64>() + unowned
    }
}

/// The ownerReference marked `controller: true`.
fn controller_of(pod: &Value) -> Option<&Value> {
    pod.pointer("/metadata/ownerReferences")?
        .as_array()?
        .iter()
        .find(|owner| owner.get("controller").and_then(Value::as_bool) == Some(true))
}

/// Pods a budget does not protect: finished, not yet running, or already being deleted.
fn ignores_budgets(pod: &Value) -> bool {
    meta::is_deleting(pod)
        || matches!(
            pod.pointer("/status/phase").and_then(Value::as_str),
            Some("Succeeded" | "Failed" | "Pending") | None
        )
}

fn is_finished(pod: &Value) -> bool {
    matches!(
        pod.pointer("/status/phase").and_then(Value::as_str),
        Some("Succeeded" | "Failed")
    )
}

/// Running, Ready and not being deleted: what a disruption budget counts.
fn is_healthy(pod: &Value) -> bool {
    let running = pod.pointer("/status/phase").and_then(Value::as_str) == Some("Running");
    let ready = pod
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .any(|condition| {
            condition.get("type").and_then(Value::as_str) == Some("Ready")
                && condition.get("status").and_then(Value::as_str) == Some("True")
        });
    running && ready && !meta::is_deleting(pod)
}

/// How many pods must stay healthy: minAvailable, or the expected count less maxUnavailable
/// (percentages rounded up, as the disruption controller does).
fn desired_healthy(pdb: &Value, expected: i64) -> Result<i64, String> {
    let scaled = |value: &Value| -> Result<i64, String> {
        match value {
            Value::Number(number) => number
                .as_i64()
                .ok_or_else(|| format!("{number} is not an integer")),
            Value::String(text) => {
                let percent: i64 = text
                    .strip_suffix('%')
                    .and_then(|digits| digits.parse().ok())
                    .ok_or_else(|| format!("{text:?} is neither an integer nor a percentage"))?;
                Ok((percent * expected + 99) / 100)
            }
            other => Err(format!("{other} is neither an integer nor a percentage")),
        }
    };
    match (
        pdb.pointer("/spec/minAvailable"),
        pdb.pointer("/spec/maxUnavailable"),
    ) {
        (Some(min), _) => scaled(min),
        (None, Some(max)) => Ok((expected - scaled(max)?).max(0)),
        (None, None) => Ok(1),
    }
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
