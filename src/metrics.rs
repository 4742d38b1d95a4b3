//! Prometheus metrics with Karpenter's names and labels, so that existing dashboards and alerts
//! keep working, plus nodewright's own `nodewright_provisioner_cost_per_hour`. One [`Metrics`]
//! owns its registry; `/metrics` serves [`Metrics::encode`].
//!
//! Names, types and labels are v0.31's, which its dashboards query: counters have no `_total`
//! suffix (`karpenter_nodes_created`) unless Karpenter registered one
//! (`karpenter_cloudprovider_errors_total`); termination and startup latencies are summaries.

mod actions;
mod catalog;
mod nodes;
mod summary;

pub use actions::{DisruptionMetrics, InterruptionMetrics};
pub use catalog::InstanceTypeMetrics;
pub use nodes::{NodeMetrics, NodeResources};
pub use summary::SummaryVec;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use nodewright_scheduling::instance_type::CapacityType;
use nodewright_scheduling::labels;
use nodewright_scheduling::resources::Resources;
use prometheus::{
    Encoder, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry,
    TextEncoder,
};

use crate::cloudprovider::CloudProviderError;
use crate::controllers::error::ControllerError;
use crate::sync::lock;

/// How a reconcile ended (`controller_runtime_reconcile_total{result}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reconciled {
    Success,
    Error,
    /// Done for now, with a later look asked for.
    RequeueAfter,
}

impl Reconciled {
    fn label(self) -> &'static str {
        match self {
            Reconciled::Success => "success",
            Reconciled::Error => "error",
            Reconciled::RequeueAfter => "requeue_after",
        }
    }
}

/// Why a machine was created (`karpenter_machines_created{reason}`).
pub const REASON_PROVISIONING: &str = "provisioning";

/// `karpenter_cloudprovider_errors_total{error}` values, as Karpenter names them.
pub const ERROR_INSUFFICIENT_CAPACITY: &str = "InsufficientCapacityError";
pub const ERROR_MACHINE_NOT_FOUND: &str = "MachineNotFoundError";

/// Karpenter's duration buckets (controller-runtime's, extended to a minute).
const DURATION_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.6, 0.7, 0.8, 0.9,
    1.0, 1.25, 1.5, 1.75, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 15.0, 20.0,
    25.0, 30.0, 40.0, 50.0, 60.0,
];

#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("metrics registry: {0}")]
    Registry(#[from] prometheus::Error),
    #[error("metrics text is not UTF-8: {0}")]
    Utf8(#[from] std::string::FromUtf8Error),
}

/// The labels of one `karpenter_pods_state` series: the pods of one namespace in one phase on
/// one node (its name, provisioner, zone, arch, capacity type, instance type; all empty while
/// unbound). Karpenter exports one series per pod, with its name and owner besides; at 30,000
/// pods that alone would outweigh the cache, so the pods of a node alike share one series.
/// `sum` over it gives what summing Karpenter's does.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PodStateLabels {
    pub namespace: String,
    pub node: String,
    pub provisioner: String,
    pub zone: String,
    pub arch: String,
    pub capacity_type: String,
    pub instance_type: String,
    pub phase: String,
}

impl PodStateLabels {
    fn values(&self) -> [&str; 8] {
        [
            &self.namespace,
            &self.node,
            &self.provisioner,
            &self.zone,
            &self.arch,
            &self.capacity_type,
            &self.instance_type,
            &self.phase,
        ]
    }
}

const POD_STATE_LABELS: [&str; 8] = [
    "namespace",
    "node",
    "provisioner",
    "zone",
    "arch",
    "capacity_type",
    "instance_type",
    "phase",
];

