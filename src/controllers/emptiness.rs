//! Emptiness: a node nodewright launched that runs nothing but daemonset pods gets the
//! `karpenter.sh/emptiness-timestamp` annotation; once it has been empty for its provisioner's
//! `ttlSecondsAfterEmpty`, it is deleted (the termination finalizer then drains and terminates
//! it). A pod arriving first takes the annotation away. [`next_step`] is the pure decision; it
//! is taken again just before the delete, so a pod that arrived meanwhile keeps the node.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use k8s_openapi::api::core::v1::Node;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use nodewright_scheduling::labels;
use serde_json::json;
use tokio::sync::watch;

use crate::clock::sleep;
use crate::controllers::context::Context;
use crate::controllers::error::ControllerError;
use crate::controllers::termination::TERMINATION_REASON_ANNOTATION;
use crate::state::{ClusterState, NodeEntry, PodEntry, SharedState};

/// How often emptiness is checked when nothing else wakes the loop (simulated time).
const PERIOD: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EmptinessStep {
    Nothing,
    /// Empty since now: write the timestamp.
    MarkEmpty,
    /// A pod arrived: remove the timestamp.
    Unmark,
    /// Empty for the whole TTL: delete the node.
    Delete {
        ttl: Duration,
        empty_for: Duration,
    },
}

/// What emptiness asks of `node` (with its non-terminal `pods`) at `now`; `ttl` is its
/// provisioner's `ttlSecondsAfterEmpty` (`None`: emptiness is off for it).
pub fn next_step(
    node: &NodeEntry,
    pods: &[&PodEntry],
    ttl: Option<Duration>,
    now: SystemTime,
) -> EmptinessStep {
    let marked_at = node
        .node
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(labels::EMPTINESS_TIMESTAMP));
    let empty = pods.iter().all(|p| p.daemon || p.mirror);
    let Some(ttl) = ttl.filter(|_| node.initialized && !node.deleting) else {
        return match marked_at {
            Some(_) if !node.deleting => EmptinessStep::Unmark,
            _ => EmptinessStep::Nothing,
        };
    };
    match (empty, marked_at) {
        (false, Some(_)) => EmptinessStep::Unmark,
        (false, None) => EmptinessStep::Nothing,
        (true, None) => EmptinessStep::MarkEmpty,
        (true, Some(text)) => {
            // An unreadable timestamp is rewritten, which restarts the TTL.
            let Some(since) = text.parse::<Timestamp>().ok().map(SystemTime::from) else {
                return EmptinessStep::MarkEmpty;
            };
            let empty_for = now.duration_since(since).unwrap_or_default();
            if empty_for >= ttl {
                EmptinessStep::Delete { ttl, empty_for }
            } else {
                EmptinessStep::Nothing
            }
        }
    }
}

fn ttl_of(state: &ClusterState, node: &NodeEntry) -> Option<Duration> {
    let provisioner = node.core.labels.get(labels::PROVISIONER_NAME)?;
    let seconds = state
        .provisioner(provisioner)?
        .provisioner
        .spec
        .ttl_seconds_after_empty?;
    u64::try_from(seconds).ok().map(Duration::from_secs)
}

/// The step for every managed node now. A node (or its machine) that pods were just
/// nominated to is not marked empty: they are on their way.
fn steps(shared: &SharedState, now: SystemTime) -> Vec<(String, EmptinessStep)> {
    let state = shared.read();
    state
        .nodes()
        .filter(|n| n.core.labels.contains_key(labels::PROVISIONER_NAME))
        .map(|n| {
            let pods = state.pods_on_node(&n.core.name);
            if pods.iter().any(|p| !p.daemon && !p.mirror) {
                // The pods it waited for have landed: no more grace.
                shared.forget_node_nomination(&state, &n.core.name);
            }
            (
                n.core.name.clone(),
                next_step(n, &pods, ttl_of(&state, n), now),
            )
        })
        .filter(|(name, step)| match step {
            EmptinessStep::Nothing => false,
            EmptinessStep::MarkEmpty => !shared.is_node_nominated(&state, name, now),
            _ => true,
        })
        .collect()
}

