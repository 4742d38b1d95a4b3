//! `validate()` for Provisioner, Machine and AWSNodeTemplate, and for the AWS launch settings
//! an `AWSNodeTemplate` or an inline `provider` carries.

use std::collections::BTreeMap;

use nodewright_scheduling::labels;

use super::fields;
use super::{FieldPath, Problem, Report, ValidationErrors};
use crate::apis::cel;
use crate::apis::machine::{Machine, MachineSpec};
use crate::apis::node_template::{
    AmiFamily, AwsLaunchSettings, AwsNodeTemplate, AwsNodeTemplateSpec, BlockDeviceMapping,
    EndpointState, HttpTokens, MetadataOptions, VolumeType,
};
use crate::apis::provisioner::{Provisioner, ProvisionerSpec};

/// EBS volume sizes EC2 accepts (decimal units, as Karpenter checks them).
const VOLUME_SIZE_MIN: (&str, f64) = ("1G", 1e9);
const VOLUME_SIZE_MAX: (&str, f64) = ("64T", 64e12);
/// `provisioner-name` label values are at most this long.
const NAME_MAX_LENGTH: usize = 63;

impl Provisioner {
    /// Every problem of this provisioner, its name included.
    pub fn validate(&self) -> Result<(), ValidationErrors> {
        let mut report = Report::default();
        let name_path = FieldPath::root("metadata").child("name");
        match self.metadata.name.as_deref() {
            None | Some("") => report.add(name_path, Problem::Required),
            Some(name) if name.len() > NAME_MAX_LENGTH => {
                report.add(
                    name_path,
                    Problem::Rule(cel::PROVISIONER_NAME_LENGTH.message),
                );
            }
            Some(_) => {}
        }
        self.spec.check(&mut report, &FieldPath::root("spec"));
        report.into_result()
    }
}

impl ProvisionerSpec {
    /// Every problem of this spec, with paths under `spec`.
    pub fn validate(&self) -> Result<(), ValidationErrors> {
        let mut report = Report::default();
        self.check(&mut report, &FieldPath::root("spec"));
        report.into_result()
    }

    fn check(&self, report: &mut Report, path: &FieldPath) {
        fields::annotations(report, &path.child("annotations"), &self.annotations);
        fields::node_labels(report, &path.child("labels"), &self.labels);
        fields::taint_lists(report, path, &self.taints, &self.startup_taints);
        fields::requirements(
            report,
            &path.child("requirements"),
            &self.requirements,
            true,
        );
        if let Some(kubelet) = &self.kubelet_configuration {
            fields::kubelet(report, &path.child("kubeletConfiguration"), kubelet);
        }
        match (&self.provider, &self.provider_ref) {
            (Some(_), Some(_)) => {
                report.add(path.clone(), Problem::Rule(cel::PROVIDER_EXCLUSIVE.message))
            }
            (None, None) => report.add(path.clone(), Problem::Rule(cel::PROVIDER_REQUIRED.message)),
            _ => {}
        }
        if let Some(provider) = &self.provider {
            provider.settings.check(report, &path.child("provider"));
        }
        if let Some(reference) = &self.provider_ref {
            fields::provider_ref(report, &path.child("providerRef"), reference);
        }
        let ttl_after_empty = path.child("ttlSecondsAfterEmpty");
        fields::non_negative(
            report,
            ttl_after_empty.clone(),
            self.ttl_seconds_after_empty,
        );
        fields::non_negative(
            report,
            path.child("ttlSecondsUntilExpired"),
            self.ttl_seconds_until_expired,
        );
        if self.ttl_seconds_after_empty.is_some() && self.consolidation_enabled() {
            report.add(
                ttl_after_empty,
                Problem::Rule(cel::TTL_AFTER_EMPTY_EXCLUSIVE.message),
            );
        }
        if let Some(limits) = &self.limits {
            fields::quantities(
                report,
                &path.child("limits").child("resources"),
                &limits.resources,
            );
        }
        fields::in_range(
            report,
            path.child("weight"),
            self.weight.map(i64::from),
            1,
            100,
        );
    }
}

impl Machine {
    pub fn validate(&self) -> Result<(), ValidationErrors> {
        self.spec.validate()
    }
}