/// Every metric nodewright exports, in its own registry.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    nodes_created: IntCounterVec,
    nodes_terminated: IntCounterVec,
    machines_created: IntCounterVec,
    machines_terminated: IntCounterVec,
    machines_launched: IntCounterVec,
    machines_registered: IntCounterVec,
    machines_initialized: IntCounterVec,
    pods_state: GaugeVec,
    scheduling_duration: Histogram,
    reconcile_time: HistogramVec,
    reconciles: IntCounterVec,
    reconcile_errors: IntCounterVec,
    cloudprovider_duration: HistogramVec,
    cloudprovider_errors: IntCounterVec,
    provisioner_limit: GaugeVec,
    provisioner_usage: GaugeVec,
    provisioner_usage_pct: GaugeVec,
    cost_per_hour: GaugeVec,
    pods_evicted: IntCounterVec,
    controller_errors: IntCounterVec,
    disruption: DisruptionMetrics,
    instance_types: InstanceTypeMetrics,
    nodes: NodeMetrics,
    termination_time: SummaryVec,
    pods_startup_time: SummaryVec,
    simulation_duration: Histogram,
    /// The `karpenter_pods_state` series last set, so those no pod matches any more go.
    pod_series: Mutex<BTreeSet<PodStateLabels>>,
    /// Resource types with a limit or usage series, by provisioner, so they can be removed.
    provisioner_series: Mutex<HashMap<String, BTreeSet<String>>>,
}

