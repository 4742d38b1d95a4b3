//! Early binding (`BIND_PODS`): as soon as a machine's instance launches, its Node object is
//! created under the name the kubelet will register (tainted not-ready until the kubelet takes
//! over) and the pods it was launched for are bound to it, so their images pull while it boots.
//! The node carries [`labels::BOUND_EARLY`]; if its kubelet never comes, termination deletes
//! the pods so their controllers recreate them elsewhere.

use k8s_openapi::api::core::v1::{Binding, Node, ObjectReference, Pod, Taint};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::ResourceExt;
use kube::api::{Api, PostParams};
use nodewright_scheduling::labels;

use crate::cloudprovider::{LaunchedInstance, MachineId};
use crate::controllers::context::Context;
use crate::state::MachineEntry;

/// Creates the node for `instance` and binds the pods planned for `machine` to it. Failures
/// are logged: the pods then wait for the kube-scheduler as usual.
pub async fn bind_early(ctx: &Context, machine: &MachineEntry, instance: &LaunchedInstance) {
    let name = machine.machine.name_any();
    let pods = ctx.state.take_early_binding(&name);
    if pods.is_empty() {
        return;
    }
    let hostname = match &instance.hostname {
        Some(hostname) => Some(hostname.clone()),
        None => ctx
            .cloud
            .get(&MachineId::new(
                name.clone(),
                Some(instance.provider_id.clone()),
            ))
            .await
            .ok()
            .and_then(|i| i.hostname),
    };
    let Some(hostname) = hostname else {
        tracing::info!(machine = %name, "not binding pods early: the instance's hostname is not known yet");
        return;
    };
    let node = early_node(machine, instance, &hostname);
    let nodes: Api<Node> = Api::all(ctx.client.clone());
    match nodes.create(&PostParams::default(), &node).await {
        Ok(created) => ctx.state.apply(&created),
        Err(kube::Error::Api(status)) if status.code == 409 => {}
        Err(error) => {
            tracing::warn!(machine = %name, %error, "cannot create the node to bind pods early");
            return;
        }
    }
    let mut bound = 0;
    for key in &pods {
        let (namespace, pod) = key.split_once('/').unwrap_or(("default", key));
        let still_pending = ctx
            .state
            .read()
            .pod(namespace, pod)
            .is_some_and(|p| p.node_name.is_none() && !p.deleting);
        if !still_pending {
            continue;
        }
        let binding = Binding {
            metadata: ObjectMeta {
                name: Some(pod.to_string()),
                namespace: Some(namespace.to_string()),
                ..ObjectMeta::default()
            },
            target: ObjectReference {
                api_version: Some("v1".to_string()),
                kind: Some("Node".to_string()),
                name: Some(hostname.clone()),
                ..ObjectReference::default()
            },
        };
        let api: Api<Pod> = Api::namespaced(ctx.client.clone(), namespace);
        match api
            .create_subresource::<Binding, serde_json::Value>(
                "binding",
                pod,
                &PostParams::default(),
                &binding,
            )
            .await
        {
            Ok(_) => bound += 1,
            // Bound meanwhile by the scheduler, or gone: nothing to do.
            Err(kube::Error::Api(status)) if matches!(status.code, 404 | 409) => {}
            Err(error) => tracing::warn!(pod = %key, %error, "cannot bind pod early"),
        }
    }
    if bound > 0 {
        ctx.state
            .nominate(&hostname, ctx.clock.now() + ctx.settings.registration_ttl);
        tracing::info!(machine = %name, "Bound {bound} pod(s) to node {hostname}");
    }
}

/// The node as the kubelet will register it, not ready until it does.
fn early_node(machine: &MachineEntry, instance: &LaunchedInstance, hostname: &str) -> Node {
    let mut node_labels = instance.labels.clone();
    node_labels.extend(machine.machine.labels().clone());
    node_labels.insert(labels::HOSTNAME.to_string(), hostname.to_string());
    let mut taints: Vec<Taint> = machine.machine.spec.taints.clone();
    taints.extend(machine.machine.spec.startup_taints.iter().cloned());
    taints.push(Taint {
        key: labels::TAINT_NOT_READY.to_string(),
        effect: "NoSchedule".to_string(),
        ..Taint::default()
    });
    Node {
        metadata: ObjectMeta {
            name: Some(hostname.to_string()),
            labels: Some(node_labels),
            annotations: Some([(labels::BOUND_EARLY.to_string(), "true".to_string())].into()),
            finalizers: Some(vec![labels::TERMINATION_FINALIZER.to_string()]),
            ..ObjectMeta::default()
        },
        spec: Some(k8s_openapi::api::core::v1::NodeSpec {
            provider_id: Some(instance.provider_id.clone()),
            taints: Some(taints),
            ..Default::default()
        }),
        status: None,
    }
}

/// Whether `node` was created early and no kubelet has reported on it yet.
pub fn awaits_kubelet(node: &Node) -> bool {
    let early = node
        .metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(labels::BOUND_EARLY));
    let reported = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready"));
    early && !reported
}
