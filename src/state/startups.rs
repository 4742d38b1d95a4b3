//! Pod startups for `karpenter_pods_startup_time_seconds`, caught as the watch applies each
//! update: a pod seen Pending that turns Running and Ready has started, and it took from its
//! creation to its Ready condition's transition (as Karpenter measures). Caught here rather than
//! by a periodic pass, which misses a pod that starts and is deleted between two passes.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use k8s_openapi::api::core::v1::Pod;

/// Startups kept until the counter takes them; a replica that does not lead never does.
const MAX_UNREPORTED: usize = 1_024;

#[derive(Debug, Default)]
pub(super) struct Startups {
    /// Pods (`namespace/name`) seen Pending and not Ready since.
    waiting: HashSet<Arc<str>>,
    unreported: VecDeque<Duration>,
}

impl Startups {
    /// Notes `pod`'s update under `key`.
    pub(super) fn update(&mut self, key: &Arc<str>, pod: &Pod) {
        let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
        match phase {
            Some("Pending") => {
                self.waiting.insert(key.clone());
            }
            Some("Running") => {
                if !self.waiting.contains(key) {
                    return;
                }
                let Some(ready_at) = ready_since(pod) else {
                    return;
                };
                self.waiting.remove(key);
                let created = pod.metadata.creation_timestamp.as_ref();
                let Some(created) = created.map(|t| SystemTime::from(t.0)) else {
                    return;
                };
                if self.unreported.len() == MAX_UNREPORTED {
                    self.unreported.pop_front();
                }
                self.unreported
                    .push_back(ready_at.duration_since(created).unwrap_or_default());
            }
            _ => {
                self.waiting.remove(key);
            }
        }
    }

    pub(super) fn forget(&mut self, key: &str) {
        self.waiting.remove(key);
    }

    pub(super) fn take(&mut self) -> Vec<Duration> {
        self.unreported.drain(..).collect()
    }
}

/// When the pod's Ready condition turned True, if it is True.
fn ready_since(pod: &Pod) -> Option<SystemTime> {
    let conditions = pod.status.as_ref()?.conditions.as_deref()?;
    let ready = conditions.iter().find(|c| c.type_ == "Ready")?;
    if ready.status != "True" {
        return None;
    }
    ready
        .last_transition_time
        .as_ref()
        .map(|t| SystemTime::from(t.0))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::json;

    use crate::state::ClusterState;

    /// A pod created at second 0, in `phase`, Ready since `ready_at` seconds when given.
    fn pod(name: &str, phase: &str, ready_at: Option<u64>) -> k8s_openapi::api::core::v1::Pod {
        let mut pod = json!({
            "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}"),
                         "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"containers": [{"name": "app"}]},
            "status": {"phase": phase}
        });
        if let Some(seconds) = ready_at {
            pod["status"]["conditions"] = json!([{
                "type": "Ready", "status": "True",
                "lastTransitionTime": format!("2026-01-01T00:{:02}:{:02}Z", seconds / 60, seconds % 60)
            }]);
        }
        serde_json::from_value(pod).expect("a pod")
    }

    fn apply(state: &mut ClusterState, pod: k8s_openapi::api::core::v1::Pod) {
        state.apply_pod(&pod).expect("a valid pod");
    }

    #[test]
    fn each_pod_seen_waiting_counts_once_from_creation_until_ready() {
        let mut state = ClusterState::new();
        for name in ["a", "b", "c"] {
            apply(&mut state, pod(name, "Pending", None));
        }
        assert!(state.take_startups().is_empty());
        apply(&mut state, pod("a", "Running", Some(40)));
        apply(&mut state, pod("b", "Running", Some(75)));
        // Running but not Ready yet: not started.
        apply(&mut state, pod("c", "Running", None));
        let mut took = state.take_startups();
        took.sort();
        assert_eq!(took, [Duration::from_secs(40), Duration::from_secs(75)]);
        // Another update of a started pod, and a pod first seen running, add nothing.
        apply(&mut state, pod("a", "Running", Some(40)));
        apply(&mut state, pod("d", "Running", Some(5)));
        assert!(state.take_startups().is_empty());
        apply(&mut state, pod("c", "Running", Some(90)));
        assert_eq!(state.take_startups(), [Duration::from_secs(90)]);
    }

    #[test]
    fn a_pod_deleted_while_waiting_is_forgotten() {
        let mut state = ClusterState::new();
        apply(&mut state, pod("a", "Pending", None));
        state.delete_pod("default", "a");
        // Recreated under the same name and first seen running: not a startup it waited for.
        apply(&mut state, pod("a", "Running", Some(10)));
        assert!(state.take_startups().is_empty());
    }
}