impl Metrics {
    pub fn new() -> Result<Metrics, MetricsError> {
        let registry = Registry::new();
        let counter = |name: &str, help: &str, labels: &[&str]| {
            let metric = IntCounterVec::new(Opts::new(name, help), labels)?;
            registry.register(Box::new(metric.clone()))?;
            Ok::<_, prometheus::Error>(metric)
        };
        let gauge = |name: &str, help: &str, labels: &[&str]| {
            let metric = GaugeVec::new(Opts::new(name, help), labels)?;
            registry.register(Box::new(metric.clone()))?;
            Ok::<_, prometheus::Error>(metric)
        };
        let by_provisioner = &["provisioner"];
        let by_reason = &["reason", "provisioner"];
        let by_pool = &["nodepool", "provisioner"];
        let by_resource = &["provisioner", "resource_type"];
        let scheduling_duration = Histogram::with_opts(
            HistogramOpts::new(
                "karpenter_provisioner_scheduling_duration_seconds",
                "Seconds one scheduling decision took, from pending pods to a plan.",
            )
            .buckets(DURATION_BUCKETS.to_vec()),
        )?;
        registry.register(Box::new(scheduling_duration.clone()))?;
        // controller-runtime's names, which Karpenter's performance dashboard reads: one
        // "reconcile" is one action on one object, or one pass of a loop that decides for all.
        let reconcile_time = HistogramVec::new(
            HistogramOpts::new(
                "controller_runtime_reconcile_time_seconds",
                "Seconds each reconcile (an action on one object, or one pass of a loop) took, by controller.",
            )
            .buckets(DURATION_BUCKETS.to_vec()),
            &["controller"],
        )?;
        registry.register(Box::new(reconcile_time.clone()))?;
        let reconciles = IntCounterVec::new(
            Opts::new(
                "controller_runtime_reconcile_total",
                "Reconciles by controller and result (success, error, requeue_after).",
            ),
            &["controller", "result"],
        )?;
        registry.register(Box::new(reconciles.clone()))?;
        let reconcile_errors = IntCounterVec::new(
            Opts::new(
                "controller_runtime_reconcile_errors_total",
                "Reconciles that failed, by controller.",
            ),
            &["controller"],
        )?;
        registry.register(Box::new(reconcile_errors.clone()))?;
        let cloudprovider_duration = HistogramVec::new(
            HistogramOpts::new(
                "karpenter_cloudprovider_duration_seconds",
                "Seconds each cloud provider call took, by controller, method and provider.",
            )
            .buckets(DURATION_BUCKETS.to_vec()),
            &["controller", "method", "provider"],
        )?;
        registry.register(Box::new(cloudprovider_duration.clone()))?;
        let simulation_duration = Histogram::with_opts(
            HistogramOpts::new(
                "karpenter_provisioner_scheduling_simulation_duration_seconds",
                "Seconds one packing of pending pods onto existing and new nodes took.",
            )
            .buckets(DURATION_BUCKETS.to_vec()),
        )?;
        registry.register(Box::new(simulation_duration.clone()))?;
        let summary = |name: &str, help: &str, labels: &[&str]| {
            let metric = SummaryVec::new(name, help, labels)?;
            registry.register(Box::new(metric.clone()))?;
            Ok::<_, prometheus::Error>(metric)
        };
        Ok(Metrics {
            nodes: NodeMetrics::register(&registry)?,
            termination_time: summary(
                "karpenter_nodes_termination_time_seconds",
                "Seconds from a node's deletion to its finalizer's removal, by provisioner.",
                by_provisioner,
            )?,
            pods_startup_time: summary(
                "karpenter_pods_startup_time_seconds",
                "Seconds from a pod being seen pending to it running.",
                &[],
            )?,
            simulation_duration,
            nodes_created: counter(
                "karpenter_nodes_created",
                "Nodes registered for machines, by node pool (empty for provisioners) and provisioner.",
                by_pool,
            )?,
            nodes_terminated: counter(
                "karpenter_nodes_terminated",
                "Nodes whose termination finalizer was removed, by node pool (empty for provisioners) and provisioner.",
                by_pool,
            )?,
            machines_created: counter(
                "karpenter_machines_created",
                "Machines recorded for launch, by why (provisioning or a disruption's replacement) and their provisioner.",
                by_reason,
            )?,
            machines_terminated: counter(
                "karpenter_machines_terminated",
                "Machines deleted, by why and their provisioner.",
                by_reason,
            )?,
            machines_launched: counter(
                "karpenter_machines_launched",
                "Machines whose instance the cloud provider launched, by provisioner.",
                by_provisioner,
            )?,
            machines_registered: counter(
                "karpenter_machines_registered",
                "Machines whose node joined the cluster, by provisioner.",
                by_provisioner,
            )?,
            machines_initialized: counter(
                "karpenter_machines_initialized",
                "Machines whose node became ready for pods, by provisioner.",
                by_provisioner,
            )?,
            pods_state: gauge(
                "karpenter_pods_state",
                "Pods by namespace, phase and the kind of node they run on (provisioner, zone, arch, capacity type, instance type; empty while unbound).",
                &POD_STATE_LABELS,
            )?,
            cloudprovider_errors: counter(
                "karpenter_cloudprovider_errors_total",
                "Failed cloud provider calls, by controller, method, provider and error kind.",
                &["controller", "method", "provider", "error"],
            )?,
            provisioner_limit: gauge(
                "karpenter_provisioner_limit",
                "A provisioner's spec.limits, per resource type, in Kubernetes units.",
                by_resource,
            )?,
            provisioner_usage: gauge(
                "karpenter_provisioner_usage",
                "Capacity of the nodes a provisioner launched, per resource type, in Kubernetes units.",
                by_resource,
            )?,
            provisioner_usage_pct: gauge(
                "karpenter_provisioner_usage_pct",
                "Usage as a percentage (0-100) of the limit, per provisioner and resource type.",
                by_resource,
            )?,
            cost_per_hour: gauge(
                "nodewright_provisioner_cost_per_hour",
                "US dollars per hour of the running nodes a provisioner launched. Labeled by provisioner name and capacity type.",
                &["provisioner", "capacity_type"],
            )?,
            pods_evicted: counter(
                "nodewright_pods_evicted_total",
                "Pods evicted from nodes being terminated.",
                &[],
            )?,
            controller_errors: counter(
                "nodewright_controller_errors_total",
                "Failed controller actions (each is retried with backoff), by controller and kind (api_conflict, cloud_retryable, panic, …).",
                &["controller", "kind"],
            )?,
            disruption: DisruptionMetrics::register(&registry)?,
            instance_types: InstanceTypeMetrics::register(&registry)?,
            scheduling_duration,
            reconcile_time,
            reconciles,
            reconcile_errors,
            cloudprovider_duration,
            registry,
            pod_series: Mutex::new(BTreeSet::new()),
            provisioner_series: Mutex::new(HashMap::new()),
        })
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The Prometheus text exposition of every metric (what `/metrics` answers).
    pub fn encode(&self) -> Result<String, MetricsError> {
        let mut buffer = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut buffer)?;
        Ok(String::from_utf8(buffer)?)
    }

