//! The lifecycle loop: every machine's [`next_step`] acted on. Each machine has at most one
//! action in flight; an action that fails is retried with backoff. Writes are applied to the
//! shared cache as the API server answers them, so the next pass does not repeat them.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use nodewright_scheduling::labels;
use serde_json::json;
use tokio::sync::watch;

use super::{GiveUp, NodeRegistration, Step, next_step, set_condition};
use crate::apis::machine::{MACHINE_INITIALIZED, MACHINE_LAUNCHED, MACHINE_REGISTERED};
use crate::apis::{Machine, MachineStatus};
use crate::cloudprovider::{
    CloudProviderError, DeleteStatus, LaunchRequest, LaunchedInstance, MachineId,
};
use crate::controllers::context::{Context, node_template, with_settings_defaults};
use crate::controllers::error::ControllerError;
use crate::controllers::events::reference;
use crate::controllers::resource_list;
use crate::controllers::work::{Outcome, Work};
use crate::controllers::write;
use crate::state::{MachineEntry, NodeEntry};

const CONTROLLER: &str = "machine.lifecycle";
/// Event reasons on machines.
pub const REASON_LAUNCH_FAILED: &str = "LaunchFailed";
pub const REASON_INSUFFICIENT_CAPACITY: &str = "InsufficientCapacityError";
pub const REASON_GIVE_UP: &str = "MachineLivenessFailed";
/// How often a terminating instance is asked again whether it is gone.
const TERMINATION_POLL: Duration = Duration::from_secs(5);

/// One action to take, with what it needs from the cache.
enum Action {
    Launch(Box<MachineEntry>),
    GiveUp(Box<MachineEntry>, GiveUp),
    Register(Box<MachineEntry>, Box<NodeEntry>, NodeRegistration),
    Initialize(Box<MachineEntry>, String),
    Terminate(Box<MachineEntry>, Option<Box<NodeEntry>>),
}

/// Runs until `stop` turns true.
pub async fn run(ctx: Arc<Context>, mut stop: watch::Receiver<bool>) {
    let mut changes = ctx.state.changed();
    let mut work = Work::counted(CONTROLLER, ctx.metrics.clone());
    loop {
        let now = ctx.clock.now();
        changes.borrow_and_update();
        let (actions, wake_at) = plan(&ctx, now, &work);
        for (name, action) in actions {
            let ctx = ctx.clone();
            work.spawn(name, async move { act(&ctx, action).await });
        }
        let clock = ctx.clock.as_ref();
        if !work
            .wait(clock, &mut changes, &mut stop, wake_at, "machine action")
            .await
        {
            return;
        }
        let state = ctx.state.read();
        work.retain(|name| state.machine(name).is_some());
    }
}

/// What to do now for each idle machine, and when to look again at the earliest.
fn plan(
    ctx: &Context,
    now: SystemTime,
    work: &Work,
) -> (Vec<(String, Action)>, Option<SystemTime>) {
    let state = ctx.state.read();
    let mut actions = Vec::new();
    let mut wake_at: Option<SystemTime> = None;
    for entry in state.machines() {
        let name = entry.machine.name_any();
        if !work.is_idle(&name, now) {
            continue;
        }
        let node = state.node_of_machine(&entry.machine);
        let action = match next_step(entry, node, now, &ctx.settings) {
            Step::Settled | Step::WaitForInitialization { .. } => continue,
            Step::WaitForNode { deadline } => {
                wake_at = Some(wake_at.map_or(deadline, |w| w.min(deadline)));
                continue;
            }
            Step::Terminating => {
                Action::Terminate(Box::new(entry.clone()), node.cloned().map(Box::new))
            }
            Step::Launch => {
                // A launch that has waited long enough is given up on, so look again then.
                let deadline = created(entry, now) + ctx.settings.launch_ttl;
                wake_at = Some(wake_at.map_or(deadline, |w| w.min(deadline)));
                Action::Launch(Box::new(entry.clone()))
            }
            Step::Delete(reason) => Action::GiveUp(Box::new(entry.clone()), reason),
            Step::Register(registration) => {
                let Some(node) = node else { continue };
                Action::Register(
                    Box::new(entry.clone()),
                    Box::new(node.clone()),
                    registration,
                )
            }
            Step::Initialize { node } => Action::Initialize(Box::new(entry.clone()), node),
        };
        actions.push((name, action));
    }
    (actions, wake_at)
}

fn created(entry: &MachineEntry, now: SystemTime) -> SystemTime {
    entry
        .machine
        .metadata
        .creation_timestamp
        .as_ref()
        .map(|t| SystemTime::from(t.0))
        .unwrap_or(now)
}

