//! Conversions between the AWS SDK's EC2 shapes and the plain types of [`super::ec2`].
//!
//! Records missing a field nodewright cannot do without (an id, a zone) are skipped rather than
//! guessed at.

use std::collections::BTreeMap;
use std::time::SystemTime;

use aws_sdk_ec2::primitives::DateTime;
use aws_sdk_ec2::types as sdk;
use nodewright_scheduling::catalog::ec2 as catalog;
use nodewright_scheduling::instance_type::CapacityType;

use super::ec2::{
    FleetError, FleetInstance, FleetLaunchTemplateConfig, Image, Instance, LaunchTemplate,
    LaunchTemplateData, SecurityGroup, SpotPrice, Subnet,
};
use crate::cloudprovider::types::InstanceState;

fn tags(tags: &[sdk::Tag]) -> BTreeMap<String, String> {
    tags.iter()
        .filter_map(|t| {
            Some((
                t.key()?.to_string(),
                t.value().unwrap_or_default().to_string(),
            ))
        })
        .collect()
}

fn system_time(time: Option<&DateTime>) -> Option<SystemTime> {
    time.and_then(|t| SystemTime::try_from(*t).ok())
}

pub(super) fn subnet(s: &sdk::Subnet) -> Option<Subnet> {
    Some(Subnet {
        id: s.subnet_id()?.to_string(),
        zone: s.availability_zone()?.to_string(),
        vpc_id: s.vpc_id().map(str::to_string),
        available_ip_address_count: s.available_ip_address_count().map_or(0, i64::from),
        tags: tags(s.tags()),
    })
}

pub(super) fn security_group(g: &sdk::SecurityGroup) -> Option<SecurityGroup> {
    Some(SecurityGroup {
        id: g.group_id()?.to_string(),
        name: g.group_name().map(str::to_string),
        vpc_id: g.vpc_id().map(str::to_string),
        tags: tags(g.tags()),
    })
}

pub(super) fn image(i: &sdk::Image) -> Option<Image> {
    Some(Image {
        id: i.image_id()?.to_string(),
        name: i.name().map(str::to_string),
        architecture: i.architecture().map(|a| a.as_str().to_string()),
        creation_date: i.creation_date().map(str::to_string),
        owner_id: i.owner_id().map(str::to_string),
        tags: tags(i.tags()),
    })
}

pub(super) fn launch_template(t: &sdk::LaunchTemplate) -> Option<LaunchTemplate> {
    Some(LaunchTemplate {
        id: t.launch_template_id()?.to_string(),
        name: t.launch_template_name()?.to_string(),
        tags: tags(t.tags()),
    })
}

pub(super) fn tag_specification(
    kind: sdk::ResourceType,
    tags: &BTreeMap<String, String>,
) -> sdk::TagSpecification {
    sdk::TagSpecification::builder()
        .resource_type(kind)
        .set_tags(Some(
            tags.iter()
                .map(|(k, v)| sdk::Tag::builder().key(k).value(v).build())
                .collect(),
        ))
        .build()
}

pub(super) fn launch_template_data(data: &LaunchTemplateData) -> sdk::RequestLaunchTemplateData {
    let metadata = &data.metadata_options;
    let profile = data.instance_profile.as_ref().map(|profile| {
        let spec = sdk::LaunchTemplateIamInstanceProfileSpecificationRequest::builder();
        if profile.starts_with("arn:") {
            spec.arn(profile).build()
        } else {
            spec.name(profile).build()
        }
    });
    let disks = data
        .block_device_mappings
        .iter()
        .map(|disk| {
            let ebs = sdk::LaunchTemplateEbsBlockDeviceRequest::builder()
                .set_volume_size(disk.volume_size_gib.and_then(|v| i32::try_from(v).ok()))
                .set_volume_type(disk.volume_type.as_deref().map(sdk::VolumeType::from))
                .set_iops(disk.iops.and_then(|v| i32::try_from(v).ok()))
                .set_throughput(disk.throughput.and_then(|v| i32::try_from(v).ok()))
                .set_encrypted(disk.encrypted)
                .set_kms_key_id(disk.kms_key_id.clone())
                .set_snapshot_id(disk.snapshot_id.clone())
                .set_delete_on_termination(disk.delete_on_termination)
                .build();
            sdk::LaunchTemplateBlockDeviceMappingRequest::builder()
                .device_name(&disk.device_name)
                .ebs(ebs)
                .build()
        })
        .collect::<Vec<_>>();
    let state = |on: bool| {
        if on {
            sdk::LaunchTemplateInstanceMetadataEndpointState::Enabled
        } else {
            sdk::LaunchTemplateInstanceMetadataEndpointState::Disabled
        }
    };
    sdk::RequestLaunchTemplateData::builder()
        .image_id(&data.image_id)
        .set_security_group_ids(Some(data.security_group_ids.clone()))
        .set_iam_instance_profile(profile)
        .set_user_data(data.user_data.clone())
        .set_block_device_mappings((!disks.is_empty()).then_some(disks))
        .metadata_options(
            sdk::LaunchTemplateInstanceMetadataOptionsRequest::builder()
                .http_endpoint(state(metadata.http_endpoint_enabled))
                .http_protocol_ipv6(if metadata.http_protocol_ipv6_enabled {
                    sdk::LaunchTemplateInstanceMetadataProtocolIpv6::Enabled
                } else {
                    sdk::LaunchTemplateInstanceMetadataProtocolIpv6::Disabled
                })
                .http_put_response_hop_limit(
                    i32::try_from(metadata.http_put_response_hop_limit).unwrap_or(2),
                )
                .http_tokens(if metadata.http_tokens_required {
                    sdk::LaunchTemplateHttpTokensState::Required
                } else {
                    sdk::LaunchTemplateHttpTokensState::Optional
                })
                .build(),
        )
        .monitoring(
            sdk::LaunchTemplatesMonitoringRequest::builder()
                .enabled(data.detailed_monitoring)
                .build(),
        )
        .build()
}

