//! Nodes that already exist (or are launching) and the pods bound to them.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::labels;
use crate::pod::Pod;
use crate::resources::Resources;
use crate::taints::Taint;

/// A node the cluster already has, or a machine launched but not yet registered (`in_flight`).
/// Pending pods go to these before any new machine is considered.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ExistingNode {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    /// Taints that keep pods off. For an in-flight machine leave out its startup taints: they
    /// are expected to go away.
    pub taints: Vec<Taint>,
    pub allocatable: Resources,
    /// What counts against the provisioner's limits; zero means "use allocatable".
    pub capacity: Resources,
    /// Pods already bound (or, for an in-flight machine, nominated) to the node: their requests
    /// are in use and they count for topology. Shared, so that building a batch's input from a
    /// cache of thousands of pods copies none of them.
    pub pods: Vec<Arc<Pod>>,
    /// True for a machine that has no registered node yet: its daemonset pods are not bound, so
    /// their requests are reserved on top of `pods`.
    pub in_flight: bool,
    /// Cordoned: takes no new pods.
    pub unschedulable: bool,
}

impl ExistingNode {
    /// The provisioner that launched it, from its `karpenter.sh/provisioner-name` label.
    pub fn provisioner(&self) -> Option<&str> {
        self.labels
            .get(labels::PROVISIONER_NAME)
            .map(String::as_str)
    }

    /// Capacity for limit accounting.
    pub fn counted_capacity(&self) -> &Resources {
        if self.capacity.is_zero() {
            &self.allocatable
        } else {
            &self.capacity
        }
    }

    /// Sum of the requests of the pods on it.
    pub fn requested(&self) -> Resources {
        let mut total = Resources::default();
        for pod in &self.pods {
            total += &pod.requests;
            if pod.requests.pods == 0 {
                total.pods += 1;
            }
        }
        total
    }
}
