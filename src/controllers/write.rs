//! Writes that must hold up against other writers. [`create_machine`] is the one way a Machine
//! is created, whichever loop creates it: its provisioner's limits admit it first.
//!
//! Writes of list fields (finalizers, owner references, taints) never lose a concurrent
//! change. A merge patch replaces a list whole, so a list rebuilt from the cache would undo
//! whatever changed since the cache saw the object: a startup taint its agent just removed
//! would come back, a finalizer someone else just added would vanish. Each write here is
//! computed from one version of the object and carries that version's resourceVersion; the API
//! server refuses it (409) when the object changed meanwhile, and it is computed again from a
//! fresh read.

use std::fmt::Debug;

use k8s_openapi::api::core::v1::{Node, Taint};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::{Resource, ResourceExt};
use nodewright_scheduling::labels;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::context::Context;
use super::error::ControllerError;
use super::lifecycle::NodeRegistration;
use crate::apis::Machine;
use crate::state::SharedState;
use crate::state::watch::Cached;

/// Creates `machine` if its provisioner's limits admit it, and puts it in the cache.
pub async fn create_machine(ctx: &Context, machine: &Machine) -> Result<Machine, ControllerError> {
    let name = machine.name_any();
    ctx.state
        .admit_machine(machine, &ctx.known_instance_types())
        .map_err(ControllerError::Blocked)?;
    let api: Api<Machine> = Api::all(ctx.client.clone());
    match api.create(&PostParams::default(), machine).await {
        Ok(created) => {
            ctx.state.apply(&created);
            Ok(created)
        }
        Err(error) => {
            ctx.state.machine_not_created(&name);
            Err(ControllerError::api(
                format!("create machine {name}"),
                error,
            ))
        }
    }
}

/// Fresh reads and rewrites after a conflict before the write fails (and its loop backs off).
const CONFLICT_RETRIES: usize = 5;

/// Patches `name` with what `change` makes of its current version, starting from `cached`:
/// `None` from `change` means nothing to write. Returns the written object, or `None` when
/// there was nothing to write.
pub async fn patch_from_version<K>(
    api: &Api<K>,
    name: &str,
    cached: &K,
    change: impl Fn(&K) -> Option<Value>,
) -> Result<Option<K>, kube::Error>
where
    K: Resource + Clone + DeserializeOwned + Serialize + Debug,
{
    let mut fresh: Option<K> = None;
    let mut conflicts = 0;
    loop {
        let current = fresh.as_ref().unwrap_or(cached);
        let Some(mut patch) = change(current) else {
            return Ok(None);
        };
        if let Some(version) = &current.meta().resource_version {
            patch["metadata"]["resourceVersion"] = json!(version);
        }
        match api
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(written) => return Ok(Some(written)),
            Err(kube::Error::Api(status)) if status.code == 409 && conflicts < CONFLICT_RETRIES => {
                conflicts += 1;
                fresh = Some(api.get(name).await?);
            }
            Err(error) => return Err(error),
        }
    }
}

/// Removes the termination finalizer from `cached`'s object, keeping every other finalizer as
/// the API server has it. `None`: it was not there.
pub async fn release<K>(api: &Api<K>, cached: &K) -> Result<Option<K>, kube::Error>
where
    K: Resource + Clone + DeserializeOwned + Serialize + Debug,
{
    let name = cached.meta().name.clone().unwrap_or_default();
    patch_from_version(api, &name, cached, |object| {
        let finalizers = object.meta().finalizers.as_deref().unwrap_or(&[]);
        if !finalizers
            .iter()
            .any(|f| f == labels::TERMINATION_FINALIZER)
        {
            return None;
        }
        let left: Vec<&String> = finalizers
            .iter()
            .filter(|f| *f != labels::TERMINATION_FINALIZER)
            .collect();
        Some(json!({ "metadata": { "finalizers": left } }))
    })
    .await
}

/// [`release`], keeping the cache in step: an object another finalizer still holds gets its
/// new version; otherwise it is gone and leaves the cache (applying it would bring it back),
/// as does a stale copy whose object was released or deleted already. True when this call
/// released it.
pub async fn release_cached<K>(
    state: &SharedState,
    api: &Api<K>,
    cached: &K,
) -> Result<bool, kube::Error>
where
    K: Cached + Serialize,
{
    match release(api, cached).await {
        Ok(Some(released)) => {
            let held = released
                .meta()
                .finalizers
                .as_ref()
                .is_some_and(|f| !f.is_empty());
            if held {
                state.apply(&released);
            } else {
                state.remove(&released);
            }
            Ok(true)
        }
        Ok(None) => {
            state.remove(cached);
            Ok(false)
        }
        Err(kube::Error::Api(status)) if status.code == 404 => {
            state.remove(cached);
            Ok(false)
        }
        Err(error) => Err(error),
    }
}

/// Writes `status` as the status of `name`.
pub async fn status<K>(api: &Api<K>, name: &str, status: &impl Serialize) -> Result<K, kube::Error>
where
    K: Resource + Clone + DeserializeOwned + Debug,
{
    api.patch_status(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({ "status": status })),
    )
    .await
}

/// Makes `cached`'s node the machine's: its labels, the termination finalizer, the machine as
/// owner and the machine's taints it lacks, each added to the lists as the API server has them.
pub async fn adopt_node(
    api: &Api<Node>,
    cached: &Node,
    registration: &NodeRegistration,
) -> Result<Node, kube::Error> {
    let written = patch_from_version(api, &registration.node, cached, |node| {
        Some(adoption_patch(node, registration))
    })
    .await?;
    // `adoption_patch` always has something to write.
    Ok(written.unwrap_or_else(|| cached.clone()))
}

fn adoption_patch(node: &Node, registration: &NodeRegistration) -> Value {
    let mut patch = json!({ "metadata": { "labels": registration.labels } });
    let finalizers = node.metadata.finalizers.as_deref().unwrap_or(&[]);
    if registration.add_finalizer
        && !finalizers
            .iter()
            .any(|f| f == labels::TERMINATION_FINALIZER)
    {
        let mut finalizers = finalizers.to_vec();
        finalizers.push(labels::TERMINATION_FINALIZER.to_string());
        patch["metadata"]["finalizers"] = json!(finalizers);
    }
    let owners = node.metadata.owner_references.as_deref().unwrap_or(&[]);
    if let Some(owner) = &registration.owner
        && !owners.iter().any(|o| o.uid == owner.uid)
    {
        let mut owners = owners.to_vec();
        owners.push(owner.clone());
        patch["metadata"]["ownerReferences"] = json!(owners);
    }
    let present: &[Taint] = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.as_deref())
        .unwrap_or(&[]);
    let same = |a: &Taint, b: &Taint| a.key == b.key && a.effect == b.effect;
    let missing: Vec<&Taint> = registration
        .taints
        .iter()
        .filter(|t| !present.iter().any(|p| same(p, t)))
        .collect();
    if !missing.is_empty() {
        let mut taints: Vec<&Taint> = present.iter().collect();
        taints.extend(missing);
        patch["spec"] = json!({ "taints": taints });
    }
    patch
}
