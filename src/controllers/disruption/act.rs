//! Carrying out a [`Command`]: taint the candidates so nothing new lands on them, launch the
//! replacements as Machines (as the provisioning loop does) and wait until their nodes are
//! initialized, then annotate each candidate with why and delete it; the termination
//! controller drains it behind its finalizer. A replacement that never comes up undoes the
//! taints and removes what was launched.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use k8s_openapi::api::core::v1::{Node, Taint};
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use nodewright_scheduling::labels;
use serde_json::json;
use tokio::sync::watch;

use super::command::{Command, Reason, dollars};
use crate::apis::Machine;
use crate::clock::sleep;
use crate::controllers::context::Context;
use crate::controllers::error::ControllerError;
use crate::controllers::events::reference;
use crate::controllers::provisioning::decide::{self, MachineNames};
use crate::controllers::termination::TERMINATION_REASON_ANNOTATION;
use crate::controllers::write;

/// Event reasons on nodes (Karpenter's).
pub const REASON_BLOCKED: &str = "DeprovisioningBlocked";
pub const REASON_LAUNCHING: &str = "DeprovisioningLaunching";
pub const REASON_WAITING: &str = "DeprovisioningWaitingReadiness";
pub const REASON_TERMINATING: &str = "DeprovisioningTerminating";
pub const REASON_FAILED: &str = "DeprovisioningFailed";
pub const REASON_UNCONSOLIDATABLE: &str = "Unconsolidatable";

/// How often a replacement is looked at while nothing changes.
const REPLACEMENT_POLL: Duration = Duration::from_secs(5);
/// Time for a launched node to initialize, on top of the launch and registration TTLs.
const INITIALIZATION_GRACE: Duration = Duration::from_secs(300);
/// How long a replacement counts as awaiting pods once the old nodes are deleted.
const PODS_ARRIVING: Duration = Duration::from_secs(60);

/// Why an action stopped before deleting anything.
#[derive(Debug)]
pub enum Abort {
    /// The loop is stopping.
    Stopped,
    Failed(ControllerError),
}

/// Carries `command` out; on failure nothing is deleted and the candidates are untainted.
pub async fn execute(
    ctx: &Context,
    command: &Command,
    stop: &mut watch::Receiver<bool>,
) -> Result<(), Abort> {
    let message = command.describe();
    tracing::info!(
        reason = command.reason.as_str(),
        action = command.action(),
        nodes = ?command.node_names(),
        "{message}"
    );
    let mut tainted = Vec::new();
    for node in command.node_names() {
        match set_disruption_taint(ctx, node, true).await {
            Ok(()) => tainted.push(node),
            Err(error) => {
                undo(ctx, &tainted, &[]).await;
                return Err(Abort::Failed(error));
            }
        }
    }
    let mut created = Vec::new();
    if !command.replacements.is_empty() {
        let metrics = ctx.metrics.disruption();
        let launching = ctx.clock.now();
        created = match launch(ctx, command).await {
            Ok(created) => created,
            Err((created, error)) => {
                metrics.replacements_failed(command.action(), command.reason.as_str());
                undo(ctx, &tainted, &created).await;
                return Err(Abort::Failed(error));
            }
        };
        if let Err(abort) = wait_initialized(ctx, command, &created, stop).await {
            if matches!(abort, Abort::Failed(_)) {
                metrics.replacements_failed(command.action(), command.reason.as_str());
                undo(ctx, &tainted, &created).await;
            }
            return Err(abort);
        }
        let took = ctx
            .clock
            .now()
            .duration_since(launching)
            .unwrap_or_default();
        metrics.replacements_initialized(took);
    }
    for candidate in &command.candidates {
        event_on_node(ctx, &candidate.node, false, REASON_TERMINATING, &message);
        delete_node(ctx, &candidate.node, command.reason)
            .await
            .map_err(Abort::Failed)?;
    }
    // The candidates' pods move over now: a short grace instead of the launch timeout.
    let until = ctx.clock.now() + PODS_ARRIVING;
    for name in &created {
        ctx.state.forget_nomination(name);
        ctx.state.nominate(name, until);
    }
    let metrics = ctx.metrics.disruption();
    metrics.action_performed(command.action(), command.reason.as_str());
    if command.reason == Reason::Consolidation && command.savings() > 0.0 {
        metrics.consolidation_saved(command.savings());
    }
    Ok(())
}

