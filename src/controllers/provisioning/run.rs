//! The provisioning loop: new pending pods open a batch; when the window closes, every
//! provisionable pod is scheduled against nodes, in-flight machines and provisioners, and each
//! new node is recorded as a `Machine`. Launching is the lifecycle loop's part, so an instance is
//! only ever bought for a Machine that exists.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use kube::ResourceExt;
use nodewright_scheduling::instance_type::CapacityType;
use nodewright_scheduling::{Plan, ScheduleInput, schedule};
use tokio::sync::watch;

use super::batcher::{Batch, Batcher};
use super::decide::{
    self, Decision, MachineNames, REASON_FAILED_SCHEDULING, REASON_NOMINATED, Target,
    failed_scheduling_message,
};
use crate::apis::Provisioner;
use crate::clock::sleep_until;
use crate::controllers::context::Context;
use crate::controllers::events::{pod_reference, reference};
use crate::controllers::write;
use crate::metrics::Reconciled;
use crate::settings::Settings;
use crate::state::{InstanceTypesByProvisioner, SharedState, object_key};

/// Event reason on a provisioner whose node template or instance types cannot be used.
pub const REASON_INVALID_TEMPLATE: &str = "InvalidNodeTemplate";
/// `karpenter_machines_created{reason}` of machines this loop creates.
const CREATED_FOR_PROVISIONING: &str = "provisioning";

/// Pods still waiting after a batch are planned again this often (simulated time) while nothing
/// else brings them back: an offering held out after insufficient capacity returns after 3 min,
/// and nothing in the cluster changes when it does.
const RECHECK_WAITING: Duration = Duration::from_secs(30);

/// Each provisioner's instance types, and why a provisioner has none.
type ResolvedTypes = (InstanceTypesByProvisioner, BTreeMap<String, String>);

/// Runs until `stop` turns true.
pub async fn run(ctx: Arc<Context>, mut stop: watch::Receiver<bool>) {
    let mut batcher: Batcher<String> = Batcher::new(ctx.settings.batch_window());
    let mut changes = ctx.state.changed();
    let mut seen_capacity = changes.borrow_and_update().capacity;
    let mut names = MachineNames::new(seed(), Vec::new());
    // Pods already waiting when this loop starts (a restart, a new leader) form the first batch.
    ctx.state.take_new_pods();
    let now = ctx.clock.now();
    for key in provisionable_keys(&ctx) {
        batcher.add(key, now);
    }
    let mut idle_logged = false;
    let mut prefetch: Option<tokio::task::JoinHandle<ResolvedTypes>> = None;
    let mut recheck_at: Option<SystemTime> = None;
    loop {
        let now = ctx.clock.now();
        for key in ctx.state.take_new_pods() {
            batcher.add(key, now);
        }
        if recheck_at.is_some_and(|at| at <= now) {
            recheck_at = None;
            if batcher.is_empty() {
                for key in provisionable_keys(&ctx) {
                    batcher.add(key, now);
                }
            }
        }
        let capacity = changes.borrow_and_update().capacity;
        if capacity != seen_capacity {
            seen_capacity = capacity;
            // Provisioners or templates changed: what was fetched may be stale.
            if let Some(task) = prefetch.take() {
                task.abort();
            }
            for key in provisionable_keys(&ctx) {
                batcher.add(key, now);
            }
        }
        // Instance types are fetched while the window is open, not after it closes.
        if batcher.is_open() && prefetch.is_none() {
            let ctx = ctx.clone();
            prefetch = Some(tokio::spawn(async move {
                ctx.resolve_instance_types("provisioner").await
            }));
        }
        let due = batcher.deadline();
        if let Some(batch) = batcher.poll(now) {
            tracing::debug!(
                pods = batch.keys.len(),
                reason = ?batch.reason,
                late_ms = due
                    .and_then(|d| now.duration_since(d).ok())
                    .unwrap_or_default()
                    .as_secs_f64()
                    * 1000.0,
                "batch closed"
            );
            let types = match prefetch.take().map(|task| async move { task.await.ok() }) {
                Some(task) => task.await,
                None => None,
            };
            let types = match types {
                Some(types) => types,
                None => ctx.resolve_instance_types("provisioner").await,
            };
            let started = std::time::Instant::now();
            let retry = provision(&ctx, &mut names, &batch, types).await;
            let result = if retry.is_empty() {
                Reconciled::Success
            } else {
                Reconciled::Error
            };
            ctx.metrics
                .reconciled("provisioning", result, started.elapsed());
            let now = ctx.clock.now();
            for key in retry {
                batcher.add(key, now);
            }
            recheck_at = ctx
                .state
                .read()
                .has_provisionable_pods()
                .then(|| now + RECHECK_WAITING);
            idle_logged = false;
            continue;
        }
        if batcher.is_empty() && !idle_logged {
            tracing::info!("Waiting for unschedulable pods");
            idle_logged = true;
        }
        let deadline = match (batcher.deadline(), recheck_at) {
            (Some(batch), Some(recheck)) => Some(batch.min(recheck)),
            (batch, recheck) => batch.or(recheck),
        };
        tokio::select! {
            _ = stop.wait_for(|stopped| *stopped) => {
                if let Some(task) = prefetch {
                    task.abort();
                }
                return;
            }
            changed = changes.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            () = sleep_until(ctx.clock.as_ref(), deadline.unwrap_or(now)), if deadline.is_some() => {}
        }
    }
}

