//! The disruption loop (the slow loop): every [`PERIOD`], at most one action — expiry first,
//! then drift, then consolidation (emptiness has its own loop, `emptiness.rs`). A decision is
//! taken again [`VALIDATION_DELAY`] later on the fresh cache and acted on only if it still
//! holds: the same reason, the same nodes, a replacement exactly when one was decided.
//!
//! Pipeline: observe (the cache; [`candidates`] says which nodes may be disrupted and why not;
//! [`drift::CloudDrift`] holds the cloud provider's drift answers) → decide (pure: a
//! [`Snapshot`] taken under the cache's lock, then searched on a blocking thread over
//! [`expiry`], [`drift`], [`consolidation`], each asking [`simulate`] where the pods would go;
//! [`room`] rules out hopeless consolidations first) → act ([`act`]: taint, launch and wait for
//! replacements, then delete; the termination controller drains). Nothing is decided while the
//! cluster is in motion — a machine still launching or a managed node still terminating — since
//! the pods moving would be counted twice or not at all.

pub mod act;
pub mod candidates;
pub mod command;
pub mod consolidation;
pub mod drift;
pub mod expiry;
pub mod room;
pub mod simulate;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use nodewright_scheduling::ScheduleInput;
use nodewright_scheduling::labels;
use tokio::sync::watch;

pub use command::{Command, Reason};

use self::act::Abort;
use self::candidates::{Blocked, Candidate};
use self::consolidation::ConsolidationSettings;
use self::drift::CloudDrift;
use crate::clock::sleep;
use crate::controllers::context::Context;
use crate::metrics::Reconciled;
use crate::settings::Settings;
use crate::state::{ClusterState, InstanceTypesByProvisioner, NodeEntry};

/// How often the loop looks for something to disrupt (simulated time).
pub const PERIOD: Duration = Duration::from_secs(10);
/// How long a decision waits before it is taken again and acted on.
pub const VALIDATION_DELAY: Duration = Duration::from_secs(15);

/// What a pass reads besides the cache.
pub struct Inputs<'a> {
    pub types: &'a InstanceTypesByProvisioner,
    pub settings: &'a Settings,
    pub now: SystemTime,
    /// Drifted nodes by name, with why (see [`drift::drifted`]); empty with the gate off.
    pub drifted: &'a BTreeMap<String, String>,
    /// Whether pods were just nominated to a node or machine of this name.
    pub nominated: &'a dyn Fn(&str) -> bool,
}

/// What one pass found.
#[derive(Debug, Clone, Default)]
pub struct Pass {
    pub command: Option<Command>,
    /// Nodes a disruption wanted but may not touch, with the disruption.
    pub blocked: Vec<(Reason, Blocked)>,
    /// Why nothing was decided this pass, when the cluster is in motion.
    pub settling: Option<String>,
    /// How many candidates each disruption considered (none when settling).
    pub eligible: Vec<(Reason, usize)>,
    /// How long each disruption that was evaluated took to decide.
    pub evaluated: Vec<(Reason, Duration)>,
    /// Consolidation searches that ran out of time.
    pub timed_out: Vec<&'static str>,
    /// Nodes consolidation tried alone and could not remove, with why.
    pub unconsolidatable: Vec<(String, String)>,
}

/// Why disruption waits: a machine still launching or a managed node still terminating.
pub fn settling(state: &ClusterState) -> Option<String> {
    if let Some(machine) = state.in_flight().next() {
        return Some(format!(
            "machine {} has not registered yet",
            machine.machine.metadata.name.as_deref().unwrap_or_default()
        ));
    }
    state
        .nodes()
        .find(|n| n.deleting && n.core.labels.contains_key(labels::PROVISIONER_NAME))
        .map(|n| format!("node {} is still terminating", n.core.name))
}

fn consolidation_enabled(state: &ClusterState, node: &NodeEntry) -> bool {
    node.core
        .labels
        .get(labels::PROVISIONER_NAME)
        .and_then(|p| state.provisioner(p))
        .is_some_and(|p| p.provisioner.spec.consolidation_enabled())
}

fn consolidation_settings(settings: &Settings) -> ConsolidationSettings {
    ConsolidationSettings::new(
        settings.consolidation_min_saving_fraction,
        settings.feature_gates.spot_to_spot_consolidation,
    )
}

