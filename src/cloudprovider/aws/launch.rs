//! One machine launch: adopt an instance already tagged for the machine, else resolve subnets,
//! security groups, images and launch templates, and call CreateFleet; on capacity errors hold
//! the failed offerings out and try again with what is left.

use std::collections::{BTreeMap, BTreeSet};

use base64::Engine;
use nodewright_scheduling::instance_type::InstanceType;
use nodewright_scheduling::labels;

use super::AwsCloudProvider;
use super::ami::{ImageVariant, ResolvedImage, variant_of};
use super::discovery::subnet_per_zone;
use super::ec2::{
    FleetError, FleetInstance, FleetLaunchTemplateConfig, FleetOverride, FleetRequest,
    LaunchTemplateData, SecurityGroup, Subnet,
};
use super::fleet::{self, FleetErrorAction, FleetPlan};
use super::instances::launched;
use super::userdata::{self, ClusterInfo};
use crate::cloudprovider::error::OfferingKey;
use crate::cloudprovider::types::{LaunchRequest, LaunchedInstance};
use crate::cloudprovider::{CloudProviderError, Result};

/// CreateFleet calls per launch: each retry has the offerings that failed held out.
pub const MAX_LAUNCH_ATTEMPTS: usize = 3;

/// What a launch is resolved into before any attempt.
struct Resolved {
    subnets: Vec<Subnet>,
    security_groups: Vec<SecurityGroup>,
    types: Vec<InstanceType>,
    images: BTreeMap<ImageVariant, ResolvedImage>,
    user_data: Option<String>,
}

impl AwsCloudProvider {
    pub(super) async fn launch(&self, request: &LaunchRequest) -> Result<LaunchedInstance> {
        validate(request)?;
        // A retried create must not buy a second instance.
        let existing = self.instances_of_machine(&request.machine_name).await?;
        if let Some(adopted) = self.describe(&existing).await?.into_iter().next() {
            tracing::info!(machine = %request.machine_name, instance = %adopted.instance_id, "adopting the machine's existing instance");
            return Ok(adopted);
        }
        let resolved = self.resolve(request).await?;
        let mut last_errors: Vec<FleetError> = Vec::new();
        for attempt in 0..MAX_LAUNCH_ATTEMPTS {
            let mut zones = subnet_per_zone(&resolved.subnets, &self.unavailable);
            if !request.zones.is_empty() {
                zones.retain(|zone, _| request.zones.contains(zone));
            }
            let Some(plan) = fleet::plan(
                &resolved.types,
                &zones,
                &request.capacity_types,
                &self.unavailable,
            ) else {
                break;
            };
            let configs = match self.fleet_configs(request, &resolved, &plan).await {
                Ok(configs) => configs,
                Err(err) => return Err(err),
            };
            let fleet_request = FleetRequest {
                client_token: client_token(&request.machine_uid, attempt),
                capacity_type: plan.capacity_type,
                configs: configs.clone(),
                tags: self.instance_tags(request),
                context: request.template.context.clone(),
            };
            let output = match self.ec2.create_fleet(fleet_request).await {
                Ok(output) => output,
                Err(err) if err.is_not_found() => {
                    // A launch template vanished under us; the next attempt recreates it.
                    self.forget_templates(&configs);
                    last_errors.push(FleetError {
                        code: err.code.clone().unwrap_or_default(),
                        message: err.message.clone(),
                        instance_type: None,
                        subnet_id: None,
                        zone: None,
                        capacity_type: None,
                    });
                    continue;
                }
                Err(err) => return Err(err.into()),
            };
            let mut reportable = Vec::new();
            for error in &output.errors {
                let zone_of = |subnet: &str| {
                    resolved
                        .subnets
                        .iter()
                        .find(|s| s.id == subnet)
                        .map(|s| s.zone.clone())
                };
                match fleet::action_for(error, plan.capacity_type, zone_of) {
                    FleetErrorAction::HoldOutOffering {
                        instance_type,
                        zone,
                        capacity_type,
                    } => {
                        tracing::info!(%instance_type, %zone, ?capacity_type, code = %error.code, "holding out offering");
                        self.unavailable
                            .mark_unavailable(&instance_type, &zone, capacity_type);
                    }
                    FleetErrorAction::HoldOutSubnet(subnet) => {
                        tracing::info!(%subnet, "holding out subnet without free addresses");
                        self.unavailable.mark_subnet_full(&subnet);
                    }
                    FleetErrorAction::RecreateLaunchTemplates => self.forget_templates(&configs),
                    FleetErrorAction::Report => reportable.push(error.clone()),
                }
            }
            if let Some(instance) = self.first_instance(&output.instances).await {
                return Ok(self.launched_from_fleet(&instance, &resolved, &plan));
            }
            if let Some(error) = reportable.first() {
                return Err(CloudProviderError::Permanent {
                    operation: "CreateFleet".to_string(),
                    code: Some(error.code.clone()),
                    message: error.message.clone(),
                });
            }
            last_errors.extend(output.errors);
        }
        Err(self.insufficient_capacity(request, &last_errors))
    }

