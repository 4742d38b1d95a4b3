//! The interruption loop: long-polls the queue, handles each batch concurrently, deletes a
//! message once handled. A malformed message is logged, counted and deleted; a message whose
//! action failed stays in the queue and comes back after its visibility timeout.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use serde_json::json;
use tokio::sync::watch;

use super::Interruption;
use super::decide::{Action, Step, Target, decide, find_target};
use super::messages::{MALFORMED_LABEL, Message, parse};
use crate::apis::Machine;
use crate::clock::sleep;
use crate::cloudprovider::aws::sqs::{MAX_MESSAGES, QueueMessage};
use crate::controllers::context::Context;
use crate::controllers::error::ControllerError;
use crate::controllers::events::reference;
use crate::controllers::termination::TERMINATION_REASON_ANNOTATION;

/// The `karpenter.sh/disruption-reason` of a node deleted for an interruption.
pub const REASON_INTERRUPTION: &str = "interruption";
/// First pause after a failed receive; doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// Pause between empty receives when the wait is zero (short polling), so the loop never spins.
const IDLE_PAUSE: Duration = Duration::from_secs(1);

/// Runs until `stop` turns true. Returns at once without an interruption queue (`interruption`
/// is `None` or `settings.interruption_queue` is unset).
pub async fn run(
    ctx: Arc<Context>,
    interruption: Option<Arc<Interruption>>,
    mut stop: watch::Receiver<bool>,
) {
    let Some(interruption) = interruption.filter(|_| ctx.settings.interruption_queue.is_some())
    else {
        return;
    };
    tracing::info!(queue = %interruption.queue.name(), "watching the interruption queue");
    let mut failures: u32 = 0;
    loop {
        let received = tokio::select! {
            _ = stop.wait_for(|stopped| *stopped) => return,
            received = interruption.queue.receive(MAX_MESSAGES, interruption.wait) => received,
        };
        let pause = match received {
            Ok(messages) => {
                failures = 0;
                let idle = messages.is_empty();
                let handled = messages.iter().map(|m| handle(&ctx, &interruption, m));
                futures::future::join_all(handled).await;
                (idle && interruption.wait.is_zero()).then_some(IDLE_PAUSE)
            }
            Err(error) => {
                failures = failures.saturating_add(1);
                let delay = FIRST_BACKOFF
                    .saturating_mul(1 << (failures - 1).min(6))
                    .min(MAX_BACKOFF);
                tracing::warn!(%error, retry_in = ?delay, "cannot receive interruption messages");
                Some(delay)
            }
        };
        if let Some(pause) = pause {
            tokio::select! {
                _ = stop.wait_for(|stopped| *stopped) => return,
                () = sleep(ctx.clock.as_ref(), pause) => {}
            }
        }
    }
}

/// Handles one message and deletes it, unless acting on it failed.
async fn handle(ctx: &Context, interruption: &Interruption, raw: &QueueMessage) {
    let metrics = &interruption.metrics;
    let message = match parse(raw.body.as_deref()) {
        Ok(message) => message,
        Err(error) => {
            tracing::warn!(message_id = %raw.message_id, %error, "deleting a malformed interruption message");
            metrics.message_received(MALFORMED_LABEL);
            delete(interruption, raw).await;
            return;
        }
    };
    metrics.message_received(message.kind.label());
    let steps = {
        let state = ctx.state.read();
        decide(&message, ctx.settings.rebalance_action, |id| {
            find_target(&state, id)
        })
    };
    let mut failed = false;
    for step in &steps {
        if let Err(error) = act(ctx, interruption, &message, step).await {
            ctx.metrics.controller_error("interruption", &error);
            tracing::warn!(message_id = %raw.message_id, instance = %step.instance_id, %error, "interruption");
            failed = true;
        }
    }
    if let Some(time) = message.time {
        let latency = ctx.clock.now().duration_since(time).unwrap_or_default();
        metrics.observe_message_latency(latency);
    }
    if failed {
        // Left in the queue: SQS delivers it again after its visibility timeout.
        return;
    }
    delete(interruption, raw).await;
}