pub(super) fn fleet_config(
    config: &FleetLaunchTemplateConfig,
) -> sdk::FleetLaunchTemplateConfigRequest {
    sdk::FleetLaunchTemplateConfigRequest::builder()
        .launch_template_specification(
            sdk::FleetLaunchTemplateSpecificationRequest::builder()
                .launch_template_name(&config.launch_template_name)
                .version("$Latest")
                .build(),
        )
        .set_overrides(Some(
            config
                .overrides
                .iter()
                .map(|o| {
                    sdk::FleetLaunchTemplateOverridesRequest::builder()
                        .instance_type(sdk::InstanceType::from(o.instance_type.as_str()))
                        .subnet_id(&o.subnet_id)
                        .availability_zone(&o.zone)
                        .build()
                })
                .collect(),
        ))
        .build()
}

fn lifecycle(lifecycle: Option<&sdk::InstanceLifecycle>) -> Option<CapacityType> {
    match lifecycle? {
        sdk::InstanceLifecycle::Spot => Some(CapacityType::Spot),
        sdk::InstanceLifecycle::OnDemand => Some(CapacityType::OnDemand),
        _ => None,
    }
}

pub(super) fn fleet_instance(i: &sdk::CreateFleetInstance) -> Option<FleetInstance> {
    let overrides = i
        .launch_template_and_overrides()
        .and_then(|lt| lt.overrides());
    let instance_type = i
        .instance_type()
        .or_else(|| overrides.and_then(|o| o.instance_type()))?
        .as_str()
        .to_string();
    Some(FleetInstance {
        instance_ids: i.instance_ids().to_vec(),
        instance_type,
        subnet_id: i
            .subnet_id()
            .or_else(|| overrides.and_then(|o| o.subnet_id()))
            .map(str::to_string),
        zone: i
            .availability_zone()
            .or_else(|| overrides.and_then(|o| o.availability_zone()))
            .map(str::to_string),
        capacity_type: lifecycle(i.lifecycle()).unwrap_or(CapacityType::OnDemand),
    })
}

pub(super) fn fleet_error(e: &sdk::CreateFleetError) -> FleetError {
    let overrides = e
        .launch_template_and_overrides()
        .and_then(|lt| lt.overrides());
    FleetError {
        code: e.error_code().unwrap_or_default().to_string(),
        message: e.error_message().unwrap_or_default().to_string(),
        instance_type: overrides
            .and_then(|o| o.instance_type())
            .map(|t| t.as_str().to_string()),
        subnet_id: overrides.and_then(|o| o.subnet_id()).map(str::to_string),
        zone: overrides
            .and_then(|o| o.availability_zone())
            .map(str::to_string),
        capacity_type: lifecycle(e.lifecycle()),
    }
}

pub(super) fn instance(i: &sdk::Instance) -> Option<Instance> {
    Some(Instance {
        id: i.instance_id()?.to_string(),
        instance_type: i.instance_type()?.as_str().to_string(),
        zone: i.placement()?.availability_zone()?.to_string(),
        subnet_id: i.subnet_id().map(str::to_string),
        image_id: i.image_id().map(str::to_string),
        capacity_type: match i.instance_lifecycle() {
            Some(sdk::InstanceLifecycleType::Spot) => CapacityType::Spot,
            _ => CapacityType::OnDemand,
        },
        state: i
            .state()
            .and_then(|s| s.name())
            .map_or(InstanceState::Unknown, |name| {
                InstanceState::parse(name.as_str())
            }),
        launch_time: system_time(i.launch_time()),
        security_group_ids: i
            .security_groups()
            .iter()
            .filter_map(|g| g.group_id().map(str::to_string))
            .collect(),
        tags: tags(i.tags()),
        private_dns_name: i
            .private_dns_name()
            .filter(|name| !name.is_empty())
            .map(str::to_string),
    })
}

