//! PodDisruptionBudgets: the figures kube-controller-manager's disruption controller computes
//! (expected, healthy and desired pods, disruptions allowed), written to each budget's status
//! after any write that can change them, and the eviction check that reads the same figures.
//!
//! Simplified: figures are recomputed over the namespace's pods on every such write (fine at
//! the sizes tests use), and eviction counts live pods rather than `status.disruptedPods`.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};

use super::meta;
use super::resources::{ResourceKey, ResourceType};
use super::selectors::LabelSelector;
use super::status::ApiError;
use super::write::{Part, Writer};

/// What a budget's status reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Figures {
    expected: i64,
    healthy: i64,
    desired: i64,
}

impl Figures {
    fn disruptions_allowed(self) -> i64 {
        (self.healthy - self.desired).max(0)
    }
}

pub(super) fn budgets_key() -> ResourceKey {
    ("policy".to_string(), "poddisruptionbudgets".to_string())
}

fn pods_key() -> ResourceKey {
    (String::new(), "pods".to_string())
}

/// Whether a change to this resource can change a budget's figures: pods, the budgets
/// themselves, and the workloads whose replicas are the expected count.
pub(super) fn affects_budgets(resource: &ResourceKey) -> bool {
    *resource == pods_key() || *resource == budgets_key() || resource.0 == "apps"
}

impl Writer<'_> {
    /// Refuses an eviction that would take the one budget selecting `pod` below its desired
    /// healthy count: `429 TooManyRequests` naming the budget.
    pub(super) fn check_budgets(
        &self,
        pods: &ResourceType,
        namespace: &str,
        pod: &Value,
    ) -> Result<(), ApiError> {
        let budgets: Vec<(&String, &Value)> = self
            .state
            .objects_in(&budgets_key(), Some(namespace))
            .filter(|(_, pdb)| selector_of(pdb).is_some_and(|s| s.matches(pod)))
            .map(|((_, name), pdb)| (name, pdb))
            .collect();
        let [(pdb_name, pdb)] = budgets.as_slice() else {
            if budgets.len() > 1 {
                return Err(ApiError::internal(
                    "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.",
                ));
            }
            return Ok(());
        };
        let figures = self.figures(&pods.key(), namespace, pdb).map_err(|why| {
            ApiError::internal(format!(
                "PodDisruptionBudget {pdb_name} is malformed: {why}"
            ))
        })?;
        let Figures {
            healthy, desired, ..
        } = figures;
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

    /// Rewrites the status of every budget in `namespaces` whose figures changed, as the
    /// disruption controller would shortly after.
    pub(super) fn refresh_budget_status(&mut self, namespaces: &BTreeSet<String>) {
        let Some(rt) = self
            .registry
            .by_kind("policy/v1", "PodDisruptionBudget")
            .cloned()
        else {
            return;
        };
        for namespace in namespaces {
            let stale: Vec<(String, Value)> = self
                .state
                .objects_in(&budgets_key(), Some(namespace))
                .filter_map(|((_, name), pdb)| {
                    let figures = self.figures(&pods_key(), namespace, pdb).ok()?;
                    let status = status_for(pdb, figures, &meta::format_time(self.now()));
                    (pdb.get("status") != Some(&status)).then(|| (name.clone(), status))
                })
                .collect();
            for (name, status) in stale {
                let written = self.modify(&rt, namespace, &name, Part::Status, |current| {
                    let mut updated = current.clone();
                    updated["status"] = status;
                    Ok(updated)
                });
                if let Err(error) = written {
                    tracing::debug!(%namespace, %name, %error, "budget status not written");
                }
            }
        }
    }

    fn figures(&self, pods: &ResourceKey, namespace: &str, pdb: &Value) -> Result<Figures, String> {
        let selector = selector_of(pdb).ok_or("its selector is not a label selector")?;
        let selected: Vec<&Value> = self
            .state
            .objects_in(pods, Some(namespace))
            .map(|(_, candidate)| candidate)
            .filter(|candidate| selector.matches(candidate) && !is_finished(candidate))
            .collect();
        let expected = self.expected_pods(namespace, &selected);
        let healthy = selected.iter().filter(|pod| is_healthy(pod)).count() as i64;
        let desired = desired_healthy(pdb, expected)?;
        Ok(Figures {
            expected,
            healthy,
            desired,
        })
    }

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

fn selector_of(pdb: &Value) -> Option<LabelSelector> {
    LabelSelector::from_object(pdb.pointer("/spec/selector")?)
}

/// The status the disruption controller writes; the condition keeps its transition time while
/// its status holds.
fn status_for(pdb: &Value, figures: Figures, now: &str) -> Value {
    let allowed = figures.disruptions_allowed();
    let (condition_status, reason) = if allowed > 0 {
        ("True", "SufficientPods")
    } else {
        ("False", "InsufficientPods")
    };
    let generation = pdb
        .pointer("/metadata/generation")
        .cloned()
        .unwrap_or(json!(1));
    let since = pdb
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .find(|c| c.get("type").and_then(Value::as_str) == Some("DisruptionAllowed"))
        .filter(|c| c.get("status").and_then(Value::as_str) == Some(condition_status))
        .and_then(|c| c.get("lastTransitionTime").cloned())
        .unwrap_or_else(|| json!(now));
    json!({
        "observedGeneration": generation,
        "expectedPods": figures.expected,
        "currentHealthy": figures.healthy,
        "desiredHealthy": figures.desired,
        "disruptionsAllowed": allowed,
        "conditions": [{
            "type": "DisruptionAllowed",
            "status": condition_status,
            "reason": reason,
            "message": "",
            "observedGeneration": generation,
            "lastTransitionTime": since,
        }],
    })
}

/// The ownerReference marked `controller: true`.
fn controller_of(pod: &Value) -> Option<&Value> {
    pod.pointer("/metadata/ownerReferences")?
        .as_array()?
        .iter()
        .find(|owner| owner.get("controller").and_then(Value::as_bool) == Some(true))
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