/// The candidates and blocked nodes for `reason`.
fn partition(
    state: &ClusterState,
    reason: Reason,
    inputs: &Inputs,
) -> (Vec<Candidate>, Vec<Blocked>) {
    let now = inputs.now;
    match reason {
        Reason::Expiration => {
            candidates::partition(state, reason, inputs.types, inputs.nominated, |n| {
                expiry::is_expired(state, n, now)
            })
        }
        Reason::Drift => {
            candidates::partition(state, reason, inputs.types, inputs.nominated, |n| {
                inputs.drifted.contains_key(&n.core.name)
            })
        }
        Reason::Consolidation => {
            candidates::partition(state, reason, inputs.types, inputs.nominated, |n| {
                consolidation_enabled(state, n)
            })
        }
    }
}

/// What a pass decides from, taken from the cache (under its lock) and owned, so that the
/// searches run without holding the cache.
pub struct Snapshot {
    settling: Option<String>,
    blocked: Vec<(Reason, Blocked)>,
    /// Expired candidates with their TTL.
    expired: Vec<(Candidate, Duration)>,
    drifted: Vec<Candidate>,
    /// Why each drifted candidate drifted.
    drift_reasons: BTreeMap<String, String>,
    consolidatable: Vec<Candidate>,
    /// The scheduling core's input for the whole cluster; only built when there are candidates.
    base: Option<ScheduleInput>,
    now: SystemTime,
    consolidation: ConsolidationSettings,
}

impl Snapshot {
    pub fn take(state: &ClusterState, inputs: &Inputs) -> Snapshot {
        let mut snapshot = Snapshot {
            settling: settling(state),
            blocked: Vec::new(),
            expired: Vec::new(),
            drifted: Vec::new(),
            drift_reasons: BTreeMap::new(),
            consolidatable: Vec::new(),
            base: None,
            now: inputs.now,
            consolidation: consolidation_settings(inputs.settings),
        };
        if snapshot.settling.is_some() {
            return snapshot;
        }
        for reason in [Reason::Expiration, Reason::Drift, Reason::Consolidation] {
            let (found, blocked) = partition(state, reason, inputs);
            snapshot
                .blocked
                .extend(blocked.into_iter().map(|b| (reason, b)));
            match reason {
                Reason::Expiration => {
                    snapshot.expired = found
                        .into_iter()
                        .filter_map(|c| {
                            let ttl = expiry::ttl(state, state.node(&c.node)?)?;
                            Some((c, ttl))
                        })
                        .collect();
                }
                Reason::Drift => {
                    for candidate in &found {
                        if let Some(why) = inputs.drifted.get(&candidate.node) {
                            snapshot
                                .drift_reasons
                                .insert(candidate.node.clone(), why.clone());
                        }
                    }
                    snapshot.drifted = found;
                }
                Reason::Consolidation => snapshot.consolidatable = found,
            }
        }
        let any = !snapshot.expired.is_empty()
            || !snapshot.drifted.is_empty()
            || !snapshot.consolidatable.is_empty();
        if any {
            snapshot.base = Some(state.schedule_input(inputs.types, inputs.settings));
        }
        snapshot
    }

    /// The first action to take: expiry, then drift, then consolidation.
    pub fn decide(mut self) -> Pass {
        let mut pass = Pass {
            settling: self.settling.take(),
            blocked: std::mem::take(&mut self.blocked),
            ..Pass::default()
        };
        if pass.settling.is_none() {
            pass.eligible = vec![
                (Reason::Expiration, self.expired.len()),
                (Reason::Drift, self.drifted.len()),
                (Reason::Consolidation, self.consolidatable.len()),
            ];
        }
        let Some(base) = self.base.as_mut() else {
            return pass;
        };
        let mut unexpirable = Vec::new();
        let mut undriftable = Vec::new();
        let mut timed = |reason: Reason, decide: &mut dyn FnMut() -> Option<Command>| {
            let started = Instant::now();
            let command = decide();
            pass.evaluated.push((reason, started.elapsed()));
            command
        };
        let mut command = timed(Reason::Expiration, &mut || {
            expiry::expire(base, &mut self.expired, self.now, &mut unexpirable)
        });
        if command.is_none() {
            command = timed(Reason::Drift, &mut || {
                drift::drift(base, &self.drifted, &self.drift_reasons, &mut undriftable)
            });
        }
        let mut searched = consolidation::Searched::default();
        if command.is_none() {
            command = timed(Reason::Consolidation, &mut || {
                consolidation::order(&mut self.consolidatable);
                searched = consolidation::consolidate_timed(
                    base,
                    &self.consolidatable,
                    &self.consolidation,
                );
                searched.command.take()
            });
        }
        pass.command = command;
        pass.timed_out = searched.timed_out;
        pass.unconsolidatable = searched.unconsolidatable;
        pass.blocked.extend(
            (unexpirable.into_iter().map(|b| (Reason::Expiration, b)))
                .chain(undriftable.into_iter().map(|b| (Reason::Drift, b))),
        );
        pass
    }
}