async fn act(ctx: &Context, action: Action) -> Outcome {
    match action {
        Action::Launch(entry) => launch(ctx, &entry).await,
        Action::GiveUp(entry, reason) => give_up(ctx, &entry, reason).await,
        Action::Register(entry, node, registration) => {
            register(ctx, &entry, &node, &registration).await
        }
        Action::Initialize(entry, node) => initialize(ctx, &entry, &node).await,
        Action::Terminate(entry, node) => terminate(ctx, &entry, node.as_deref()).await,
    }
}

fn now_time(ctx: &Context) -> Time {
    Time(Timestamp::try_from(ctx.clock.now()).unwrap_or(Timestamp::UNIX_EPOCH))
}

fn machines(ctx: &Context) -> Api<Machine> {
    Api::all(ctx.client.clone())
}

/// Writes `status` and applies the answer to the cache.
async fn write_status(
    ctx: &Context,
    name: &str,
    status: &MachineStatus,
) -> Result<(), ControllerError> {
    let patched = write::status(&machines(ctx), name, status)
        .await
        .map_err(|e| ControllerError::api(format!("write the status of machine {name}"), e))?;
    ctx.state.apply(&patched);
    Ok(())
}

async fn launch(ctx: &Context, entry: &MachineEntry) -> Outcome {
    let machine = &entry.machine;
    let name = machine.name_any();
    tracing::debug!(machine = %name, "launching");
    let template = {
        let state = ctx.state.read();
        let provisioner = entry
            .provisioner
            .as_deref()
            .and_then(|p| state.provisioner(p))
            .map(|p| p.provisioner.clone());
        match (&machine.spec.machine_template_ref, provisioner) {
            (Some(reference), _) => state
                .node_template(&reference.name)
                .ok_or_else(|| format!("AWSNodeTemplate {} does not exist", reference.name))
                .and_then(|t| {
                    crate::cloudprovider::NodeTemplate::from_spec(&t.spec)
                        .map_err(|e| e.to_string())
                })
                .and_then(|t| with_settings_defaults(t, &ctx.settings)),
            (None, Some(provisioner)) => node_template(&state, &provisioner, &ctx.settings),
            (None, None) => Err(format!(
                "machine {name} names no node template and its provisioner is gone"
            )),
        }
    };
    let request = template.and_then(|template| {
        LaunchRequest::from_machine(machine, template).map_err(|e| e.to_string())
    });
    let request = match request {
        Ok(request) => request,
        Err(reason) => return cannot_launch(ctx, entry, &reason).await,
    };
    let result = ctx
        .cloud_call(CONTROLLER, "Create", ctx.cloud.create(&request))
        .await;
    let instance = match result {
        Ok(instance) => instance,
        Err(CloudProviderError::InsufficientCapacity { .. }) => {
            let reason = result.err().map(|e| e.to_string()).unwrap_or_default();
            ctx.events.warning(
                reference(machine),
                REASON_INSUFFICIENT_CAPACITY,
                reason.clone(),
            );
            tracing::warn!(machine = %name, "{reason}; deleting the machine so its pods go to the next batch");
            delete_machine(ctx, machine).await?;
            if let Some(provisioner) = &entry.provisioner {
                ctx.metrics
                    .machine_terminated("insufficient_capacity", provisioner);
            }
            return Ok(None);
        }
        Err(error) if error.is_retryable() => return launch_failed(ctx, entry, error).await,
        Err(error) => return cannot_launch(ctx, entry, &error.to_string()).await,
    };
    record_launch(ctx, entry, &instance).await?;
    if ctx.settings.bind_pods {
        super::early::bind_early(ctx, entry, &instance).await;
    }
    Ok(None)
}

/// A launch that no retry will fix (no offering matches, a template that cannot be resolved,
/// a refused request): the machine goes at once, so it stops counting as capacity on its way
/// and its pods are planned again in the next batch.
async fn cannot_launch(ctx: &Context, entry: &MachineEntry, reason: &str) -> Outcome {
    let name = entry.machine.name_any();
    ctx.events
        .warning(reference(&entry.machine), REASON_LAUNCH_FAILED, reason);
    tracing::warn!(machine = %name, "cannot launch: {reason}; deleting the machine so its pods go to the next batch");
    delete_machine(ctx, &entry.machine).await?;
    if let Some(provisioner) = &entry.provisioner {
        ctx.metrics.machine_terminated("launch_failed", provisioner);
    }
    Ok(None)
}

