//! The simulated deployment controller: keeps `spec.replicas` pods per Deployment and reports
//! the counts in its status, as kube-controller-manager's deployment and replica-set
//! controllers do together. It is a kube-runtime controller talking to the API server like
//! any other client, so it needs no clock: it reacts to changes.
//!
//! Simplified: pods are owned by the Deployment itself (no ReplicaSet in between) and a
//! changed template does not roll old pods; `updatedReplicas` counts pods of the current
//! template (`pod-template-hash`).

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{self, Action, Controller};
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use serde_json::json;

use super::apiserver::selectors::LabelSelector;

/// The label that ties a pod to the template it was made from (kube-controller-manager's name).
pub const POD_TEMPLATE_HASH: &str = "pod-template-hash";
/// How soon a failed reconcile is retried.
const RETRY_AFTER: Duration = Duration::from_millis(200);
/// A burst of pod changes (thousands of creations, each one an event) reconciles once after it
/// settles, instead of once per event, each listing every pod.
const DEBOUNCE: Duration = Duration::from_millis(10);

#[derive(Debug, thiserror::Error)]
pub enum DeploymentError {
    #[error("deployment {0} has no name, namespace or uid")]
    Incomplete(String),
    #[error("deployment {name} has an unusable selector")]
    Selector { name: String },
    #[error("API call for deployment {name} failed: {source}")]
    Api { name: String, source: kube::Error },
}

/// Runs the controller until `shutdown` completes.
pub async fn run(client: Client, shutdown: impl Future<Output = ()> + Send + Sync + 'static) {
    let deployments: Api<Deployment> = Api::all(client.clone());
    let pods: Api<Pod> = Api::all(client.clone());
    Controller::new(deployments, watcher::Config::default())
        .owns(pods, watcher::Config::default())
        .with_config(controller::Config::default().debounce(DEBOUNCE))
        .graceful_shutdown_on(shutdown)
        .run(
            reconcile,
            |_, _, _| Action::requeue(RETRY_AFTER),
            Arc::new(client),
        )
        .for_each(|outcome| async move {
            if let Err(error) = outcome {
                tracing::debug!(%error, "simulated deployment controller");
            }
        })
        .await;
}

async fn reconcile(
    deployment: Arc<Deployment>,
    client: Arc<Client>,
) -> Result<Action, DeploymentError> {
    let name = deployment.name_any();
    let (Some(namespace), Some(uid)) = (deployment.namespace(), deployment.uid()) else {
        return Err(DeploymentError::Incomplete(name));
    };
    if deployment.meta().deletion_timestamp.is_some() {
        // Garbage collection removes the pods.
        return Ok(Action::await_change());
    }
    let failed = |source| DeploymentError::Api {
        name: name.clone(),
        source,
    };
    let spec = deployment.spec.clone().unwrap_or_default();
    let selector = serde_json::to_value(&spec.selector)
        .ok()
        .and_then(|selector| LabelSelector::from_object(&selector))
        .filter(|selector| !selector.is_empty())
        .ok_or_else(|| DeploymentError::Selector { name: name.clone() })?;
    let pods: Api<Pod> = Api::namespaced(client.as_ref().clone(), &namespace);
    let listed = pods
        .list(&ListParams::default().labels(&selector.to_query()))
        .await
        .map_err(failed)?;
    let mut active: Vec<Pod> = listed
        .items
        .into_iter()
        .filter(|pod| controlled_by(pod, &uid) && is_active(pod))
        .collect();
    let hash = template_hash(&spec.template);
    let wanted = usize::try_from(spec.replicas.unwrap_or(1)).unwrap_or(0);
    // All missing replicas at once, as the ReplicaSet controller creates a burst.
    let missing: Vec<Pod> = (active.len()..wanted)
        .map(|_| pod_from_template(&deployment, &spec.template, &hash, &uid))
        .collect();
    let params = PostParams::default();
    let created =
        futures::future::try_join_all(missing.iter().map(|pod| pods.create(&params, pod)))
            .await
            .map_err(failed)?;
    active.extend(created);
    if active.len() > wanted {
        active.sort_by_key(deletion_rank);
        let excess = active.len() - wanted;
        for pod in active.drain(..excess) {
            match pods
                .delete(&pod.name_any(), &DeleteParams::background())
                .await
            {
                Ok(_) => {}
                // Already gone: someone else removed it.
                Err(kube::Error::Api(status)) if status.code == 404 => {}
                Err(error) => return Err(failed(error)),
            }
        }
    }
    let ready = active.iter().filter(|pod| is_ready(pod)).count();
    let updated = active
        .iter()
        .filter(|pod| pod.labels().get(POD_TEMPLATE_HASH) == Some(&hash))
        .count();
    let status = json!({"status": {
        "observedGeneration": deployment.meta().generation,
        "replicas": active.len(),
        "updatedReplicas": updated,
        "readyReplicas": ready,
        "availableReplicas": ready,
        "unavailableReplicas": active.len() - ready,
    }});
    let deployments: Api<Deployment> = Api::namespaced(client.as_ref().clone(), &namespace);
    deployments
        .patch_status(&name, &PatchParams::default(), &Patch::Merge(status))
        .await
        .map_err(failed)?;
    Ok(Action::await_change())
}