/// One pass over the cache: [`Snapshot::take`] then [`Snapshot::decide`].
pub fn decide(state: &ClusterState, inputs: &Inputs) -> Pass {
    Snapshot::take(state, inputs).decide()
}

/// `decided` taken again on the current cache: the same nodes, judged afresh (one run of the
/// scheduling core). `None` when one of them may no longer be disrupted for that reason, or
/// the cluster is in motion.
pub fn revalidate(state: &ClusterState, inputs: &Inputs, decided: &Command) -> Option<Command> {
    if settling(state).is_some() {
        return None;
    }
    let (found, _) = partition(state, decided.reason, inputs);
    let set: Vec<&Candidate> = decided
        .node_names()
        .iter()
        .map(|name| found.iter().find(|c| c.node == *name))
        .collect::<Option<_>>()?;
    let mut base = state.schedule_input(inputs.types, inputs.settings);
    match decided.reason {
        Reason::Consolidation => {
            consolidation::evaluate(&mut base, &set, &consolidation_settings(inputs.settings)).ok()
        }
        Reason::Expiration => {
            let candidate = set.first()?;
            let ttl = expiry::ttl(state, state.node(&candidate.node)?)?;
            expiry::evaluate(&mut base, candidate, ttl, inputs.now).ok()
        }
        Reason::Drift => {
            let candidate = set.first()?;
            let why = inputs.drifted.get(&candidate.node)?.clone();
            simulate::replace_or_delete(&mut base, candidate, Reason::Drift, why).ok()
        }
    }
}

/// Runs until `stop` turns true.
pub async fn run(ctx: Arc<Context>, mut stop: watch::Receiver<bool>) {
    clear_stale_taints(&ctx).await;
    let mut cloud = CloudDrift::default();
    let mut waiting_on: Option<String> = None;
    loop {
        let pass = observe_and_decide(&ctx, &mut cloud).await;
        if pass.settling != waiting_on {
            if let Some(why) = &pass.settling {
                tracing::debug!("disruption waits: {why}");
            }
            waiting_on = pass.settling.clone();
        }
        report_blocked(&ctx, &pass.blocked);
        for (node, why) in &pass.unconsolidatable {
            let message = format!("Can't consolidate node: {why}");
            act::event_on_node(&ctx, node, false, act::REASON_UNCONSOLIDATABLE, &message);
        }
        if let Some(decided) = pass.command {
            tracing::debug!(
                "disruption decided, validating in {}s: {}",
                VALIDATION_DELAY.as_secs(),
                decided.describe()
            );
            if !pause(&ctx, &mut stop, VALIDATION_DELAY).await {
                return;
            }
            let (types, drifted) = refresh(&ctx, &mut cloud).await;
            let again = on_cache(&ctx, &types, &drifted, |state, inputs| {
                revalidate(state, inputs, &decided)
            });
            match again {
                Some(again) if decided.still_holds(&again) => {
                    match act::execute(&ctx, &again, &mut stop).await {
                        Ok(()) => {}
                        Err(Abort::Stopped) => return,
                        Err(Abort::Failed(error)) => {
                            ctx.metrics.controller_error("disruption", &error);
                            tracing::warn!(reason = again.reason.as_str(), %error, "disruption abandoned");
                            let error = error.to_string();
                            for node in again.node_names() {
                                act::event_on_node(&ctx, node, true, act::REASON_FAILED, &error);
                            }
                        }
                    }
                }
                _ => tracing::info!(
                    nodes = ?decided.node_names(),
                    "Abandoning {} of node(s): no longer valid after {}s",
                    decided.reason.as_str(),
                    VALIDATION_DELAY.as_secs()
                ),
            }
        }
        if !pause(&ctx, &mut stop, PERIOD).await {
            return;
        }
    }
}

