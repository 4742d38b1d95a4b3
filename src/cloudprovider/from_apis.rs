//! From the custom resources to the provider's inputs: an `AWSNodeTemplate` (or a provisioner's
//! inline `provider`) becomes a [`NodeTemplate`], a `Machine` a [`LaunchRequest`] and a
//! [`MachineId`].

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use nodewright_scheduling::instance_type::CapacityType;
use nodewright_scheduling::labels;
use nodewright_scheduling::resources::parse_quantity;

use super::error::CloudProviderError;
use super::types::{
    AmiFamily, BlockDevice, KubeletSettings, LaunchRequest, MachineId, MetadataOptions,
    NodeSettings, NodeTemplate,
};
use crate::apis::node_template::{self, EndpointState, HttpTokens};
use crate::apis::{
    AwsLaunchSettings, AwsNodeTemplateSpec, AwsProvider, KubeletConfiguration, Machine,
    NodeSelectorRequirement, Operator,
};

fn invalid(message: String) -> CloudProviderError {
    CloudProviderError::InvalidConfiguration(message)
}

fn ami_family(family: Option<&node_template::AmiFamily>) -> Result<AmiFamily, CloudProviderError> {
    use node_template::AmiFamily as Api;
    match family {
        None | Some(Api::Al2) => Ok(AmiFamily::Al2),
        Some(Api::Bottlerocket) => Ok(AmiFamily::Bottlerocket),
        Some(Api::Ubuntu) => Ok(AmiFamily::Ubuntu),
        Some(Api::Custom) => Ok(AmiFamily::Custom),
        Some(other) => Err(invalid(format!(
            "amiFamily {other} is not supported: nodewright launches Linux nodes only"
        ))),
    }
}

/// EBS sizes are whole gigabytes, rounded up (Karpenter scales the quantity to 10^9).
fn volume_size_gb(size: &Quantity) -> Result<i64, CloudProviderError> {
    let bytes = parse_quantity(&size.0)
        .map_err(|e| invalid(format!("volumeSize: {e}")))?
        .units();
    Ok((bytes + 999_999_999) / 1_000_000_000)
}

fn metadata_options(options: Option<&node_template::MetadataOptions>) -> MetadataOptions {
    let defaults = MetadataOptions::default();
    let Some(options) = options else {
        return defaults;
    };
    MetadataOptions {
        http_endpoint_enabled: options
            .http_endpoint
            .as_ref()
            .map_or(defaults.http_endpoint_enabled, |s| {
                *s == EndpointState::Enabled
            }),
        http_protocol_ipv6_enabled: options
            .http_protocol_ipv6
            .as_ref()
            .map_or(defaults.http_protocol_ipv6_enabled, |s| {
                *s == EndpointState::Enabled
            }),
        http_put_response_hop_limit: options
            .http_put_response_hop_limit
            .unwrap_or(defaults.http_put_response_hop_limit),
        http_tokens_required: options
            .http_tokens
            .as_ref()
            .map_or(defaults.http_tokens_required, |t| {
                *t == HttpTokens::Required
            }),
    }
}

fn launch_settings(settings: &AwsLaunchSettings) -> Result<NodeTemplate, CloudProviderError> {
    let block_device_mappings = settings
        .block_device_mappings
        .iter()
        .map(|mapping| {
            let ebs = mapping.ebs.clone().unwrap_or_default();
            Ok(BlockDevice {
                device_name: mapping.device_name.clone().unwrap_or_default(),
                volume_size_gib: ebs.volume_size.as_ref().map(volume_size_gb).transpose()?,
                volume_type: ebs.volume_type.as_ref().map(|t| t.as_str().to_string()),
                iops: ebs.iops,
                throughput: ebs.throughput,
                encrypted: ebs.encrypted,
                kms_key_id: ebs.kms_key_id,
                snapshot_id: ebs.snapshot_id,
                delete_on_termination: ebs.delete_on_termination,
            })
        })
        .collect::<Result<Vec<_>, CloudProviderError>>()?;
    Ok(NodeTemplate {
        subnet_selector: settings.subnet_selector.clone().unwrap_or_default(),
        security_group_selector: settings.security_group_selector.clone().unwrap_or_default(),
        instance_profile: settings.instance_profile.clone(),
        ami_family: ami_family(settings.ami_family.as_ref())?,
        ami_selector: BTreeMap::new(),
        user_data: None,
        tags: settings.tags.clone(),
        block_device_mappings,
        metadata_options: metadata_options(settings.metadata_options.as_ref()),
        detailed_monitoring: false,
        launch_template_name: settings.launch_template.clone(),
        context: settings.context.clone(),
    })
}

impl NodeTemplate {
    /// The launch settings of an `AWSNodeTemplate`.
    pub fn from_spec(spec: &AwsNodeTemplateSpec) -> Result<NodeTemplate, CloudProviderError> {
        Ok(NodeTemplate {
            ami_selector: spec.ami_selector.clone().unwrap_or_default(),
            user_data: spec.user_data.clone(),
            detailed_monitoring: spec.detailed_monitoring.unwrap_or(false),
            ..launch_settings(&spec.settings)?
        })
    }

    /// The launch settings of a provisioner's inline `provider`.
    pub fn from_provider(provider: &AwsProvider) -> Result<NodeTemplate, CloudProviderError> {
        launch_settings(&provider.settings)
    }
}