    async fn resolve(&self, request: &LaunchRequest) -> Result<Resolved> {
        let template = &request.template;
        let subnets = self.discovery.subnets(&template.subnet_selector).await?;
        let security_groups = self
            .discovery
            .security_groups(&template.security_group_selector)
            .await?;
        let zones = subnets.iter().map(|s| s.zone.clone()).collect();
        let wanted: BTreeSet<&str> = request.instance_types.iter().map(String::as_str).collect();
        let mut types = self.priced_instance_types(&zones).await?;
        types.retain(|t| wanted.contains(t.name.as_str()));
        if types.is_empty() {
            return Err(CloudProviderError::InvalidConfiguration(format!(
                "none of the instance types {:?} is offered in the template's zones {zones:?}",
                request.instance_types
            )));
        }
        let (images, user_data) = if template.launch_template_name.is_some() {
            (BTreeMap::new(), None)
        } else {
            let images = self.images_for(template, &types).await?;
            types.retain(|t| variant_of(t).is_some_and(|v| images.contains_key(&v)));
            if types.is_empty() {
                return Err(CloudProviderError::InvalidConfiguration(format!(
                    "no {} image boots any of {:?} on Kubernetes {}",
                    template.ami_family, request.instance_types, self.settings.kubernetes_version
                )));
            }
            let cluster = ClusterInfo {
                name: self.settings.cluster_name.clone(),
                endpoint: self.settings.cluster_endpoint.clone(),
                ca_bundle: self.settings.cluster_ca_bundle.clone(),
            };
            let text = userdata::render(
                template.ami_family,
                &cluster,
                &request.node,
                template.user_data.as_deref(),
            )?;
            let encoded = text.map(|t| base64::engine::general_purpose::STANDARD.encode(t));
            (images, encoded)
        };
        Ok(Resolved {
            subnets,
            security_groups,
            types,
            images,
            user_data,
        })
    }

    /// One launch template config per image variant (or the user's own template for all).
    async fn fleet_configs(
        &self,
        request: &LaunchRequest,
        resolved: &Resolved,
        plan: &FleetPlan,
    ) -> Result<Vec<FleetLaunchTemplateConfig>> {
        let template = &request.template;
        if let Some(name) = &template.launch_template_name {
            let overrides: Vec<FleetOverride> =
                plan.overrides.values().flatten().cloned().collect();
            return Ok(vec![FleetLaunchTemplateConfig {
                launch_template_name: name.clone(),
                overrides,
            }]);
        }
        let mut configs = Vec::new();
        for (variant, overrides) in &plan.overrides {
            let Some(image) = resolved.images.get(variant) else {
                continue;
            };
            let data = LaunchTemplateData {
                image_id: image.id.clone(),
                security_group_ids: resolved
                    .security_groups
                    .iter()
                    .map(|g| g.id.clone())
                    .collect(),
                instance_profile: template.instance_profile.clone(),
                user_data: resolved.user_data.clone(),
                block_device_mappings: template.block_device_mappings.clone(),
                metadata_options: template.metadata_options.clone(),
                detailed_monitoring: template.detailed_monitoring,
            };
            let name = self.launch_templates.ensure(data, &template.tags).await?;
            configs.push(FleetLaunchTemplateConfig {
                launch_template_name: name,
                overrides: overrides.clone(),
            });
        }
        Ok(configs)
    }

    fn forget_templates(&self, configs: &[FleetLaunchTemplateConfig]) {
        for config in configs {
            self.launch_templates.forget(&config.launch_template_name);
        }
    }

