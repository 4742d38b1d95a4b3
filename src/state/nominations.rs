//! Nominations: the nodes and machines pods are on their way to. Emptiness and disruption leave
//! such a node alone for a grace window, and past it for as long as pods of the batch that
//! nominated it still wait for the kube-scheduler, which binds a few hundred pods a second at
//! best: a scale-up of thousands of pods keeps a new node empty longer than any fixed window.
//! The whole batch counts, not the pods nominated to this node: the kube-scheduler fills nodes
//! in its own order, so the pods that end up here may be ones we meant for another. The wait is
//! bounded ([`PENDING_HOLD`]) so a pod that is never placed cannot hold a node forever.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, SystemTime};

use super::ClusterState;

/// How long past its grace window a nomination holds while its batch's pods are still pending.
pub const PENDING_HOLD: Duration = Duration::from_secs(5 * 60);

#[derive(Debug, Default)]
pub struct Nominations {
    targets: HashMap<String, Target>,
    batches: HashMap<u64, Batch>,
    /// Each pod's latest batch: a pod nominated again no longer holds the older batch's nodes.
    batch_of_pod: HashMap<String, u64>,
    next_batch: u64,
}

#[derive(Debug)]
struct Target {
    until: SystemTime,
    batches: BTreeSet<u64>,
}

#[derive(Debug)]
struct Batch {
    until: SystemTime,
    /// Pods (`namespace/name`) still expected to land.
    pods: BTreeSet<String>,
}

impl Nominations {
    /// Pods are on their way to `target` until at least `until`.
    pub fn nominate(&mut self, target: &str, until: SystemTime) {
        self.target(target, until);
    }

    /// One batch nominated `pods` (`namespace/name`) to `targets`: each target is expected to
    /// receive pods until `until`, and past it while any of them still waits.
    pub fn nominate_batch(&mut self, targets: &[&str], until: SystemTime, pods: &[String]) {
        let id = self.next_batch;
        self.next_batch += 1;
        for pod in pods {
            if let Some(older) = self.batch_of_pod.insert(pod.clone(), id)
                && let Some(batch) = self.batches.get_mut(&older)
            {
                batch.pods.remove(pod);
            }
        }
        let pods = pods.iter().cloned().collect();
        self.batches.insert(id, Batch { until, pods });
        for target in targets {
            self.target(target, until).batches.insert(id);
        }
    }

    fn target(&mut self, target: &str, until: SystemTime) -> &mut Target {
        let entry = self
            .targets
            .entry(target.to_string())
            .or_insert_with(|| Target {
                until,
                batches: BTreeSet::new(),
            });
        entry.until = entry.until.max(until);
        entry
    }

    pub fn forget(&mut self, target: &str) {
        self.targets.remove(target);
    }

    /// Whether `target` is still expected to receive pods at `now`: within its window, or a pod
    /// of a batch that nominated it still waits in `state` (unbound, not being deleted) and the
    /// hold has not run out. Pods that landed or went away are dropped as it goes, and so are
    /// spent nominations.
    pub fn holds(&mut self, target: &str, now: SystemTime, state: &ClusterState) -> bool {
        self.prune(now);
        let Some(entry) = self.targets.get(target) else {
            return false;
        };
        if entry.until > now {
            return true;
        }
        let mut waiting_pods = false;
        for id in &entry.batches {
            let Some(batch) = self.batches.get_mut(id) else {
                continue;
            };
            let landed: Vec<String> = batch
                .pods
                .iter()
                .filter(|pod| !waiting(state, pod))
                .cloned()
                .collect();
            for pod in &landed {
                batch.pods.remove(pod);
                self.batch_of_pod.remove(pod);
            }
            waiting_pods |= !batch.pods.is_empty();
        }
        waiting_pods
    }

    fn prune(&mut self, now: SystemTime) {
        let spent = |until: SystemTime| until + PENDING_HOLD <= now;
        self.targets.retain(|_, t| !spent(t.until));
        let done: Vec<u64> = self
            .batches
            .iter()
            .filter(|(_, b)| spent(b.until) || b.pods.is_empty())
            .map(|(id, _)| *id)
            .collect();
        if done.is_empty() {
            return;
        }
        for id in &done {
            for pod in self.batches.remove(id).map(|b| b.pods).unwrap_or_default() {
                self.batch_of_pod.remove(&pod);
            }
        }
        let batches = &self.batches;
        for target in self.targets.values_mut() {
            target.batches.retain(|id| batches.contains_key(id));
        }
    }
}

fn waiting(state: &ClusterState, key: &str) -> bool {
    let Some((namespace, name)) = key.split_once('/') else {
        return false;
    };
    state
        .pod(namespace, name)
        .is_some_and(|p| p.node_name.is_none() && !p.deleting && !p.terminal)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn state_with(pods: &[(&str, Option<&str>)]) -> ClusterState {
        let mut state = ClusterState::new();
        for (name, node) in pods {
            let mut pod = json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": name, "namespace": "default"},
                "spec": {"containers": [{"name": "c"}]},
                "status": {"phase": "Pending"},
            });
            if let Some(node) = node {
                pod["spec"]["nodeName"] = json!(node);
            }
            let pod = serde_json::from_value(pod).expect("a valid pod");
            state.apply_pod(&pod).expect("a pod the cache accepts");
        }
        state
    }

    fn at(seconds: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(seconds)
    }

    #[test]
    fn a_nomination_holds_through_its_window_without_pods() {
        let state = state_with(&[]);
        let mut nominations = Nominations::default();
        nominations.nominate("m1", at(20));
        assert!(nominations.holds("m1", at(19), &state));
        assert!(!nominations.holds("m1", at(20), &state));
        assert!(!nominations.holds("other", at(1), &state));
    }

    #[test]
    fn pending_pods_hold_every_target_of_their_batch_until_the_hold_runs_out() {
        let state = state_with(&[("a", None), ("b", Some("n1"))]);
        let mut nominations = Nominations::default();
        let pods = ["default/a".to_string(), "default/b".to_string()];
        nominations.nominate_batch(&["m1", "m2"], at(20), &pods);
        // b landed (anywhere); a still waits, and may yet land on either.
        assert!(nominations.holds("m1", at(200), &state));
        assert!(nominations.holds("m2", at(200), &state));
        let out = at(20) + PENDING_HOLD;
        assert!(!nominations.holds("m1", out, &state));
    }

    #[test]
    fn pods_that_landed_or_are_gone_hold_nothing() {
        let state = state_with(&[("bound", Some("n1"))]);
        let mut nominations = Nominations::default();
        let pods = ["default/bound".to_string(), "default/gone".to_string()];
        nominations.nominate_batch(&["m1"], at(20), &pods);
        assert!(nominations.holds("m1", at(19), &state));
        assert!(!nominations.holds("m1", at(21), &state));
    }

    #[test]
    fn a_pod_in_a_later_batch_no_longer_holds_the_first_batchs_targets() {
        let state = state_with(&[("a", None)]);
        let mut nominations = Nominations::default();
        nominations.nominate_batch(&["m1"], at(20), &["default/a".into()]);
        nominations.nominate_batch(&["m2"], at(40), &["default/a".into()]);
        assert!(!nominations.holds("m1", at(21), &state));
        assert!(nominations.holds("m2", at(100), &state));
        nominations.forget("m2");
        assert!(!nominations.holds("m2", at(21), &state));
    }
}
