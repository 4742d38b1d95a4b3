//! Garbage collection, closing the gap crashes and outside hands can leave: an instance tagged
//! for this cluster that no Machine accounts for is terminated once it is older than
//! [`GRACE`] (a launch whose Machine write is still on its way is younger); a launched Machine
//! whose instance no longer exists is deleted, so its pods are provisioned for again.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use kube::ResourceExt;
use kube::api::{Api, DeleteParams};
use tokio::sync::watch;

use crate::apis::Machine;
use crate::clock::sleep;
use crate::cloudprovider::{CloudProviderError, LaunchedInstance, MachineId};
use crate::controllers::context::Context;
use crate::controllers::error::ControllerError;

/// How long an instance may exist without a Machine before it is terminated.
pub const GRACE: Duration = Duration::from_secs(30);
/// Time between passes (simulated time).
const PERIOD: Duration = Duration::from_secs(10);
const CONTROLLER: &str = "garbage_collection";

/// What one pass found to collect.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Garbage {
    /// Instances no Machine accounts for.
    pub instances: Vec<LaunchedInstance>,
    /// Machines (by name) whose launched instance is not among the live ones.
    pub machines: Vec<String>,
}

/// Compares the cloud's live instances with the machines, as of `now`.
pub fn find_garbage(
    instances: &[LaunchedInstance],
    machines: &[Machine],
    now: SystemTime,
) -> Garbage {
    let names: HashSet<String> = machines.iter().map(|m| m.name_any()).collect();
    let provider_ids: HashSet<&str> = machines
        .iter()
        .filter_map(|m| m.status.as_ref()?.provider_id.as_deref())
        .collect();
    let live: HashSet<&str> = instances.iter().map(|i| i.provider_id.as_str()).collect();
    let orphans = instances
        .iter()
        .filter(|i| {
            !provider_ids.contains(i.provider_id.as_str())
                && !i.machine_name.as_ref().is_some_and(|m| names.contains(m))
        })
        .filter(|i| {
            i.launch_time
                .is_none_or(|at| crate::clock::expired(at, GRACE, now))
        })
        .cloned()
        .collect();
    let lost = machines
        .iter()
        .filter(|m| m.metadata.deletion_timestamp.is_none())
        .filter(|m| {
            m.status
                .as_ref()
                .and_then(|s| s.provider_id.as_deref())
                .is_some_and(|id| !live.contains(id))
        })
        .map(|m| m.name_any())
        .collect();
    Garbage {
        instances: orphans,
        machines: lost,
    }
}

/// Runs until `stop` turns true.
pub async fn run(ctx: Arc<Context>, mut stop: watch::Receiver<bool>) {
    loop {
        if let Err(error) = collect(&ctx).await {
            ctx.metrics.controller_error(CONTROLLER, &error);
            tracing::warn!(%error, "garbage collection");
        }
        crate::memory::release_free_memory();
        tokio::select! {
            _ = stop.wait_for(|stopped| *stopped) => return,
            () = sleep(ctx.clock.as_ref(), PERIOD) => {}
        }
    }
}

