//! The counter loop: keeps each provisioner's `status.resources` and `LimitsReached` condition
//! in step with what it launched, raises an Event when a limit is reached, and keeps the
//! provisioner, cost and pod state metrics current.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::Api;
use nodewright_scheduling::resources::Resources;
use tokio::sync::watch;

use super::{REASON_LIMITS_REACHED, limits_newly_reached, next_status};
use crate::apis::{Provisioner, ProvisionerStatus};
use crate::clock::sleep;
use crate::controllers::context::Context;
use crate::controllers::events::reference;
use crate::controllers::write;
use crate::metrics::Reconciled;

/// Bursts of changes are folded into one pass at most this often (simulated time).
const SETTLE: Duration = Duration::from_millis(500);

/// Runs until `stop` turns true.
pub async fn run(ctx: Arc<Context>, mut stop: watch::Receiver<bool>) {
    let mut changes = ctx.state.changed();
    let mut known: BTreeSet<String> = BTreeSet::new();
    loop {
        changes.borrow_and_update();
        let started = std::time::Instant::now();
        sync(&ctx, &mut known).await;
        ctx.metrics
            .reconciled("counter", Reconciled::Success, started.elapsed());
        tokio::select! {
            _ = stop.wait_for(|stopped| *stopped) => return,
            changed = changes.changed() => {
                if changed.is_err() {
                    return;
                }
            }
        }
        sleep(ctx.clock.as_ref(), SETTLE).await;
    }
}

/// Brings the gauges up to the cache's last word once more, as the controller stops: the loops
/// are aborted mid-wait, and `simulate --metrics` writes out what they show.
pub fn refresh_metrics(ctx: &Context) {
    let _ = refresh(ctx, &mut BTreeSet::new());
}

async fn sync(ctx: &Context, known: &mut BTreeSet<String>) {
    let writes = refresh(ctx, known);
    write_statuses(ctx, writes).await;
}

/// Sets the gauges from the cache (`known`: the provisioners of the last pass, whose series go
/// with them) and returns the provisioner statuses that need writing.
fn refresh(ctx: &Context, known: &mut BTreeSet<String>) -> Vec<(Provisioner, ProvisionerStatus)> {
    let types = ctx.known_instance_types();
    let now = Time(Timestamp::try_from(ctx.clock.now()).unwrap_or(Timestamp::UNIX_EPOCH));
    {
        let mut state = ctx.state.read();
        let usage = state.provisioner_usage(&types);
        let cost = state.cost_per_hour(&types);
        ctx.metrics.set_pods_state(&state.pod_state_counts());
        ctx.metrics.set_node_resources(&state.node_resources());
        for took in state.take_startups() {
            ctx.metrics.pod_started(took);
        }
        let mut present = BTreeSet::new();
        let mut writes = Vec::new();
        for entry in state.provisioners() {
            let name = entry.core.name.clone();
            let used = usage.get(&name).cloned().unwrap_or_default();
            let limits = entry
                .core
                .limits
                .iter()
                .fold(Resources::default(), |r, (k, v)| r.with(k, *v));
            ctx.metrics.set_provisioner_resources(&name, &limits, &used);
            for ((provisioner, capacity_type), usd) in &cost {
                if *provisioner == name {
                    ctx.metrics.set_cost_per_hour(&name, *capacity_type, *usd);
                }
            }
            let current = entry.provisioner.status.as_ref();
            let next = next_status(current, &entry.core, &used, now.clone());
            if current != Some(&next) && !entry.deleting {
                writes.push((entry.provisioner.clone(), next));
            }
            present.insert(name);
        }
        for gone in known.difference(&present) {
            ctx.metrics.forget_provisioner(gone);
        }
        *known = present;
        writes
    }
}

async fn write_statuses(ctx: &Context, writes: Vec<(Provisioner, ProvisionerStatus)>) {
    let api: Api<Provisioner> = Api::all(ctx.client.clone());
    for (provisioner, status) in writes {
        let name = provisioner.metadata.name.clone().unwrap_or_default();
        match write::status(&api, &name, &status).await {
            Ok(patched) => {
                if limits_newly_reached(provisioner.status.as_ref(), &status) {
                    let message = status
                        .conditions
                        .iter()
                        .find(|c| c.type_ == super::LIMITS_REACHED)
                        .and_then(|c| c.message.clone())
                        .unwrap_or_default();
                    tracing::warn!(provisioner = %name, "{message}");
                    ctx.events
                        .warning(reference(&patched), REASON_LIMITS_REACHED, message);
                }
                ctx.state.apply(&patched);
            }
            Err(error) => {
                tracing::warn!(provisioner = %name, %error, "cannot write provisioner status");
            }
        }
    }
}