    /// One pod evicted by a drain.
    /// Counts a failed action of `controller`.
    pub fn controller_error(&self, controller: &str, error: &ControllerError) {
        self.controller_errors
            .with_label_values(&[controller, error.metric_label()])
            .inc();
    }

    /// Failed actions of `controller` of `kind` so far.
    pub fn controller_errors(&self, controller: &str, kind: &str) -> u64 {
        self.controller_errors
            .with_label_values(&[controller, kind])
            .get()
    }

    pub fn pod_evicted(&self) {
        self.pods_evicted.with_label_values::<&str>(&[]).inc();
    }

    pub fn node_created(&self, provisioner: &str) {
        self.nodes_created
            .with_label_values(&["", provisioner])
            .inc();
    }

    /// A node's finalizer was removed `took` after its deletion.
    pub fn node_terminated(&self, provisioner: &str, took: Duration) {
        self.nodes_terminated
            .with_label_values(&["", provisioner])
            .inc();
        self.termination_time
            .observe(&[provisioner], took.as_secs_f64());
    }

    /// A pod seen pending runs `took` later.
    pub fn pod_started(&self, took: Duration) {
        self.pods_startup_time.observe(&[], took.as_secs_f64());
    }

    /// Every node's resource gauges.
    pub fn set_node_resources(&self, nodes: &[NodeResources]) {
        self.nodes.set(nodes);
    }

    /// A machine was created; `reason` is [`REASON_PROVISIONING`] or a disruption's
    /// `<deprovisioner>/replace`.
    pub fn machine_created(&self, reason: &str, provisioner: &str) {
        self.machines_created
            .with_label_values(&[reason, provisioner])
            .inc();
    }

    /// A machine was deleted; `reason` says why (`emptiness`, `drift`, `liveness`, …).
    pub fn machine_terminated(&self, reason: &str, provisioner: &str) {
        self.machines_terminated
            .with_label_values(&[reason, provisioner])
            .inc();
    }

    pub fn machine_launched(&self, provisioner: &str) {
        self.machines_launched
            .with_label_values(&[provisioner])
            .inc();
    }

    pub fn machine_registered(&self, provisioner: &str) {
        self.machines_registered
            .with_label_values(&[provisioner])
            .inc();
    }

    pub fn machine_initialized(&self, provisioner: &str) {
        self.machines_initialized
            .with_label_values(&[provisioner])
            .inc();
    }

    /// How long one scheduling decision took (for us, the packing is the whole decision).
    /// One reconcile of `controller`: an action on one object, or one pass of a loop.
    pub fn reconciled(&self, controller: &str, result: Reconciled, took: Duration) {
        self.reconcile_time
            .with_label_values(&[controller])
            .observe(took.as_secs_f64());
        self.reconciles
            .with_label_values(&[controller, result.label()])
            .inc();
        if result == Reconciled::Error {
            self.reconcile_errors.with_label_values(&[controller]).inc();
        }
    }

    pub fn observe_scheduling(&self, took: Duration) {
        self.scheduling_duration.observe(took.as_secs_f64());
        self.simulation_duration.observe(took.as_secs_f64());
    }

    /// One cloud provider call: its duration and, when it failed, its error.
    pub fn observe_cloudprovider_call(
        &self,
        controller: &str,
        method: &str,
        provider: &str,
        took: Duration,
        error: Option<&CloudProviderError>,
    ) {
        self.cloudprovider_duration
            .with_label_values(&[controller, method, provider])
            .observe(took.as_secs_f64());
        if let Some(error) = error {
            self.cloudprovider_errors
                .with_label_values(&[controller, method, provider, error_label(error)])
                .inc();
        }
    }