impl MachineSpec {
    /// Every problem of this spec, with paths under `spec`.
    pub fn validate(&self) -> Result<(), ValidationErrors> {
        let mut report = Report::default();
        let path = FieldPath::root("spec");
        fields::taint_lists(&mut report, &path, &self.taints, &self.startup_taints);
        fields::requirements(
            &mut report,
            &path.child("requirements"),
            &self.requirements,
            false,
        );
        fields::quantities(
            &mut report,
            &path.child("resources").child("requests"),
            &self.resources.requests,
        );
        if let Some(kubelet) = &self.kubelet {
            fields::kubelet(&mut report, &path.child("kubelet"), kubelet);
        }
        if let Some(reference) = &self.machine_template_ref {
            fields::provider_ref(&mut report, &path.child("machineTemplateRef"), reference);
        }
        report.into_result()
    }
}

impl AwsNodeTemplate {
    pub fn validate(&self) -> Result<(), ValidationErrors> {
        self.spec.validate()
    }
}

impl AwsNodeTemplateSpec {
    /// Every problem of this spec, with paths under `spec`.
    pub fn validate(&self) -> Result<(), ValidationErrors> {
        let mut report = Report::default();
        let path = FieldPath::root("spec");
        self.settings.check(&mut report, &path);
        let launch_template = self.settings.launch_template.is_some();
        if launch_template && self.user_data.is_some() {
            report.add(
                path.clone(),
                Problem::Rule(cel::USER_DATA_VS_LAUNCH_TEMPLATE.message),
            );
        }
        if launch_template && self.ami_selector.is_some() {
            report.add(
                path.clone(),
                Problem::Rule(cel::AMI_SELECTOR_VS_LAUNCH_TEMPLATE.message),
            );
        }
        if self.settings.ami_family == Some(AmiFamily::Custom) && self.ami_selector.is_none() {
            report.add(
                path.child("amiSelector"),
                Problem::Rule(cel::CUSTOM_AMI_FAMILY_NEEDS_SELECTOR.message),
            );
        }
        if let Some(selector) = &self.ami_selector {
            self::selector(
                &mut report,
                &path.child("amiSelector"),
                selector,
                "ami-",
                cel::AMI_IDS.message,
            );
        }
        report.into_result()
    }
}

impl AwsLaunchSettings {
    fn check(&self, report: &mut Report, path: &FieldPath) {
        let launch_template = self.launch_template.is_some();
        match &self.subnet_selector {
            None => report.add(
                path.child("subnetSelector"),
                Problem::Rule(cel::SUBNET_SELECTOR_REQUIRED.message),
            ),
            Some(selector) => {
                self::selector(
                    report,
                    &path.child("subnetSelector"),
                    selector,
                    "subnet-",
                    cel::SUBNET_IDS.message,
                );
            }
        }
        match &self.security_group_selector {
            None if !launch_template => report.add(
                path.child("securityGroupSelector"),
                Problem::Rule(cel::SECURITY_GROUP_SELECTOR_REQUIRED.message),
            ),
            None => {}
            Some(selector) => {
                let at = path.child("securityGroupSelector");
                self::selector(
                    report,
                    &at,
                    selector,
                    "sg-",
                    cel::SECURITY_GROUP_IDS.message,
                );
            }
        }
        if launch_template {
            let conflicts = [
                (
                    "securityGroupSelector",
                    self.security_group_selector.is_some(),
                ),
                ("metadataOptions", self.metadata_options.is_some()),
                ("amiFamily", self.ami_family.is_some()),
                ("instanceProfile", self.instance_profile.is_some()),
                (
                    "blockDeviceMappings",
                    !self.block_device_mappings.is_empty(),
                ),
            ];
            for (field, _) in conflicts.into_iter().filter(|(_, set)| *set) {
                report.add(
                    path.clone(),
                    Problem::MutuallyExclusive {
                        first: "launchTemplate",
                        second: field,
                    },
                );
            }
        }
        if let Some(family) = self.ami_family.as_ref().filter(|family| !family.is_known()) {
            report.add(
                path.child("amiFamily"),
                Problem::Unsupported {
                    value: family.to_string(),
                    supported: AmiFamily::KNOWN,
                },
            );
        }
        tags(report, &path.child("tags"), &self.tags);
        if let Some(options) = &self.metadata_options {
            metadata_options(report, &path.child("metadataOptions"), options);
        }
        for (index, mapping) in self.block_device_mappings.iter().enumerate() {
            block_device_mapping(
                report,
                &path.child("blockDeviceMappings").index(index),
                mapping,
            );
        }
    }
}