/// Says why the launch failed on the machine, and asks for a retry.
async fn launch_failed(ctx: &Context, entry: &MachineEntry, error: CloudProviderError) -> Outcome {
    let name = entry.machine.name_any();
    let reason = error.to_string();
    let reason = reason.as_str();
    ctx.events
        .warning(reference(&entry.machine), REASON_LAUNCH_FAILED, reason);
    let mut status = entry.machine.status.clone().unwrap_or_default();
    set_condition(
        &mut status.conditions,
        MACHINE_LAUNCHED,
        false,
        REASON_LAUNCH_FAILED,
        reason,
        now_time(ctx),
    );
    write_status(ctx, &name, &status).await?;
    Err(ControllerError::cloud(
        format!("launch machine {name}"),
        error,
    ))
}

async fn record_launch(
    ctx: &Context,
    entry: &MachineEntry,
    instance: &LaunchedInstance,
) -> Result<(), ControllerError> {
    let name = entry.machine.name_any();
    let mut machine_labels = instance.labels.clone();
    machine_labels.insert(
        labels::INSTANCE_TYPE.to_string(),
        instance.instance_type.clone(),
    );
    machine_labels.insert(labels::ZONE.to_string(), instance.zone.clone());
    machine_labels.insert(
        labels::CAPACITY_TYPE.to_string(),
        crate::state::capacity_type_value(instance.capacity_type).to_string(),
    );
    let labelled = machines(ctx)
        .patch(
            &name,
            &PatchParams::default(),
            &Patch::Merge(json!({ "metadata": { "labels": machine_labels } })),
        )
        .await
        .map_err(|e| ControllerError::api(format!("label machine {name}"), e))?;
    let mut status = labelled.status.clone().unwrap_or_default();
    status.provider_id = Some(instance.provider_id.clone());
    status.capacity = resource_list(&instance.capacity);
    status.allocatable = resource_list(&allocatable(ctx, entry, instance));
    set_condition(
        &mut status.conditions,
        MACHINE_LAUNCHED,
        true,
        "",
        "",
        now_time(ctx),
    );
    write_status(ctx, &name, &status).await?;
    if let Some(provisioner) = &entry.provisioner {
        ctx.metrics.machine_launched(provisioner);
    }
    // The node registers under its private DNS name, as Karpenter's line shows it.
    let hostname = instance
        .labels
        .get(labels::HOSTNAME)
        .or(instance.hostname.as_ref())
        .cloned()
        .unwrap_or_else(|| instance.instance_id.clone());
    tracing::info!(
        machine = %name,
        provisioner = entry.provisioner.as_deref().unwrap_or_default(),
        "Launched instance: {}, hostname: {}, type: {}, zone: {}, capacityType: {}",
        instance.instance_id,
        hostname,
        instance.instance_type,
        instance.zone,
        crate::state::capacity_type_value(instance.capacity_type)
    );
    Ok(())
}

/// The instance type's allocatable under the provisioner's kubelet settings; its capacity when
/// the type is not known.
fn allocatable(
    ctx: &Context,
    entry: &MachineEntry,
    instance: &LaunchedInstance,
) -> nodewright_scheduling::resources::Resources {
    let types = ctx.known_instance_types();
    let state = ctx.state.read();
    let provisioner = entry.provisioner.as_deref();
    let kubelet = provisioner
        .and_then(|p| state.provisioner(p))
        .map(|p| p.core.kubelet.clone())
        .unwrap_or_default();
    provisioner
        .and_then(|p| types.get(p))
        .and_then(|list| list.iter().find(|t| t.name == instance.instance_type))
        .map(|t| t.allocatable(&kubelet, &ctx.settings.allocatable()))
        .unwrap_or_else(|| instance.capacity.clone())
}

async fn delete_machine(ctx: &Context, machine: &Machine) -> Result<(), ControllerError> {
    let name = machine.name_any();
    match machines(ctx).delete(&name, &DeleteParams::default()).await {
        Ok(either) => {
            if let Some(deleting) = either.left() {
                ctx.state.apply(&deleting);
            }
            Ok(())
        }
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(e) => Err(ControllerError::api(format!("delete machine {name}"), e)),
    }
}

async fn give_up(ctx: &Context, entry: &MachineEntry, reason: GiveUp) -> Outcome {
    let ttl = match reason {
        GiveUp::LaunchTimeout => ctx.settings.launch_ttl,
        GiveUp::RegistrationTimeout => ctx.settings.registration_ttl,
    };
    let message = reason.message(ttl);
    tracing::warn!(machine = %entry.machine.name_any(), "{message}");
    ctx.events
        .warning(reference(&entry.machine), REASON_GIVE_UP, message);
    delete_machine(ctx, &entry.machine).await?;
    if let Some(provisioner) = &entry.provisioner {
        ctx.metrics
            .machine_terminated(reason.metric_reason(), provisioner);
    }
    Ok(None)
}