async fn delete(interruption: &Interruption, raw: &QueueMessage) {
    match interruption.queue.delete(raw).await {
        Ok(()) => interruption.metrics.message_deleted(),
        Err(error) => {
            tracing::warn!(message_id = %raw.message_id, %error, "cannot delete an interruption message")
        }
    }
}

async fn act(
    ctx: &Context,
    interruption: &Interruption,
    message: &Message,
    step: &Step,
) -> Result<(), ControllerError> {
    let Some(target) = step
        .target
        .as_ref()
        .filter(|_| step.action != Action::Ignore)
    else {
        if step.target.is_none() {
            tracing::debug!(instance = %step.instance_id, kind = message.kind.label(), "no node of ours runs the instance; ignoring");
        }
        return Ok(());
    };
    tracing::info!(
        instance = %step.instance_id,
        target = %target.describe(),
        kind = message.kind.label(),
        event_id = %message.id,
        "interruption message"
    );
    if let Some(notice) = &step.notice {
        record(ctx, target, notice.warning, notice.reason, &notice.message);
    }
    if let Some(label) = step.action.label() {
        interruption.metrics.action_performed(label);
    }
    if let Some(offering) = &step.hold_out {
        interruption
            .hold_out
            .hold_out_spot(&offering.instance_type, &offering.zone);
        tracing::info!(
            instance_type = %offering.instance_type,
            zone = %offering.zone,
            "holding the interrupted spot offering out"
        );
    }
    if step.delete {
        delete_target(ctx, target).await?;
        record(
            ctx,
            target,
            true,
            "TerminatingOnInterruption",
            "Interruption triggered termination",
        );
    }
    Ok(())
}

/// An Event on the node and on its machine.
fn record(ctx: &Context, target: &Target, warning: bool, reason: &str, message: &str) {
    let references = target
        .node
        .iter()
        .map(reference)
        .chain(target.machine.iter().map(reference));
    for regarding in references {
        if warning {
            ctx.events.warning(regarding, reason, message);
        } else {
            ctx.events.normal(regarding, reason, message);
        }
    }
}

/// Deletes the node (the termination finalizer drains it), or the machine of an instance whose
/// node has not registered (the lifecycle controller terminates it).
async fn delete_target(ctx: &Context, target: &Target) -> Result<(), ControllerError> {
    if let Some(node) = &target.node {
        let name = node.name_any();
        let nodes: Api<Node> = Api::all(ctx.client.clone());
        let reason = Patch::Merge(json!({
            "metadata": { "annotations": { TERMINATION_REASON_ANNOTATION: REASON_INTERRUPTION } }
        }));
        match nodes.patch(&name, &PatchParams::default(), &reason).await {
            Ok(_) => {}
            Err(kube::Error::Api(status)) if status.code == 404 => return Ok(()),
            Err(e) => return Err(ControllerError::api(format!("annotate node {name}"), e)),
        }
        return match nodes.delete(&name, &DeleteParams::default()).await {
            Ok(either) => {
                if let Some(deleting) = either.left() {
                    ctx.state.apply(&deleting);
                }
                tracing::info!(node = %name, "Initiating delete from interruption message");
                Ok(())
            }
            Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
            Err(e) => Err(ControllerError::api(format!("delete node {name}"), e)),
        };
    }
    if let Some(machine) = &target.machine {
        let name = machine.name_any();
        let machines: Api<Machine> = Api::all(ctx.client.clone());
        return match machines.delete(&name, &DeleteParams::default()).await {
            Ok(either) => {
                if let Some(deleting) = either.left() {
                    ctx.state.apply(&deleting);
                }
                tracing::info!(machine = %name, "Initiating delete from interruption message");
                Ok(())
            }
            Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
            Err(e) => Err(ControllerError::api(format!("delete machine {name}"), e)),
        };
    }
    Ok(())
}