fn seed() -> u64 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or_default();
    nanos ^ (u64::from(std::process::id()) << 32)
}

fn provisionable_keys(ctx: &Context) -> Vec<String> {
    ctx.state
        .read()
        .provisionable_pods()
        .into_iter()
        .map(|p| object_key(&p.namespace, &p.name))
        .collect()
}

/// One closed batch: schedule every provisionable pod, then record the machines. Returns the
/// pods of machines that could not be created, for the next batch.
async fn provision(
    ctx: &Context,
    names: &mut MachineNames,
    batch: &Batch<String>,
    (types, problems): ResolvedTypes,
) -> Vec<String> {
    for (provisioner, problem) in &problems {
        tracing::error!(provisioner = %provisioner, "{problem}");
        if let Some(object) = ctx.state.read().provisioner(provisioner) {
            ctx.events.warning(
                reference(&object.provisioner),
                REASON_INVALID_TEMPLATE,
                problem.clone(),
            );
        }
    }
    // Building the input and scheduling take CPU in proportion to the cluster: off the async
    // workers, so watches and the leader Lease keep being served during a large batch.
    let shared = ctx.state.clone();
    let settings = ctx.settings.clone();
    let pods = batch.keys.len();
    let scheduled =
        tokio::task::spawn_blocking(move || schedule_batch(&shared, &types, &settings, pods)).await;
    let Some(Scheduled {
        input,
        plan,
        took,
        provisioners,
        taken,
    }) = (match scheduled {
        Ok(scheduled) => scheduled,
        Err(error) => {
            tracing::error!(%error, "scheduling the batch failed; its pods go to the next batch");
            return batch.keys.clone();
        }
    })
    else {
        return Vec::new();
    };
    ctx.metrics.observe_scheduling(took);
    *names = MachineNames::new(seed(), taken);
    let decision = decide::decide(&plan, &input, |name| provisioners.get(name), names);
    if !decision.machines.is_empty() {
        tracing::info!(
            machines = decision.machines.len(),
            pods = decision
                .machines
                .iter()
                .map(|m| m.pods.len())
                .sum::<usize>(),
            "Computed new machine(s) to fit pod(s)"
        );
    }
    let failed = create_machines(ctx, &decision).await;
    report(ctx, &decision, &failed);
    failed
}

/// A batch scheduled: its input, the plan, how long the core took, the provisioners by name
/// and the machine names in use.
struct Scheduled {
    input: ScheduleInput,
    plan: Plan,
    took: Duration,
    provisioners: BTreeMap<String, Provisioner>,
    taken: Vec<String>,
}

