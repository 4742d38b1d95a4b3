//! The scenario's pre-existing nodes: created Ready, and a kubelet for them that starts the pods
//! bound to them and finishes those being deleted. (The simulated kubelets of
//! [`crate::sim::kubelet`] only serve nodes of cloud instances.)

use std::collections::BTreeSet;
use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, Resource, ResourceExt};
use serde_json::{Value, json};

use crate::clock::Clock;

/// Creates each node and then posts its status (a create drops `.status`, as upstream).
pub(crate) async fn seed_nodes(client: &Client, nodes: &[Value]) -> Result<(), String> {
    let api: Api<Node> = Api::all(client.clone());
    for object in nodes {
        let node: Node = serde_json::from_value(object.clone())
            .map_err(|error| format!("a scenario node does not decode: {error}"))?;
        let name = node.name_any();
        let mut fresh = node.clone();
        fresh.metadata.resource_version = None;
        fresh.metadata.uid = None;
        api.create(&PostParams::default(), &fresh)
            .await
            .map_err(|error| format!("cannot create node {name}: {error}"))?;
        let status = json!({"status": object.get("status").cloned().unwrap_or(Value::Null)});
        api.patch_status(&name, &PatchParams::default(), &Patch::Merge(status))
            .await
            .map_err(|error| format!("cannot report the status of node {name}: {error}"))?;
    }
    Ok(())
}

/// The kubelet of the pre-existing `nodes`: every `poll`, pods bound to them become Running and
/// Ready, and pods being deleted are finished (deleted with grace period 0).
pub(crate) async fn run_static_kubelet(
    client: Client,
    nodes: BTreeSet<String>,
    poll: Duration,
    clock: Arc<dyn Clock>,
    shutdown: impl Future<Output = ()> + Send,
) {
    if nodes.is_empty() {
        return;
    }
    let mut shutdown = pin!(shutdown);
    loop {
        let started = std::time::Instant::now();
        if let Err(error) = tend(&client, &nodes).await {
            tracing::debug!(%error, "simulated kubelet of the scenario's nodes");
        }
        // Its writes are few (the scenario's own nodes): the whole pass paces it.
        let pause = crate::sim::poll_pause(poll, started.elapsed(), clock.as_ref());
        tokio::select! {
            () = &mut shutdown => return,
            () = tokio::time::sleep(pause) => {}
        }
    }
}

async fn tend(client: &Client, nodes: &BTreeSet<String>) -> Result<(), kube::Error> {
    let pods = Api::<Pod>::all(client.clone())
        .list(&ListParams::default())
        .await?
        .items;
    for pod in &pods {
        let bound = pod.spec.as_ref().and_then(|s| s.node_name.as_deref());
        if !bound.is_some_and(|node| nodes.contains(node)) {
            continue;
        }
        let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
        if matches!(phase, Some("Succeeded" | "Failed")) {
            continue;
        }
        let namespace = pod.namespace().unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(client.clone(), &namespace);
        let outcome = if pod.meta().deletion_timestamp.is_some() {
            api.delete(&pod.name_any(), &DeleteParams::default().grace_period(0))
                .await
                .map(|_| ())
        } else if phase != Some("Running") {
            let conditions: Vec<Value> =
                ["Initialized", "Ready", "ContainersReady", "PodScheduled"]
                    .map(|kind| json!({"type": kind, "status": "True"}))
                    .into();
            let patch = json!({"status": {"phase": "Running", "conditions": conditions}});
            api.patch_status(
                &pod.name_any(),
                &PatchParams::default(),
                &Patch::Strategic(patch),
            )
            .await
            .map(|_| ())
        } else {
            Ok(())
        };
        match outcome {
            // Gone meanwhile: nothing left to do for it.
            Err(kube::Error::Api(status)) if status.code == 404 => {}
            other => other?,
        }
    }
    Ok(())
}