    /// Sets `karpenter_pods_state` to these counts; series no pod matches any more go.
    pub fn set_pods_state(&self, counts: &BTreeMap<PodStateLabels, u64>) {
        let mut series = lock(&self.pod_series);
        for gone in series.iter().filter(|labels| !counts.contains_key(*labels)) {
            // Absent already is fine: the series is gone either way.
            let _ = self.pods_state.remove_label_values(&gone.values());
        }
        for (labels, count) in counts {
            // Counts of pods are far below 2^53: exact as f64.
            self.pods_state
                .with_label_values(&labels.values())
                .set(*count as f64);
        }
        *series = counts.keys().cloned().collect();
    }

    /// A provisioner's limits, usage and usage percentage per resource type, in Kubernetes units
    /// (cores, bytes, counts). Resource types it no longer has lose their series.
    pub fn set_provisioner_resources(
        &self,
        provisioner: &str,
        limits: &Resources,
        usage: &Resources,
    ) {
        let mut series = lock(&self.provisioner_series);
        let known = series.entry(provisioner.to_string()).or_default();
        let mut now = BTreeSet::new();
        for (resource, value) in usage.iter().filter(|(_, v)| *v != 0) {
            self.provisioner_usage
                .with_label_values(&[provisioner, resource])
                .set(kubernetes_units(resource, value));
            now.insert(resource.to_string());
        }
        for (resource, limit) in limits.iter().filter(|(_, v)| *v != 0) {
            self.provisioner_limit
                .with_label_values(&[provisioner, resource])
                .set(kubernetes_units(resource, limit));
            let pct = (usage.get(resource) as f64 / limit as f64 * 100.0).clamp(0.0, 100.0);
            self.provisioner_usage_pct
                .with_label_values(&[provisioner, resource])
                .set(pct);
            now.insert(resource.to_string());
        }
        for gone in known.difference(&now) {
            self.remove_resource_series(provisioner, gone);
        }
        *known = now;
    }

    /// The $/hour of a provisioner's running nodes of one capacity type.
    pub fn set_cost_per_hour(&self, provisioner: &str, capacity_type: CapacityType, usd: f64) {
        self.cost_per_hour
            .with_label_values(&[provisioner, capacity_type_label(capacity_type)])
            .set(usd);
    }

    /// Removes every series of a deleted provisioner.
    pub fn forget_provisioner(&self, provisioner: &str) {
        if let Some(resources) = lock(&self.provisioner_series).remove(provisioner) {
            for resource in &resources {
                self.remove_resource_series(provisioner, resource);
            }
        }
        for capacity_type in [CapacityType::Spot, CapacityType::OnDemand] {
            let _ = self
                .cost_per_hour
                .remove_label_values(&[provisioner, capacity_type_label(capacity_type)]);
        }
    }

    fn remove_resource_series(&self, provisioner: &str, resource: &str) {
        for gauge in [
            &self.provisioner_limit,
            &self.provisioner_usage,
            &self.provisioner_usage_pct,
        ] {
            let _ = gauge.remove_label_values(&[provisioner, resource]);
        }
    }
}

impl Metrics {
    pub fn disruption(&self) -> &DisruptionMetrics {
        &self.disruption
    }

    pub fn instance_types(&self) -> &InstanceTypeMetrics {
        &self.instance_types
    }
}

/// The `error` label Karpenter gives a cloud provider error.
pub fn error_label(error: &CloudProviderError) -> &'static str {
    match error {
        CloudProviderError::InsufficientCapacity { .. } => ERROR_INSUFFICIENT_CAPACITY,
        CloudProviderError::NotFound { .. } => ERROR_MACHINE_NOT_FOUND,
        _ => "",
    }
}

fn capacity_type_label(capacity_type: CapacityType) -> &'static str {
    match capacity_type {
        CapacityType::Spot => labels::CAPACITY_TYPE_SPOT,
        CapacityType::OnDemand => labels::CAPACITY_TYPE_ON_DEMAND,
    }
}

/// The core counts cpu in millicores; Kubernetes (and Karpenter's gauges) in cores.
fn kubernetes_units(resource: &str, value: i64) -> f64 {
    if resource == labels::RESOURCE_CPU {
        value as f64 / 1000.0
    } else {
        value as f64
    }
}

#[cfg(test)]
mod tests;