async fn collect(ctx: &Context) -> Result<(), ControllerError> {
    // Machines first: a machine created after this list is younger than any instance listed.
    let machines: Vec<Machine> = ctx
        .state
        .read()
        .machines()
        .map(|m| m.machine.clone())
        .collect();
    let instances = ctx
        .cloud_call(CONTROLLER, "List", ctx.cloud.list())
        .await
        .map_err(|e| ControllerError::cloud("list instances", e))?;
    let garbage = find_garbage(&instances, &machines, ctx.clock.now());
    for instance in &garbage.instances {
        let id = MachineId::new(
            instance
                .machine_name
                .clone()
                .unwrap_or_else(|| instance.instance_id.clone()),
            Some(instance.provider_id.clone()),
        );
        match ctx
            .cloud_call(CONTROLLER, "Delete", ctx.cloud.delete(&id))
            .await
        {
            Ok(_) | Err(CloudProviderError::NotFound { .. }) => {
                tracing::info!(
                    instance = %instance.instance_id,
                    "Garbage collected instance: no machine accounts for it"
                );
                ctx.metrics.machine_terminated(
                    CONTROLLER,
                    instance.provisioner_name.as_deref().unwrap_or_default(),
                );
            }
            Err(error) => {
                let error = ControllerError::cloud(
                    format!("terminate leaked instance {}", instance.instance_id),
                    error,
                );
                ctx.metrics.controller_error(CONTROLLER, &error);
                tracing::warn!(%error, "garbage collection");
            }
        }
    }
    let api: Api<Machine> = Api::all(ctx.client.clone());
    for name in &garbage.machines {
        let Some(machine) = machines.iter().find(|m| m.name_any() == *name) else {
            continue;
        };
        // The list may be stale: ask for this one instance before deleting its machine.
        let id = MachineId::from(machine);
        match ctx.cloud_call(CONTROLLER, "Get", ctx.cloud.get(&id)).await {
            Err(CloudProviderError::NotFound { .. }) => {}
            Ok(instance) if instance.state.is_going_away() => {}
            _ => continue,
        }
        match api.delete(name, &DeleteParams::default()).await {
            Ok(_) => {
                tracing::info!(machine = %name, "Deleted machine: its instance no longer exists");
                let provisioner = machine
                    .labels()
                    .get(nodewright_scheduling::labels::PROVISIONER_NAME)
                    .cloned()
                    .unwrap_or_default();
                ctx.metrics.machine_terminated(CONTROLLER, &provisioner);
            }
            Err(kube::Error::Api(status)) if status.code == 404 => {}
            Err(error) => {
                let error = ControllerError::api(format!("delete machine {name}"), error);
                ctx.metrics.controller_error(CONTROLLER, &error);
                tracing::warn!(%error, "garbage collection");
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use nodewright_scheduling::instance_type::CapacityType;

    fn instance(id: &str, machine: Option<&str>, launched: SystemTime) -> LaunchedInstance {
        LaunchedInstance {
            provider_id: format!("aws:///us-east-1a/{id}"),
            instance_id: id.to_string(),
            instance_type: "m5.large".to_string(),
            zone: "us-east-1a".to_string(),
            capacity_type: CapacityType::OnDemand,
            image_id: None,
            subnet_id: None,
            state: crate::cloudprovider::InstanceState::Running,
            launch_time: Some(launched),
            machine_name: machine.map(String::from),
            provisioner_name: Some("default".to_string()),
            capacity: Default::default(),
            labels: Default::default(),
            tags: Default::default(),
            hostname: None,
        }
    }

    fn machine(name: &str, provider_id: Option<&str>) -> Machine {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "karpenter.sh/v1alpha5",
            "kind": "Machine",
            "metadata": {"name": name},
            "spec": {},
            "status": {"providerID": provider_id},
        }))
        .expect("a machine")
    }

    #[test]
    fn an_instance_without_a_machine_is_collected_only_after_the_grace_period() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let instances = [
            instance("i-owned", Some("m1"), t0),
            instance("i-leaked", Some("gone"), t0),
            instance("i-untagged", None, t0),
        ];
        let machines = [machine("m1", Some("aws:///us-east-1a/i-owned"))];
        let early = find_garbage(&instances, &machines, t0 + Duration::from_secs(29));
        assert!(early.instances.is_empty(), "young instances are spared");
        let late = find_garbage(&instances, &machines, t0 + GRACE);
        let ids: Vec<&str> = late
            .instances
            .iter()
            .map(|i| i.instance_id.as_str())
            .collect();
        assert_eq!(ids, ["i-leaked", "i-untagged"]);
    }

    #[test]
    fn a_machine_launching_is_not_garbage_and_one_whose_instance_is_gone_is() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let instances = [instance("i-1", Some("launching"), t0)];
        let machines = [
            // Created, launched, but its status not written yet: its tag names it.
            machine("launching", None),
            machine("lost", Some("aws:///us-east-1a/i-9")),
        ];
        let garbage = find_garbage(&instances, &machines, t0 + Duration::from_secs(600));
        assert!(garbage.instances.is_empty());
        assert_eq!(garbage.machines, ["lost"]);
    }
}