pub(super) fn spot_price(p: &sdk::SpotPrice) -> Option<SpotPrice> {
    Some(SpotPrice {
        instance_type: p.instance_type()?.as_str().to_string(),
        zone: p.availability_zone()?.to_string(),
        price: p.spot_price()?.parse().ok()?,
        timestamp: system_time(p.timestamp()),
    })
}

fn device(
    name: Option<&str>,
    manufacturer: Option<&str>,
    count: Option<i32>,
    memory_mib: Option<i32>,
) -> catalog::DeviceInfo {
    catalog::DeviceInfo {
        name: name.unwrap_or_default().to_string(),
        manufacturer: manufacturer.map(str::to_string),
        count: count.map_or(0, i64::from),
        memory_info: memory_mib.map(|mib| catalog::MemoryInfo {
            size_in_mib: i64::from(mib),
        }),
    }
}

/// A DescribeInstanceTypes record in the catalog's shape, so one converter serves both the live
/// API and the embedded catalog.
pub(super) fn instance_type_info(t: &sdk::InstanceTypeInfo) -> Option<catalog::InstanceTypeInfo> {
    let network = t.network_info();
    Some(catalog::InstanceTypeInfo {
        instance_type: t.instance_type()?.as_str().to_string(),
        current_generation: t.current_generation().unwrap_or(false),
        bare_metal: t.bare_metal().unwrap_or(false),
        hypervisor: t.hypervisor().map(|h| h.as_str().to_string()),
        supported_usage_classes: t
            .supported_usage_classes()
            .iter()
            .map(|c| c.as_str().to_string())
            .collect(),
        supported_virtualization_types: t
            .supported_virtualization_types()
            .iter()
            .map(|v| v.as_str().to_string())
            .collect(),
        vcpu_info: catalog::VCpuInfo {
            default_vcpus: i64::from(t.v_cpu_info()?.default_v_cpus()?),
        },
        memory_info: catalog::MemoryInfo {
            size_in_mib: t.memory_info()?.size_in_mib()?,
        },
        processor_info: catalog::ProcessorInfo {
            supported_architectures: t
                .processor_info()
                .map(|p| {
                    p.supported_architectures()
                        .iter()
                        .map(|a| a.as_str().to_string())
                        .collect()
                })
                .unwrap_or_default(),
        },
        gpu_info: t.gpu_info().map(|g| catalog::GpuInfo {
            gpus: g
                .gpus()
                .iter()
                .map(|d| {
                    device(
                        d.name(),
                        d.manufacturer(),
                        d.count(),
                        d.memory_info().and_then(|m| m.size_in_mib()),
                    )
                })
                .collect(),
        }),
        inference_accelerator_info: t.inference_accelerator_info().map(|i| {
            catalog::InferenceAcceleratorInfo {
                accelerators: i
                    .accelerators()
                    .iter()
                    .map(|d| {
                        device(
                            d.name(),
                            d.manufacturer(),
                            d.count(),
                            d.memory_info().and_then(|m| m.size_in_mib()),
                        )
                    })
                    .collect(),
            }
        }),
        neuron_info: t.neuron_info().map(|n| catalog::NeuronInfo {
            neuron_devices: n
                .neuron_devices()
                .iter()
                .map(|d| {
                    device(
                        d.name(),
                        None,
                        d.count(),
                        d.memory_info().and_then(|m| m.size_in_mib()),
                    )
                })
                .collect(),
        }),
        instance_storage_info: t
            .instance_storage_info()
            .map(|s| catalog::InstanceStorageInfo {
                total_size_in_gb: s.total_size_in_gb().unwrap_or(0),
                nvme_support: s.nvme_support().map(|n| n.as_str().to_string()),
            }),
        network_info: network
            .map(|n| catalog::NetworkInfo {
                maximum_network_interfaces: n.maximum_network_interfaces().map_or(0, i64::from),
                ipv4_addresses_per_interface: n.ipv4_addresses_per_interface().map_or(0, i64::from),
                default_network_card_index: n.default_network_card_index().map_or(0, i64::from),
                network_cards: n
                    .network_cards()
                    .iter()
                    .map(|c| catalog::NetworkCard {
                        network_card_index: c.network_card_index().map_or(0, i64::from),
                        maximum_network_interfaces: c
                            .maximum_network_interfaces()
                            .map_or(0, i64::from),
                        baseline_bandwidth_in_gbps: c.baseline_bandwidth_in_gbps(),
                    })
                    .collect(),
                efa_supported: n.efa_supported().unwrap_or(false),
                efa_info: n.efa_info().map(|e| catalog::EfaInfo {
                    maximum_efa_interfaces: e.maximum_efa_interfaces().map_or(0, i64::from),
                }),
                encryption_in_transit_supported: n
                    .encryption_in_transit_supported()
                    .unwrap_or(false),
            })
            .unwrap_or_default(),
    })
}