fn controlled_by(pod: &Pod, uid: &str) -> bool {
    pod.owner_references()
        .iter()
        .any(|owner| owner.controller == Some(true) && owner.uid == uid)
}

fn phase(pod: &Pod) -> Option<&str> {
    pod.status.as_ref()?.phase.as_deref()
}

/// Counted as a replica: not being deleted and not finished.
fn is_active(pod: &Pod) -> bool {
    pod.meta().deletion_timestamp.is_none() && !matches!(phase(pod), Some("Succeeded" | "Failed"))
}

fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|status| status.conditions.as_ref())
        .into_iter()
        .flatten()
        .any(|condition| condition.type_ == "Ready" && condition.status == "True")
}

/// Which pods go first when scaling down (lowest first): unscheduled, then pending, then not
/// ready, then the newest — kube-controller-manager's order, in short.
fn deletion_rank(pod: &Pod) -> (bool, bool, bool, std::cmp::Reverse<String>) {
    let scheduled = pod
        .spec
        .as_ref()
        .and_then(|spec| spec.node_name.as_ref())
        .is_some_and(|node| !node.is_empty());
    let running = phase(pod) == Some("Running");
    let created = pod
        .meta()
        .creation_timestamp
        .as_ref()
        .map(|time| time.0.to_string())
        .unwrap_or_default();
    (
        scheduled,
        running,
        is_ready(pod),
        std::cmp::Reverse(created),
    )
}

/// A short, stable hash of the pod template (FNV-1a over its JSON), as a label value.
fn template_hash(template: &PodTemplateSpec) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let bytes = serde_json::to_vec(template).unwrap_or_default();
    let mut hash: u32 = 0x811c_9dc5;
    for byte in bytes {
        hash ^= u32::from(byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    let base = ALPHABET.len() as u32;
    let mut text = String::new();
    loop {
        text.push(char::from(ALPHABET[(hash % base) as usize]));
        hash /= base;
        if hash == 0 {
            return text;
        }
    }
}

fn pod_from_template(
    deployment: &Deployment,
    template: &PodTemplateSpec,
    hash: &str,
    uid: &str,
) -> Pod {
    let name = deployment.name_any();
    let template_meta = template.metadata.clone().unwrap_or_default();
    let mut labels: BTreeMap<String, String> = template_meta.labels.unwrap_or_default();
    labels.insert(POD_TEMPLATE_HASH.to_string(), hash.to_string());
    let owner = OwnerReference {
        api_version: "apps/v1".into(),
        kind: "Deployment".into(),
        name: name.clone(),
        uid: uid.to_string(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    };
    Pod {
        metadata: ObjectMeta {
            generate_name: Some(format!("{name}-{hash}-")),
            namespace: deployment.namespace(),
            labels: Some(labels),
            annotations: template_meta.annotations,
            owner_references: Some(vec![owner]),
            ..ObjectMeta::default()
        },
        spec: template.spec.clone(),
        status: None,
    }
}
