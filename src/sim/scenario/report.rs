//! What a run prints: step lines prefixed with simulated time, the log timer for the
//! controller's own lines, and the final report (text summary or one JSON object).
//!
//! `-o json` prints one object whose field names are a contract (add, never rename):
//! `{"nodes": [{"name", "instanceType", "zone", "capacityType", "provisioner", "pricePerHour",
//! "pods"}], "pendingPods", "launched", "terminated", "costPerHour", "unpricedNodes",
//! "simulatedSeconds", "steps": [{"step", "ok", "at"}]}`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, ListParams};
use kube::{Client, Resource, ResourceExt};
use nodewright_scheduling::instance_type::{CapacityType, InstanceType};
use nodewright_scheduling::labels;
use serde::Serialize;
use tracing_subscriber::fmt::writer::BoxMakeWriter;
use tracing_subscriber::registry::LookupSpan;

use crate::telemetry::KarpenterFormat;

use super::cloud::ObservedCloud;
use super::run::OutputFormat;
use super::steps::StepFailure;
use crate::clock::SimClock;
use crate::cloudprovider::{CloudProvider, NodeTemplate};

/// The end of a run.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub nodes: Vec<NodeReport>,
    /// Pods not bound to a node (`namespace/name`), not being deleted.
    pub pending_pods: Vec<String>,
    /// Distinct instances seen running over the run.
    pub launched: usize,
    /// Distinct instances seen running and later gone.
    pub terminated: usize,
    /// The sum of the nodes' known prices, US dollars per hour.
    pub cost_per_hour: f64,
    /// Nodes whose price is unknown (not in `costPerHour`): no price table, or a type it lacks.
    pub unpriced_nodes: usize,
    pub simulated_seconds: f64,
    pub steps: Vec<StepReport>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeReport {
    pub name: String,
    pub instance_type: Option<String>,
    pub zone: Option<String>,
    pub capacity_type: Option<String>,
    /// `karpenter.sh/provisioner-name`; `None` for nodes nodewright does not manage.
    pub provisioner: Option<String>,
    /// From the cloud's offering of this type, zone and capacity type (on-demand when the node
    /// names no capacity type); `None` when no price is known.
    pub price_per_hour: Option<f64>,
    /// The price is an estimate (spot, offline: a fraction of the on-demand list price).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub price_estimated: bool,
    /// Pods bound to the node (`namespace/name`), not finished.
    pub pods: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StepReport {
    /// The step's label, e.g. `until podsRunning=4`.
    pub step: String,
    pub ok: bool,
    /// Simulated seconds since the start when the step ended (or was skipped).
    pub at: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip)]
    pub failure: Option<StepFailure>,
}

impl Report {
    /// 0 when every step succeeded; 1 when an `until` timed out (or the run failed); 2 when the
    /// API server refused what the scenario asked for.
    pub fn exit_code(&self) -> u8 {
        self.steps
            .iter()
            .filter_map(|step| step.failure.as_ref())
            .find(|failure| **failure != StepFailure::Skipped)
            .map_or(0, StepFailure::exit_code)
    }

    pub fn json(&self) -> Result<String, serde_json::Error> {
        serde_json::to_string_pretty(self)
    }

    /// The closing summary of the text output.
    pub fn text(&self) -> String {
        let running: usize = self.nodes.iter().map(|n| n.pods.len()).sum();
        // A sum over some nodes must not read as the whole cluster's cost.
        let unpriced = match self.unpriced_nodes {
            0 => String::new(),
            n => format!(" + {n} node(s) at an unknown price"),
        };
        let estimated = if self.nodes.iter().any(|n| n.price_estimated) {
            " (spot estimated)"
        } else {
            ""
        };
        let mut text = format!(
            "{} {} node(s), {running} pod(s) on nodes, {} pending; launched {}, terminated {}; ${:.4}/hour{estimated}{unpriced}\n",
            stamp(self.simulated_seconds),
            self.nodes.len(),
            self.pending_pods.len(),
            self.launched,
            self.terminated,
            self.cost_per_hour,
        );
        let width = self.nodes.iter().map(|n| n.name.len()).max().unwrap_or(0);
        for node in &self.nodes {
            let or_dash = |value: &Option<String>| value.clone().unwrap_or_else(|| "-".into());
            let price = match (node.price_per_hour, node.price_estimated) {
                (None, _) => "-".to_string(),
                (Some(p), false) => format!("${p:.4}/h"),
                (Some(p), true) => format!("~${p:.4}/h est."),
            };
            let _ = writeln!(
                text,
                "  {:<width$} {:<14} {:<12} {:<9} {:<12} {:<10} {} pod(s)",
                node.name,
                or_dash(&node.instance_type),
                or_dash(&node.zone),
                or_dash(&node.capacity_type),
                or_dash(&node.provisioner),
                price,
                node.pods.len(),
            );
        }
        text
    }
}

