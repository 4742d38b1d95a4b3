//! Finding, listing and terminating this cluster's instances, and describing them as
//! [`LaunchedInstance`]s.

use nodewright_scheduling::instance_type::{CapacityType, InstanceType};
use nodewright_scheduling::labels;

use super::AwsCloudProvider;
use super::ec2::{Filter, Instance, InstanceQuery};
use crate::cloudprovider::types::{
    DeleteStatus, InstanceState, LaunchedInstance, MachineId, instance_id_of, provider_id,
};
use crate::cloudprovider::{CloudProviderError, Result};

/// Every state but `terminated`: what still costs money or may come back.
const LIVE_STATES: [&str; 5] = ["pending", "running", "shutting-down", "stopping", "stopped"];

fn capacity_label(capacity_type: CapacityType) -> &'static str {
    match capacity_type {
        CapacityType::Spot => labels::CAPACITY_TYPE_SPOT,
        CapacityType::OnDemand => labels::CAPACITY_TYPE_ON_DEMAND,
    }
}

/// The launched instance as callers see it; `instance_type` adds capacity and labels.
pub(super) fn launched(
    id: &str,
    type_name: &str,
    zone: &str,
    capacity_type: CapacityType,
    instance_type: Option<&InstanceType>,
    details: Option<&Instance>,
) -> LaunchedInstance {
    let tags = details.map(|i| i.tags.clone()).unwrap_or_default();
    let mut node_labels = instance_type.map(|t| t.labels.clone()).unwrap_or_default();
    node_labels.insert(labels::INSTANCE_TYPE.to_string(), type_name.to_string());
    node_labels.insert(labels::ZONE.to_string(), zone.to_string());
    node_labels.insert(
        labels::CAPACITY_TYPE.to_string(),
        capacity_label(capacity_type).to_string(),
    );
    let provisioner_name = tags.get(labels::PROVISIONER_NAME).cloned();
    if let Some(provisioner) = &provisioner_name {
        node_labels.insert(labels::PROVISIONER_NAME.to_string(), provisioner.clone());
    }
    LaunchedInstance {
        provider_id: provider_id(zone, id),
        instance_id: id.to_string(),
        instance_type: type_name.to_string(),
        zone: zone.to_string(),
        capacity_type,
        image_id: details.and_then(|i| i.image_id.clone()),
        subnet_id: details.and_then(|i| i.subnet_id.clone()),
        state: details.map_or(InstanceState::Pending, |i| i.state),
        launch_time: details.and_then(|i| i.launch_time),
        machine_name: tags.get(labels::MACHINE_NAME).cloned(),
        provisioner_name,
        capacity: instance_type
            .map(|t| t.capacity.clone())
            .unwrap_or_default(),
        labels: node_labels,
        tags,
        hostname: details.and_then(|i| i.private_dns_name.clone()),
    }
}

impl AwsCloudProvider {
    /// Filters that select this cluster's live instances.
    fn owned_filters(&self) -> Vec<Filter> {
        let mut filters: Vec<Filter> = self
            .ownership_tags()
            .into_iter()
            .map(|(key, value)| Filter::tag(&key, [value]))
            .collect();
        filters.push(Filter::tag_key(labels::PROVISIONER_NAME));
        filters.push(Filter::new("instance-state-name", LIVE_STATES));
        filters
    }

    /// This cluster's live instances tagged with a machine's name.
    pub(super) async fn instances_of_machine(&self, machine_name: &str) -> Result<Vec<Instance>> {
        let mut filters = self.owned_filters();
        filters.push(Filter::tag(labels::MACHINE_NAME, [machine_name]));
        let mut found = self
            .ec2
            .describe_instances(InstanceQuery {
                instance_ids: Vec::new(),
                filters,
            })
            .await?;
        found.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(found)
    }