/// Runs until `stop` turns true.
pub async fn run(ctx: Arc<Context>, mut stop: watch::Receiver<bool>) {
    let mut changes = ctx.state.changed();
    loop {
        changes.borrow_and_update();
        let now = ctx.clock.now();
        let decided = steps(&ctx.state, now);
        for (node, step) in decided {
            // Taken again on the freshest cache: a pod may have arrived since.
            let still = {
                let state = ctx.state.read();
                state.node(&node).map(|n| {
                    let pods = state.pods_on_node(&n.core.name);
                    next_step(n, &pods, ttl_of(&state, n), now)
                })
            };
            if still.as_ref() != Some(&step) {
                continue;
            }
            if let Err(error) = act(&ctx, &node, &step, now).await {
                ctx.metrics.controller_error("node.emptiness", &error);
                tracing::warn!(node = %node, %error, "emptiness");
            }
        }
        tokio::select! {
            _ = stop.wait_for(|stopped| *stopped) => return,
            changed = changes.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            () = sleep(ctx.clock.as_ref(), PERIOD) => {}
        }
    }
}

async fn act(
    ctx: &Context,
    node: &str,
    step: &EmptinessStep,
    now: SystemTime,
) -> Result<(), ControllerError> {
    let nodes: Api<Node> = Api::all(ctx.client.clone());
    let annotate = |value: serde_json::Value| {
        Patch::Merge(
            json!({ "metadata": { "annotations": { labels::EMPTINESS_TIMESTAMP: value } } }),
        )
    };
    match step {
        EmptinessStep::Nothing => Ok(()),
        EmptinessStep::MarkEmpty => {
            let stamp = Timestamp::try_from(now)
                .unwrap_or(Timestamp::UNIX_EPOCH)
                .to_string();
            let patched = nodes
                .patch(node, &PatchParams::default(), &annotate(json!(stamp)))
                .await
                .map_err(|e| ControllerError::api(format!("mark node {node} empty"), e))?;
            ctx.state.apply(&patched);
            tracing::info!(node = %node, "Added TTL to empty node");
            Ok(())
        }
        EmptinessStep::Unmark => {
            let patched = nodes
                .patch(
                    node,
                    &PatchParams::default(),
                    &annotate(serde_json::Value::Null),
                )
                .await
                .map_err(|e| ControllerError::api(format!("unmark node {node}"), e))?;
            ctx.state.apply(&patched);
            tracing::info!(node = %node, "Removed emptiness TTL from node");
            Ok(())
        }
        EmptinessStep::Delete { ttl, empty_for } => {
            // Karpenter's words name the configured TTL; the measured time, which the loop's
            // period stretches a little, goes alongside.
            tracing::info!(
                node = %node,
                empty_for_seconds = empty_for.as_secs(),
                "Triggering termination after {}s for empty node",
                ttl.as_secs()
            );
            let reason = Patch::Merge(json!({
                "metadata": { "annotations": { TERMINATION_REASON_ANNOTATION: "emptiness" } }
            }));
            nodes
                .patch(node, &PatchParams::default(), &reason)
                .await
                .map_err(|e| ControllerError::api(format!("annotate node {node}"), e))?;
            match nodes.delete(node, &DeleteParams::default()).await {
                Ok(either) => {
                    if let Some(deleting) = either.left() {
                        ctx.state.apply(&deleting);
                    }
                    // v0.31 counts ttlSecondsAfterEmpty as its `emptiness` deprovisioner's.
                    ctx.metrics
                        .disruption()
                        .action_performed("delete", "emptiness");
                    Ok(())
                }
                Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
                Err(e) => Err(ControllerError::api(format!("delete node {node}"), e)),
            }
        }
    }
}