    /// Name, the template's tags, then the ownership tags nothing may override.
    fn instance_tags(&self, request: &LaunchRequest) -> BTreeMap<String, String> {
        let mut tags = BTreeMap::from([("Name".to_string(), request.machine_name.clone())]);
        tags.extend(request.template.tags.clone());
        tags.extend(self.ownership_tags());
        tags.insert(
            labels::PROVISIONER_NAME.to_string(),
            request.provisioner_name.clone(),
        );
        tags.insert(
            labels::MACHINE_NAME.to_string(),
            request.machine_name.clone(),
        );
        tags
    }

    /// The first launched instance; any extra one (a fleet should launch exactly one) is
    /// terminated so that nothing leaks.
    async fn first_instance(&self, instances: &[FleetInstance]) -> Option<(FleetInstance, String)> {
        let mut launched: Vec<(FleetInstance, String)> = Vec::new();
        for instance in instances {
            for id in &instance.instance_ids {
                launched.push((instance.clone(), id.clone()));
            }
        }
        let mut launched = launched.into_iter();
        let first = launched.next()?;
        let extra: Vec<String> = launched.map(|(_, id)| id).collect();
        if !extra.is_empty() {
            tracing::warn!(instances = ?extra, "fleet launched more than one instance; terminating the extra");
            if let Err(err) = self.ec2.terminate_instances(extra).await {
                tracing::warn!(error = %err, "terminating extra fleet instances failed; garbage collection will retry");
            }
        }
        Some(first)
    }

    fn launched_from_fleet(
        &self,
        (instance, id): &(FleetInstance, String),
        resolved: &Resolved,
        plan: &FleetPlan,
    ) -> LaunchedInstance {
        let subnet = instance
            .subnet_id
            .as_deref()
            .and_then(|s| resolved.subnets.iter().find(|x| x.id == s));
        let zone = instance
            .zone
            .clone()
            .or_else(|| subnet.map(|s| s.zone.clone()))
            .unwrap_or_default();
        let instance_type = resolved
            .types
            .iter()
            .find(|t| t.name == instance.instance_type);
        let image = instance_type
            .and_then(variant_of)
            .and_then(|v| resolved.images.get(&v))
            .map(|image| image.id.clone());
        let mut result = launched(
            id,
            &instance.instance_type,
            &zone,
            instance.capacity_type,
            instance_type,
            None,
        );
        result.image_id = image;
        result.subnet_id = instance.subnet_id.clone();
        tracing::info!(instance = %result.instance_id, instance_type = %result.instance_type, zone = %result.zone, capacity_type = ?plan.capacity_type, "launched");
        result
    }

    fn insufficient_capacity(
        &self,
        request: &LaunchRequest,
        errors: &[FleetError],
    ) -> CloudProviderError {
        let wanted: BTreeSet<&str> = request.instance_types.iter().map(String::as_str).collect();
        let offerings: Vec<OfferingKey> = self
            .unavailable
            .offerings()
            .into_iter()
            .filter(|o| wanted.contains(o.instance_type.as_str()))
            .collect();
        let codes: BTreeSet<&str> = errors.iter().map(|e| e.code.as_str()).collect();
        CloudProviderError::InsufficientCapacity {
            message: format!(
                "no offering of {:?} could be launched for machine {} (errors: {codes:?})",
                request.instance_types, request.machine_name
            ),
            offerings,
        }
    }
}

fn validate(request: &LaunchRequest) -> Result<()> {
    if request.instance_types.is_empty() {
        return Err(CloudProviderError::InvalidConfiguration(format!(
            "machine {} names no instance types",
            request.machine_name
        )));
    }
    if request.machine_uid.is_empty() || request.machine_name.is_empty() {
        return Err(CloudProviderError::InvalidConfiguration(
            "a launch needs the machine's name and UID".to_string(),
        ));
    }
    Ok(())
}

/// The machine UID for the first attempt (so a retried create is idempotent), suffixed for the
/// later ones (EC2 refuses a reused token with different parameters). At most 64 characters.
fn client_token(uid: &str, attempt: usize) -> String {
    let token = if attempt == 0 {
        uid.to_string()
    } else {
        format!("{uid}-{attempt}")
    };
    token.chars().take(64).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_tokens_are_the_uid_then_suffixed_and_bounded() {
        let uid = "6f1a2b3c-0000-4000-8000-123456789abc";
        assert_eq!(client_token(uid, 0), uid);
        assert_eq!(client_token(uid, 2), format!("{uid}-2"));
        assert_eq!(client_token(&"x".repeat(80), 0).len(), 64);
    }
}