    pub(super) async fn describe(&self, instances: &[Instance]) -> Result<Vec<LaunchedInstance>> {
        let (types, _) = self.catalog.get().await?;
        Ok(instances
            .iter()
            .map(|i| {
                let instance_type = types.iter().find(|t| t.name == i.instance_type);
                launched(
                    &i.id,
                    &i.instance_type,
                    &i.zone,
                    i.capacity_type,
                    instance_type,
                    Some(i),
                )
            })
            .collect())
    }

    /// The machine's instance by provider id, or else by its machine-name tag.
    pub(super) async fn find(&self, machine: &MachineId) -> Result<LaunchedInstance> {
        let not_found = |code: Option<String>| CloudProviderError::NotFound {
            what: format!("instance of machine {}", machine.name),
            code,
        };
        let instances = match machine.provider_id.as_deref() {
            Some(provider_id) => {
                let id = instance_id_of(provider_id).ok_or_else(|| {
                    CloudProviderError::InvalidConfiguration(format!(
                        "{provider_id} is not an AWS provider id"
                    ))
                })?;
                let query = InstanceQuery {
                    instance_ids: vec![id.to_string()],
                    filters: Vec::new(),
                };
                match self.ec2.describe_instances(query).await {
                    Ok(found) => found,
                    Err(err) if err.is_not_found() => return Err(not_found(err.code)),
                    Err(err) => return Err(err.into()),
                }
            }
            None => self.instances_of_machine(&machine.name).await?,
        };
        let live: Vec<Instance> = instances
            .into_iter()
            .filter(|i| i.state != InstanceState::Terminated)
            .collect();
        self.describe(&live)
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| not_found(None))
    }

    /// Every live instance tagged for this cluster.
    pub(super) async fn list_owned(&self) -> Result<Vec<LaunchedInstance>> {
        let mut instances = self
            .ec2
            .describe_instances(InstanceQuery {
                instance_ids: Vec::new(),
                filters: self.owned_filters(),
            })
            .await?;
        instances.retain(|i| i.state != InstanceState::Terminated);
        instances.sort_by(|a, b| a.id.cmp(&b.id));
        self.describe(&instances).await
    }

    /// Terminates the machine's instances; [`DeleteStatus::Gone`] when nothing is left.
    pub(super) async fn terminate(&self, machine: &MachineId) -> Result<DeleteStatus> {
        let by_id = machine.provider_id.as_deref().and_then(instance_id_of);
        let instances = match by_id {
            Some(id) => {
                let query = InstanceQuery {
                    instance_ids: vec![id.to_string()],
                    filters: Vec::new(),
                };
                match self.ec2.describe_instances(query).await {
                    Ok(found) => found,
                    // Possibly just launched and not visible yet: terminate by id regardless.
                    Err(err) if err.is_not_found() => {
                        return self.terminate_ids(machine, vec![id.to_string()]).await;
                    }
                    Err(err) => return Err(err.into()),
                }
            }
            None => self.instances_of_machine(&machine.name).await?,
        };
        let running: Vec<String> = instances
            .iter()
            .filter(|i| !i.state.is_going_away())
            .map(|i| i.id.clone())
            .collect();
        if !running.is_empty() {
            return self.terminate_ids(machine, running).await;
        }
        let going = instances
            .iter()
            .any(|i| i.state == InstanceState::ShuttingDown);
        Ok(if going {
            DeleteStatus::Terminating
        } else {
            DeleteStatus::Gone
        })
    }

    async fn terminate_ids(&self, machine: &MachineId, ids: Vec<String>) -> Result<DeleteStatus> {
        match self.ec2.terminate_instances(ids.clone()).await {
            Ok(()) => {
                tracing::info!(machine = %machine.name, instances = ?ids, "terminating");
                Ok(DeleteStatus::Terminating)
            }
            Err(err) if err.is_not_found() => Ok(DeleteStatus::Gone),
            Err(err) => Err(err.into()),
        }
    }
}