/// `[  32.0s]`: simulated seconds, as every line of a run starts.
pub fn stamp(seconds: f64) -> String {
    format!("[{seconds:>6.1}s]")
}

/// Simulated seconds rounded to a tenth, as reported.
pub fn seconds(elapsed: Duration) -> f64 {
    (elapsed.as_secs_f64() * 10.0).round() / 10.0
}

/// Reads the cluster and the cloud into a report.
pub(crate) async fn build(
    client: &Client,
    cloud: &ObservedCloud,
    catalog: &[Arc<InstanceType>],
    steps: Vec<StepReport>,
    elapsed: Duration,
) -> Result<Report, kube::Error> {
    // One last look, so instances gone since the kubelets' last pass count as terminated.
    let _ = cloud.list().await;
    // The fake prices every offering; a real cloud needs a template's subnets to answer, so
    // the scenario's own catalog stands in.
    let offered = cloud.instance_types(&NodeTemplate::default()).await.ok();
    let types: Vec<&InstanceType> = match &offered {
        Some(types) if !types.is_empty() => types.iter().collect(),
        _ => catalog.iter().map(Arc::as_ref).collect(),
    };
    let nodes = Api::<Node>::all(client.clone())
        .list(&ListParams::default())
        .await?
        .items;
    let pods = Api::<Pod>::all(client.clone())
        .list(&ListParams::default())
        .await?
        .items;
    let mut on_node: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut pending_pods = Vec::new();
    for pod in &pods {
        let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
        if matches!(phase, Some("Succeeded" | "Failed")) {
            continue;
        }
        let key = format!("{}/{}", pod.namespace().unwrap_or_default(), pod.name_any());
        match pod.spec.as_ref().and_then(|s| s.node_name.as_deref()) {
            Some(node) if !node.is_empty() => {
                on_node.entry(node.to_string()).or_default().push(key)
            }
            _ if pod.meta().deletion_timestamp.is_none() => pending_pods.push(key),
            _ => {}
        }
    }
    let nodes: Vec<NodeReport> = nodes
        .iter()
        .map(|node| {
            let label = |key: &str| node.labels().get(key).cloned();
            let instance_type = label(labels::INSTANCE_TYPE);
            let zone = label(labels::ZONE);
            let capacity_type = label(labels::CAPACITY_TYPE);
            let price_per_hour = match (&instance_type, &zone) {
                (Some(name), Some(zone)) => price(&types, name, zone, capacity_type.as_deref()),
                _ => None,
            };
            let mut pods = on_node.remove(&node.name_any()).unwrap_or_default();
            pods.sort();
            let price_estimated = price_per_hour.is_some()
                && capacity_type.as_deref() == Some(labels::CAPACITY_TYPE_SPOT)
                && cloud.estimates_spot_prices();
            NodeReport {
                name: node.name_any(),
                instance_type,
                zone,
                capacity_type,
                provisioner: label(labels::PROVISIONER_NAME),
                price_per_hour,
                price_estimated,
                pods,
            }
        })
        .collect();
    pending_pods.sort();
    // A fold from +0.0: an empty f64 sum is -0.0, which would print as `$-0.0000`.
    let cost = nodes
        .iter()
        .filter_map(|n| n.price_per_hour)
        .fold(0.0, |total, price| total + price);
    let unpriced_nodes = nodes.iter().filter(|n| n.price_per_hour.is_none()).count();
    Ok(Report {
        nodes,
        pending_pods,
        launched: cloud.launched(),
        terminated: cloud.terminated(),
        cost_per_hour: (cost * 1e6).round() / 1e6,
        unpriced_nodes,
        simulated_seconds: seconds(elapsed),
        steps,
    })
}

fn price(types: &[&InstanceType], name: &str, zone: &str, capacity: Option<&str>) -> Option<f64> {
    let capacity_type = match capacity {
        Some(labels::CAPACITY_TYPE_SPOT) => CapacityType::Spot,
        _ => CapacityType::OnDemand,
    };
    types
        .iter()
        .find(|t| t.name == name)?
        .offerings
        .iter()
        .find(|o| o.zone == zone && o.capacity_type == capacity_type)?
        .price_per_hour
}

/// The log layer of a simulation: the controller's lines in Karpenter's console layout, stamped
/// with simulated time, to stdout with the step lines in text mode, to stderr in JSON mode
/// (stdout then holds only the report). The caller adds its filter and installs it.
pub fn log_layer<S>(clock: Arc<SimClock>, output: OutputFormat) -> impl tracing_subscriber::Layer<S>
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
{
    let writer = match output {
        OutputFormat::Text => BoxMakeWriter::new(std::io::stdout),
        OutputFormat::Json => BoxMakeWriter::new(std::io::stderr),
    };
    tracing_subscriber::fmt::layer()
        .event_format(KarpenterFormat { json: false, clock })
        .with_writer(writer)
}