/// Builds the batch's input from the cache and schedules it; `None` when no pod waits.
fn schedule_batch(
    shared: &SharedState,
    types: &InstanceTypesByProvisioner,
    settings: &Settings,
    new: usize,
) -> Option<Scheduled> {
    let building = Instant::now();
    let (input, provisioners, taken) = {
        let state = shared.read();
        let provisioners: BTreeMap<String, Provisioner> = state
            .provisioners()
            .map(|p| (p.core.name.clone(), p.provisioner.clone()))
            .collect();
        let taken: Vec<String> = state.machines().map(|m| m.machine.name_any()).collect();
        (state.schedule_input(types, settings), provisioners, taken)
    };
    if input.pods.is_empty() {
        return None;
    }
    tracing::debug!(
        took_ms = building.elapsed().as_secs_f64() * 1000.0,
        "built the batch's input"
    );
    tracing::info!(pods = input.pods.len(), new, "Found provisionable pod(s)");
    let started = Instant::now();
    let plan = schedule(&input);
    let took = started.elapsed();
    tracing::debug!(
        pods = input.pods.len(),
        took_ms = took.as_secs_f64() * 1000.0,
        "scheduled the batch"
    );
    Some(Scheduled {
        input,
        plan,
        took,
        provisioners,
        taken,
    })
}

/// Creates the decided machines; returns the pods of those that could not be created.
async fn create_machines(ctx: &Context, decision: &Decision) -> Vec<String> {
    let mut failed = Vec::new();
    for new in &decision.machines {
        match write::create_machine(ctx, &new.machine).await {
            Ok(created) => {
                if ctx.settings.bind_pods {
                    let state = ctx.state.read();
                    let pods: Vec<String> = new
                        .pods
                        .iter()
                        .filter(|key| {
                            let (namespace, name) = key.split_once('/').unwrap_or(("default", key));
                            state.pod(namespace, name).is_some_and(|p| p.early_bindable)
                        })
                        .cloned()
                        .collect();
                    drop(state);
                    ctx.state.plan_early_binding(&created.name_any(), pods);
                }
                ctx.metrics
                    .machine_created(CREATED_FOR_PROVISIONING, &new.provisioner);
                let estimated =
                    new.capacity_type == CapacityType::Spot && ctx.cloud.estimates_spot_prices();
                let price = match (new.price_per_hour > 0.0, estimated) {
                    (true, false) => format!("${:.4}/h", new.price_per_hour),
                    (true, true) => format!("~${:.4}/h est.", new.price_per_hour),
                    (false, _) => "an unknown price".to_string(),
                };
                tracing::info!(
                    machine = %created.name_any(),
                    provisioner = %new.provisioner,
                    pods = new.pods.len(),
                    "Created machine, expecting {} at {price}",
                    new.instance_type,
                );
            }
            Err(error) => {
                tracing::error!(machine = %new.machine.name_any(), %error, "cannot create machine; its pods wait for the next batch");
                failed.extend(new.pods.iter().cloned());
            }
        }
    }
    failed
}

/// Events for what the batch decided.
fn report(ctx: &Context, decision: &Decision, failed: &[String]) {
    // Pods take a while to land where they were nominated; their node is not empty meanwhile.
    let until = ctx.clock.now() + ctx.settings.batch_max_duration * 2;
    let mut targets = BTreeSet::new();
    let mut pods = Vec::new();
    for nomination in &decision.nominations {
        if failed.contains(&nomination.pod) {
            continue;
        }
        match &nomination.target {
            Target::NewMachine(name) | Target::InFlightMachine(name) | Target::Node(name) => {
                targets.insert(name.as_str());
            }
        }
        pods.push(nomination.pod.clone());
        ctx.events.normal(
            pod_reference(&nomination.pod),
            REASON_NOMINATED,
            nomination.message(),
        );
    }
    let targets: Vec<&str> = targets.into_iter().collect();
    ctx.state.nominate_batch(&targets, until, &pods);
    for pod in &decision.unschedulable {
        tracing::warn!(pod = %pod.pod, "no provisioner can run this pod: {}", pod.reason);
        ctx.events.warning(
            pod_reference(&pod.pod),
            REASON_FAILED_SCHEDULING,
            failed_scheduling_message(&format!("no provisioner can run this pod: {}", pod.reason)),
        );
    }
    for refusal in &decision.refused {
        tracing::warn!(provisioner = %refusal.provisioner, pods = refusal.pods.len(), "{}", refusal.reason);
        for pod in &refusal.pods {
            ctx.events.warning(
                pod_reference(pod),
                REASON_FAILED_SCHEDULING,
                failed_scheduling_message(&refusal.reason),
            );
        }
    }
}