/// Creates a Machine per replacement; on failure, the ones created so far and why.
async fn launch(
    ctx: &Context,
    command: &Command,
) -> Result<Vec<String>, (Vec<String>, ControllerError)> {
    let (provisioners, taken) = {
        let state = ctx.state.read();
        let provisioners: Vec<_> = command
            .replacements
            .iter()
            .map(|r| {
                state
                    .provisioner(&r.provisioner)
                    .map(|p| p.provisioner.clone())
            })
            .collect();
        let taken: Vec<String> = state.machines().map(|m| m.machine.name_any()).collect();
        (provisioners, taken)
    };
    let mut names = MachineNames::new(seed(), taken);
    let until = ctx.clock.now() + replacement_timeout(ctx) + INITIALIZATION_GRACE;
    let mut created = Vec::new();
    for (planned, provisioner) in command.replacements.iter().zip(provisioners) {
        let Some(provisioner) = provisioner else {
            let why = format!("provisioner {} no longer exists", planned.provisioner);
            return Err((created, ControllerError::Invalid(why)));
        };
        let machine = decide::machine(planned, &provisioner, names.next(&planned.provisioner));
        match write::create_machine(ctx, &machine).await {
            Ok(machine) => {
                let name = machine.name_any();
                // Its pods are on their way: emptiness and consolidation leave it alone.
                ctx.state.nominate(&name, until);
                let reason = format!("{}/replace", command.reason.as_str());
                ctx.metrics.machine_created(&reason, &planned.provisioner);
                tracing::info!(
                    machine = %name,
                    provisioner = %planned.provisioner,
                    "Launching replacement machine, expecting {} at {}",
                    planned.instance_type,
                    dollars(planned.price_per_hour)
                );
                for candidate in &command.candidates {
                    event_on_node(
                        ctx,
                        &candidate.node,
                        false,
                        REASON_LAUNCHING,
                        &format!(
                            "Launching machine {name} ({}) to replace this node ({})",
                            planned.instance_type,
                            command.reason.as_str()
                        ),
                    );
                }
                created.push(name);
            }
            Err(error) => return Err((created, error)),
        }
    }
    Ok(created)
}

fn replacement_timeout(ctx: &Context) -> Duration {
    ctx.settings.launch_ttl + ctx.settings.registration_ttl
}

/// Waits until every machine in `created` has an initialized node.
async fn wait_initialized(
    ctx: &Context,
    command: &Command,
    created: &[String],
    stop: &mut watch::Receiver<bool>,
) -> Result<(), Abort> {
    let deadline = ctx.clock.now() + replacement_timeout(ctx) + INITIALIZATION_GRACE;
    let mut changes = ctx.state.changed();
    let mut told = false;
    loop {
        changes.borrow_and_update();
        let waiting: Result<Vec<&str>, String> = {
            let state = ctx.state.read();
            created
                .iter()
                .filter_map(|name| match state.machine(name) {
                    None => Some(Err(format!("replacement machine {name} was deleted"))),
                    Some(m) if m.deleting => {
                        Some(Err(format!("replacement machine {name} is being deleted")))
                    }
                    Some(m) => match state.node_of_machine(&m.machine) {
                        Some(node) if node.initialized => None,
                        _ => Some(Ok(name.as_str())),
                    },
                })
                .collect()
        };
        let waiting = waiting.map_err(|why| Abort::Failed(ControllerError::Blocked(why)))?;
        if waiting.is_empty() {
            return Ok(());
        }
        if ctx.clock.now() >= deadline {
            return Err(Abort::Failed(ControllerError::Blocked(format!(
                "replacement machine(s) {} did not initialize in time",
                waiting.join(", ")
            ))));
        }
        if !told {
            told = true;
            for candidate in &command.candidates {
                event_on_node(
                    ctx,
                    &candidate.node,
                    false,
                    REASON_WAITING,
                    &format!("Waiting on readiness of machine(s) {}", waiting.join(", ")),
                );
            }
        }
        tokio::select! {
            _ = stop.wait_for(|stopped| *stopped) => return Err(Abort::Stopped),
            changed = changes.changed() => {
                if changed.is_err() {
                    return Err(Abort::Stopped);
                }
            }
            () = sleep(ctx.clock.as_ref(), REPLACEMENT_POLL) => {}
        }
    }
}