/// A tag selector: at least one tag, no empty keys or values, and well-formed `aws-ids`.
fn selector(
    report: &mut Report,
    path: &FieldPath,
    selector: &BTreeMap<String, String>,
    id_prefix: &str,
    ids_message: &'static str,
) {
    if selector.is_empty() {
        report.add(path.clone(), Problem::Empty);
    }
    if selector.contains_key("") {
        report.add(
            path.clone(),
            Problem::Rule(cel::SELECTOR_KEYS_NOT_EMPTY.message),
        );
    }
    for (key, value) in selector {
        if value.is_empty() {
            report.add(path.key(key), Problem::Empty);
        }
    }
    if let Some(ids) = selector.get("aws-ids") {
        let well_formed = |id: &str| {
            id.strip_prefix(id_prefix).is_some_and(|rest| {
                !rest.is_empty()
                    && rest
                        .chars()
                        .all(|c| c.is_ascii_digit() || c.is_ascii_lowercase())
            })
        };
        if !ids.split(',').map(str::trim).all(well_formed) {
            report.add(path.key("aws-ids"), Problem::Rule(ids_message));
        }
    }
}

fn tags(report: &mut Report, path: &FieldPath, tags: &BTreeMap<String, String>) {
    for key in tags.keys() {
        if key.is_empty() {
            report.add(path.clone(), Problem::Rule(cel::TAG_KEYS_NOT_EMPTY.message));
            continue;
        }
        let cluster_tag = key
            .strip_prefix(labels::CLUSTER_TAG_PREFIX)
            .is_some_and(|cluster| {
                cluster
                    .chars()
                    .next()
                    .is_some_and(|c| c.is_ascii_alphanumeric())
                    && cluster
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            });
        if cluster_tag || key == labels::PROVISIONER_NAME || key == labels::MANAGED_BY_TAG {
            report.add(path.key(key), Problem::Rule(cel::RESTRICTED_TAG_MESSAGE));
        }
    }
}

fn metadata_options(report: &mut Report, path: &FieldPath, options: &MetadataOptions) {
    for (field, state) in [
        ("httpEndpoint", &options.http_endpoint),
        ("httpProtocolIPv6", &options.http_protocol_ipv6),
    ] {
        if let Some(state) = state.as_ref().filter(|state| !state.is_known()) {
            report.add(
                path.child(field),
                Problem::Unsupported {
                    value: state.to_string(),
                    supported: EndpointState::KNOWN,
                },
            );
        }
    }
    if let Some(tokens) = options
        .http_tokens
        .as_ref()
        .filter(|tokens| !tokens.is_known())
    {
        report.add(
            path.child("httpTokens"),
            Problem::Unsupported {
                value: tokens.to_string(),
                supported: HttpTokens::KNOWN,
            },
        );
    }
    fields::in_range(
        report,
        path.child("httpPutResponseHopLimit"),
        options.http_put_response_hop_limit,
        1,
        64,
    );
}

fn block_device_mapping(report: &mut Report, path: &FieldPath, mapping: &BlockDeviceMapping) {
    if mapping.device_name.is_none() {
        report.add(
            path.child("deviceName"),
            Problem::Rule(cel::DEVICE_NAME_REQUIRED.message),
        );
    }
    let Some(ebs) = &mapping.ebs else { return };
    let path = path.child("ebs");
    if let Some(volume_type) = ebs
        .volume_type
        .as_ref()
        .filter(|volume_type| !volume_type.is_known())
    {
        report.add(
            path.child("volumeType"),
            Problem::Unsupported {
                value: volume_type.to_string(),
                supported: VolumeType::KNOWN,
            },
        );
    }
    match &ebs.volume_size {
        None if ebs.snapshot_id.is_none() => report.add(
            path.clone(),
            Problem::Rule(cel::VOLUME_SIZE_OR_SNAPSHOT.message),
        ),
        None => {}
        Some(size) => {
            let at = path.child("volumeSize");
            if let Some(bytes) = fields::non_negative_quantity(report, &at, size)
                && !(VOLUME_SIZE_MIN.1..=VOLUME_SIZE_MAX.1).contains(&bytes)
            {
                report.add(
                    at,
                    Problem::QuantityOutOfRange {
                        value: size.0.clone(),
                        min: VOLUME_SIZE_MIN.0,
                        max: VOLUME_SIZE_MAX.0,
                    },
                );
            }
        }
    }
    fields::in_range(report, path.child("throughput"), ebs.throughput, 125, 1000);
    fields::non_negative(report, path.child("iops"), ebs.iops);
}