/// `read` run on the cache, under its lock, with these refreshed inputs and the time now.
fn on_cache<T>(
    ctx: &Context,
    types: &InstanceTypesByProvisioner,
    drifted: &BTreeMap<String, String>,
    read: impl FnOnce(&ClusterState, &Inputs) -> T,
) -> T {
    let now = ctx.clock.now();
    let state = ctx.state.read();
    let is_nominated = |name: &str| ctx.state.is_node_nominated(&state, name, now);
    let inputs = Inputs {
        types,
        settings: &ctx.settings,
        now,
        drifted,
        nominated: &is_nominated,
    };
    read(&state, &inputs)
}

/// Instance types and drift answers, refreshed.
async fn refresh(
    ctx: &Context,
    cloud: &mut CloudDrift,
) -> (InstanceTypesByProvisioner, BTreeMap<String, String>) {
    let (types, _) = ctx.resolve_instance_types("disruption").await;
    if !ctx.settings.feature_gates.drift {
        return (types, BTreeMap::new());
    }
    cloud.refresh(ctx).await;
    let drifted = drift::drifted(&ctx.state.read(), cloud);
    (types, drifted)
}

async fn observe_and_decide(ctx: &Context, cloud: &mut CloudDrift) -> Pass {
    let waiting = settling(&ctx.state.read());
    if waiting.is_some() {
        // Nothing is decided meanwhile: skip the cloud calls too.
        return Pass {
            settling: waiting,
            ..Pass::default()
        };
    }
    let (types, drifted) = refresh(ctx, cloud).await;
    let started = Instant::now();
    let snapshot = on_cache(ctx, &types, &drifted, Snapshot::take);
    // The search may run the scheduling core many times: off the async workers.
    let pass = match tokio::task::spawn_blocking(move || snapshot.decide()).await {
        Ok(pass) => pass,
        Err(error) => {
            tracing::error!(%error, "disruption pass failed");
            Pass::default()
        }
    };
    tracing::debug!(took = ?started.elapsed(), "disruption pass");
    ctx.metrics
        .reconciled("disruption", Reconciled::Success, started.elapsed());
    let metrics = ctx.metrics.disruption();
    for (reason, candidates) in &pass.eligible {
        metrics.set_eligible(reason.as_str(), *candidates);
    }
    for (reason, took) in &pass.evaluated {
        metrics.evaluated(reason.as_str(), *took);
    }
    for search in &pass.timed_out {
        metrics.consolidation_timed_out(search);
    }
    pass
}

/// An Event on each node a disruption wanted and may not touch (repeats are dropped by the
/// Event writer); nothing for reasons that pass by themselves.
fn report_blocked(ctx: &Context, blocked: &[(Reason, Blocked)]) {
    for (reason, node) in blocked.iter().filter(|(_, b)| !b.transient) {
        let message = format!("Cannot disrupt node ({}): {}", reason.as_str(), node.reason);
        tracing::debug!(node = %node.node, "{message}");
        act::event_on_node(ctx, &node.node, false, act::REASON_BLOCKED, &message);
    }
}

/// Sleeps `duration` (simulated); false when the loop is told to stop.
async fn pause(ctx: &Context, stop: &mut watch::Receiver<bool>, duration: Duration) -> bool {
    tokio::select! {
        _ = stop.wait_for(|stopped| *stopped) => false,
        () = sleep(ctx.clock.as_ref(), duration) => true,
    }
}

/// A previous leader may have stopped between tainting a node and deleting it: nodes that are
/// not being deleted lose the disruption taint.
async fn clear_stale_taints(ctx: &Context) {
    let stale: Vec<String> = ctx
        .state
        .read()
        .nodes()
        .filter(|n| !n.deleting)
        .filter(|n| {
            n.node
                .spec
                .as_ref()
                .and_then(|s| s.taints.as_ref())
                .is_some_and(|t| t.iter().any(|t| t.key == labels::DISRUPTION_TAINT_KEY))
        })
        .map(|n| n.core.name.clone())
        .collect();
    for node in stale {
        match act::set_disruption_taint(ctx, &node, false).await {
            Ok(()) => tracing::info!(node = %node, "Removed a stale disruption taint"),
            Err(error) => {
                tracing::warn!(node = %node, %error, "cannot remove a stale disruption taint")
            }
        }
    }
}