/// Takes the disruption taint off `tainted` and deletes the machines in `created`.
async fn undo(ctx: &Context, tainted: &[&str], created: &[String]) {
    for node in tainted {
        if let Err(error) = set_disruption_taint(ctx, node, false).await {
            tracing::warn!(node = %node, %error, "cannot remove the disruption taint");
        }
    }
    let api: Api<Machine> = Api::all(ctx.client.clone());
    for name in created {
        match api.delete(name, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(status)) if status.code == 404 => {}
            Err(error) => tracing::warn!(machine = %name, %error, "cannot delete the replacement"),
        }
    }
}

/// The `karpenter.sh/disruption=disrupting:NoSchedule` taint.
pub fn disruption_taint() -> Taint {
    Taint {
        key: labels::DISRUPTION_TAINT_KEY.to_string(),
        value: Some(labels::DISRUPTION_TAINT_VALUE.to_string()),
        effect: "NoSchedule".to_string(),
        time_added: None,
    }
}

/// Adds (`on`) or removes the disruption taint, replacing the node at the version read so a
/// concurrent change to its taints is never lost (a conflict fails the action instead).
pub async fn set_disruption_taint(
    ctx: &Context,
    node: &str,
    on: bool,
) -> Result<(), ControllerError> {
    let api: Api<Node> = Api::all(ctx.client.clone());
    let mut live = match api.get(node).await {
        Ok(live) => live,
        Err(kube::Error::Api(status)) if status.code == 404 && !on => return Ok(()),
        Err(error) => return Err(ControllerError::api(format!("read node {node}"), error)),
    };
    let spec = live.spec.get_or_insert_with(Default::default);
    let taints = spec.taints.get_or_insert_with(Vec::new);
    let has = taints.iter().any(|t| t.key == labels::DISRUPTION_TAINT_KEY);
    if has == on {
        return Ok(());
    }
    if on {
        taints.push(disruption_taint());
    } else {
        taints.retain(|t| t.key != labels::DISRUPTION_TAINT_KEY);
    }
    let replaced = api
        .replace(node, &PostParams::default(), &live)
        .await
        .map_err(|e| ControllerError::api(format!("update the taints of node {node}"), e))?;
    ctx.state.apply(&replaced);
    Ok(())
}

/// Annotates `node` with why, then deletes it (the termination finalizer drains it).
async fn delete_node(ctx: &Context, node: &str, reason: Reason) -> Result<(), ControllerError> {
    let nodes: Api<Node> = Api::all(ctx.client.clone());
    let annotate = Patch::Merge(json!({
        "metadata": { "annotations": { TERMINATION_REASON_ANNOTATION: reason.as_str() } }
    }));
    match nodes.patch(node, &PatchParams::default(), &annotate).await {
        Ok(_) => {}
        Err(kube::Error::Api(status)) if status.code == 404 => return Ok(()),
        Err(e) => return Err(ControllerError::api(format!("annotate node {node}"), e)),
    }
    match nodes.delete(node, &DeleteParams::default()).await {
        Ok(either) => {
            if let Some(deleting) = either.left() {
                ctx.state.apply(&deleting);
            }
            Ok(())
        }
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(e) => Err(ControllerError::api(format!("delete node {node}"), e)),
    }
}

/// An Event on the node named `node`, if it is still in the cache.
pub fn event_on_node(ctx: &Context, node: &str, warning: bool, reason: &str, message: &str) {
    let Some(object) = ctx.state.read().node(node).map(|n| n.node.clone()) else {
        return;
    };
    if warning {
        ctx.events
            .warning(reference(&object), reason, message.to_string());
    } else {
        ctx.events
            .normal(reference(&object), reason, message.to_string());
    }
}

fn seed() -> u64 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or_default();
    nanos ^ (u64::from(std::process::id()) << 32) ^ 0x5EED
}