async fn register(
    ctx: &Context,
    entry: &MachineEntry,
    node: &NodeEntry,
    registration: &NodeRegistration,
) -> Outcome {
    let name = entry.machine.name_any();
    let nodes: Api<Node> = Api::all(ctx.client.clone());
    let patched = write::adopt_node(&nodes, &node.node, registration)
        .await
        .map_err(|e| ControllerError::api(format!("adopt node {}", registration.node), e))?;
    ctx.state.apply(&patched);
    let mut status = entry.machine.status.clone().unwrap_or_default();
    status.node_name = Some(registration.node.clone());
    set_condition(
        &mut status.conditions,
        MACHINE_REGISTERED,
        true,
        "",
        "",
        now_time(ctx),
    );
    write_status(ctx, &name, &status).await?;
    if let Some(provisioner) = &entry.provisioner {
        ctx.metrics.machine_registered(provisioner);
        ctx.metrics.node_created(provisioner);
    }
    tracing::info!(machine = %name, node = %registration.node, "Registered machine");
    Ok(None)
}

async fn initialize(ctx: &Context, entry: &MachineEntry, node: &str) -> Outcome {
    let name = entry.machine.name_any();
    let nodes: Api<Node> = Api::all(ctx.client.clone());
    let patched = nodes
        .patch(
            node,
            &PatchParams::default(),
            &Patch::Merge(json!({ "metadata": { "labels": { labels::INITIALIZED: "true" } } })),
        )
        .await
        .map_err(|e| ControllerError::api(format!("label node {node} initialized"), e))?;
    ctx.state.apply(&patched);
    // The pods it was launched for are bound only now: give them time before it counts as
    // empty (its machine's batch also holds it while those pods wait: see nominations).
    ctx.state
        .nominate(node, ctx.clock.now() + ctx.settings.batch_max_duration * 2);
    let mut status = entry.machine.status.clone().unwrap_or_default();
    set_condition(
        &mut status.conditions,
        MACHINE_INITIALIZED,
        true,
        "",
        "",
        now_time(ctx),
    );
    write_status(ctx, &name, &status).await?;
    if let Some(provisioner) = &entry.provisioner {
        ctx.metrics.machine_initialized(provisioner);
    }
    tracing::info!(machine = %name, node = %node, "Initialized machine");
    Ok(None)
}

/// A machine being deleted: its node goes first (the termination controller drains it and
/// terminates the instance); without a node, the instance is terminated here. The finalizer
/// comes off once the instance is gone.
async fn terminate(ctx: &Context, entry: &MachineEntry, node: Option<&NodeEntry>) -> Outcome {
    let machine = &entry.machine;
    let name = machine.name_any();
    let finalizers = machine.metadata.finalizers.clone().unwrap_or_default();
    if !finalizers
        .iter()
        .any(|f| f == labels::TERMINATION_FINALIZER)
    {
        return Ok(None);
    }
    if let Some(node) = node {
        if !node.deleting {
            let nodes: Api<Node> = Api::all(ctx.client.clone());
            match nodes
                .delete(&node.core.name, &DeleteParams::default())
                .await
            {
                Ok(either) => {
                    if let Some(deleting) = either.left() {
                        ctx.state.apply(&deleting);
                    }
                }
                Err(kube::Error::Api(status)) if status.code == 404 => {}
                Err(e) => {
                    return Err(ControllerError::api(
                        format!("delete node {}", node.core.name),
                        e,
                    ));
                }
            }
        }
        return Ok(Some(ctx.clock.now() + TERMINATION_POLL));
    }
    let id = MachineId::from(machine);
    let result = ctx
        .cloud_call(CONTROLLER, "Delete", ctx.cloud.delete(&id))
        .await;
    match result.map_err(|e| {
        ControllerError::cloud(format!("terminate the instance of machine {name}"), e)
    })? {
        DeleteStatus::Terminating => Ok(Some(ctx.clock.now() + TERMINATION_POLL)),
        DeleteStatus::Gone => {
            write::release_cached(&ctx.state, &machines(ctx), machine)
                .await
                .map_err(|e| ControllerError::api(format!("release machine {name}"), e))?;
            tracing::info!(machine = %name, "Deleted machine");
            Ok(None)
        }
    }
}