impl From<&KubeletConfiguration> for KubeletSettings {
    fn from(kubelet: &KubeletConfiguration) -> Self {
        let quantities = |map: &BTreeMap<String, Quantity>| -> BTreeMap<String, String> {
            map.iter().map(|(k, v)| (k.clone(), v.0.clone())).collect()
        };
        KubeletSettings {
            cluster_dns: kubelet.cluster_dns.clone(),
            container_runtime: kubelet.container_runtime.clone(),
            max_pods: kubelet.max_pods,
            pods_per_core: kubelet.pods_per_core,
            system_reserved: quantities(&kubelet.system_reserved),
            kube_reserved: quantities(&kubelet.kube_reserved),
            eviction_hard: kubelet.eviction_hard.clone(),
            eviction_soft: kubelet.eviction_soft.clone(),
            eviction_soft_grace_period: kubelet.eviction_soft_grace_period.clone(),
            eviction_max_pod_grace_period: kubelet.eviction_max_pod_grace_period,
            image_gc_high_threshold_percent: kubelet.image_gc_high_threshold_percent,
            image_gc_low_threshold_percent: kubelet.image_gc_low_threshold_percent,
            cpu_cfs_quota: kubelet.cpu_cfs_quota,
        }
    }
}

impl From<&Machine> for MachineId {
    fn from(machine: &Machine) -> Self {
        MachineId {
            name: machine.metadata.name.clone().unwrap_or_default(),
            provider_id: machine.status.as_ref().and_then(|s| s.provider_id.clone()),
        }
    }
}

/// The values an `In` requirement on `key` allows, minus those a `NotIn` forbids; `None` when
/// no `In` requirement names the key (anything allowed).
fn allowed(requirements: &[NodeSelectorRequirement], key: &str) -> Option<BTreeSet<String>> {
    let on_key = || {
        requirements
            .iter()
            .filter(move |r| labels::normalize_key(&r.key) == key)
    };
    let mut values: Option<BTreeSet<String>> = None;
    for requirement in on_key().filter(|r| r.operator == Operator::In) {
        let these: BTreeSet<String> = requirement.values.iter().cloned().collect();
        values = Some(match values {
            None => these,
            Some(before) => before.intersection(&these).cloned().collect(),
        });
    }
    let excluded: BTreeSet<&String> = on_key()
        .filter(|r| r.operator == Operator::NotIn)
        .flat_map(|r| &r.values)
        .collect();
    values.map(|v| v.into_iter().filter(|x| !excluded.contains(x)).collect())
}

impl LaunchRequest {
    /// What launching `machine` asks for: the instance types, zones and capacity types its
    /// requirements allow (`In`, less `NotIn`), its labels, taints and kubelet settings, and
    /// `template`, the resolved node template it refers to.
    pub fn from_machine(
        machine: &Machine,
        template: NodeTemplate,
    ) -> Result<LaunchRequest, CloudProviderError> {
        let name =
            machine.metadata.name.clone().ok_or_else(|| {
                invalid("a machine without a name cannot be launched".to_string())
            })?;
        let uid =
            machine.metadata.uid.clone().ok_or_else(|| {
                invalid(format!("machine {name} has no UID yet; create it first"))
            })?;
        let requirements = &machine.spec.requirements;
        let instance_types: Vec<String> = allowed(requirements, labels::INSTANCE_TYPE)
            .map(|types| types.into_iter().collect())
            .unwrap_or_default();
        if instance_types.is_empty() {
            return Err(invalid(format!(
                "machine {name} allows no instance type (it needs {} In [...])",
                labels::INSTANCE_TYPE
            )));
        }
        let none_left =
            |what: &str| invalid(format!("machine {name}'s requirements allow no {what}"));
        let zones = match allowed(requirements, labels::ZONE) {
            Some(zones) if zones.is_empty() => return Err(none_left("zone")),
            zones => zones.unwrap_or_default(),
        };
        let capacity_values = match allowed(requirements, labels::CAPACITY_TYPE) {
            Some(values) if values.is_empty() => return Err(none_left("capacity type")),
            values => values.unwrap_or_default(),
        };
        let capacity_types: BTreeSet<CapacityType> = capacity_values
            .iter()
            .filter_map(|value| match value.as_str() {
                labels::CAPACITY_TYPE_SPOT => Some(CapacityType::Spot),
                labels::CAPACITY_TYPE_ON_DEMAND => Some(CapacityType::OnDemand),
                _ => None,
            })
            .collect();
        if capacity_types.is_empty() && !capacity_values.is_empty() {
            return Err(none_left(
                "capacity type nodewright knows (spot, on-demand)",
            ));
        }
        let machine_labels = machine.metadata.labels.clone().unwrap_or_default();
        let provisioner_name = machine_labels
            .get(labels::PROVISIONER_NAME)
            .cloned()
            .unwrap_or_default();
        Ok(LaunchRequest {
            machine_name: name,
            machine_uid: uid,
            provisioner_name,
            instance_types,
            zones,
            capacity_types,
            template,
            node: NodeSettings {
                labels: machine_labels,
                taints: machine.spec.taints.clone(),
                startup_taints: machine.spec.startup_taints.clone(),
                kubelet: machine
                    .spec
                    .kubelet
                    .as_ref()
                    .map(KubeletSettings::from)
                    .unwrap_or_default(),
            },
        })
    }
}

#[cfg(test)]
mod tests;
