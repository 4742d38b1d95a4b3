//! `nodewright simulate SCENARIO`: a scenario file run against the simulated cluster.
//!
//! The scenario file is a contract (keys are added, never renamed):
//!
//! ```yaml
//! region: us-east-1            # optional; else the price file's region, else us-east-1
//! prices: prices.json          # optional, relative to the scenario file
//! nodes: nodes.yaml            # optional: pre-existing Ready nodes nodewright does not manage
//! settings:                    # optional: the controller's settings, by Karpenter's names
//!   FEATURE_GATES: SpotToSpotConsolidation=true   # an environment variable's name, or
//!   batchIdleDuration: 2s                          # a karpenter-global-settings key
//! steps:
//!   - apply: provisioner.yaml  # file (multi-doc or kind: List), inline object, or a list of those
//!   - scale: {deployment: inflate, namespace: default, replicas: 4}
//!   - delete: {kind: Deployment, namespace: default, name: inflate}
//!   - wait: 90s                # simulated time
//!   - until: {podsRunning: 4, timeout: 5m}   # also nodes, managedNodes, pendingPods
//! ```
//!
//! - [`parse`]: reading a scenario into [`Scenario`], every referenced file read and checked up
//!   front, so a bad scenario fails before anything runs ([`ScenarioError`], exit code 2).
//! - [`run`]: [`Simulation`] assembles the cluster (API server, scheduler, deployment
//!   controller, kubelets, cloud) on one [`crate::clock::SimClock`] and runs the steps; the
//!   controller is plugged in as a [`ControllerHook`].
//! - [`steps`]: what each step does against the API server.
//! - [`cloud`]: the cloud the simulation launches in, watched for launches and terminations.
//! - [`controller`]: the controller as a simulation runs it.
//! - [`cluster`]: seeding the pre-existing nodes and the kubelet of their pods.
//! - [`report`]: the text lines, the final JSON object and the log timer.

pub mod cloud;
pub mod cluster;
pub mod controller;
pub mod parse;
pub mod report;
pub mod run;
pub mod steps;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use kube::api::ApiResource;
use serde_json::Value;

use crate::plan::Offerings;

pub use cloud::{AwsSimOptions, CloudKind, ObservedCloud};
pub use controller::{controller_hook, controller_hook_binding_pods, controller_hook_with};
pub use parse::ScenarioError;
pub use report::{NodeReport, Report, StepReport, log_layer};
pub use run::{
    ControllerHook, ControllerParts, DEFAULT_SPEED, OutputFormat, Pacing, RunningSimulation,
    Simulation, SimulationError, SimulationOptions,
};
pub use steps::{Counts, StepFailure};

/// A parsed scenario: every file it names read, every object checked to be one the simulated
/// API server serves.
#[derive(Debug)]
pub struct Scenario {
    /// The scenario file (relative paths in it are relative to its directory).
    pub file: PathBuf,
    pub region: String,
    /// The price file, resolved against the scenario's directory.
    pub prices: Option<PathBuf>,
    /// The region's instance types from the embedded catalog, priced when `prices` is given.
    pub offerings: Offerings,
    /// Pre-existing nodes (from `nodes:`), each with a Ready condition and allocatable set.
    pub nodes: Vec<Value>,
    /// The controller's settings by name (`settings:`), as [`crate::settings::named`] reads them.
    pub settings: BTreeMap<String, String>,
    pub steps: Vec<Step>,
}

/// One step of a scenario.
#[derive(Debug, Clone)]
pub struct Step {
    /// 1-based position in `steps`, as errors name it.
    pub number: usize,
    /// How the step is shown: `apply provisioner.yaml`, `until podsRunning=4`.
    pub label: String,
    pub action: Action,
}

#[derive(Debug, Clone)]
pub enum Action {
    /// Create each object, or replace it when it exists.
    Apply(Vec<ApplyObject>),
    Scale {
        namespace: String,
        deployment: String,
        replicas: i32,
    },
    Delete {
        resource: ApiResource,
        /// `None` for cluster-scoped kinds.
        namespace: Option<String>,
        name: String,
    },
    /// Let simulated time pass.
    Wait(Duration),
    Until(Until),
}

/// An object to apply and where it came from (`deployment.yaml, document 2`, `inline`).
#[derive(Debug, Clone)]
pub struct ApplyObject {
    pub origin: String,
    pub resource: ApiResource,
    pub namespaced: bool,
    pub object: Value,
}

impl ApplyObject {
    /// `Deployment default/inflate` or `Provisioner default`.
    pub fn describe(&self) -> String {
        let name = self.object["metadata"]["name"].as_str().unwrap_or_default();
        match self.namespace() {
            Some(namespace) => format!("{} {namespace}/{name}", self.resource.kind),
            None => format!("{} {name}", self.resource.kind),
        }
    }

    /// The object's namespace (`default` when it names none); `None` when cluster-scoped.
    pub fn namespace(&self) -> Option<String> {
        self.namespaced.then(|| {
            self.object["metadata"]["namespace"]
                .as_str()
                .unwrap_or("default")
                .to_string()
        })
    }
}

/// Wait until every count matches, at most `timeout` of simulated time.
#[derive(Debug, Clone, PartialEq)]
pub struct Until {
    pub conditions: Vec<(Count, usize)>,
    pub timeout: Duration,
}

/// What an `until` step counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Count {
    /// Pods in phase Running and not being deleted.
    PodsRunning,
    /// Node objects.
    Nodes,
    /// Nodes labelled `karpenter.sh/provisioner-name`.
    ManagedNodes,
    /// Pods not bound to a node yet (unschedulable or not yet scheduled), not being deleted.
    PendingPods,
}

impl Count {
    /// The scenario key.
    pub fn key(self) -> &'static str {
        match self {
            Count::PodsRunning => "podsRunning",
            Count::Nodes => "nodes",
            Count::ManagedNodes => "managedNodes",
            Count::PendingPods => "pendingPods",
        }
    }
}

/// An `until` step's default timeout.
pub const DEFAULT_UNTIL_TIMEOUT: Duration = Duration::from_secs(300);
