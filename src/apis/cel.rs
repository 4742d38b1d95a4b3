//! The CEL rules (`x-kubernetes-validations`) of the CRDs, with the messages the API server
//! returns when one fails.
//!
//! Cross-field rules live here rather than inline in the derive attributes so that
//! [`super::validation`] reports the very same message for the same mistake (see
//! [`super::validation::Problem::Rule`]), and the tests can find each rule in the generated
//! schema. Single-field constraints (ranges, enums, patterns) are plain OpenAPI instead: they cost
//! the API server nothing to evaluate.

use kube::core::Rule;
use nodewright_scheduling::labels;

/// One CEL rule and the message the API server reports when it fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CelRule {
    pub rule: &'static str,
    pub message: &'static str,
    /// Where the API server points the error, relative to the object the rule sits on.
    pub field_path: Option<&'static str>,
}

impl CelRule {
    /// The rule as the CRD carries it.
    pub fn to_rule(&self) -> Rule {
        let rule = Rule::new(self.rule).message(self.message);
        match self.field_path {
            Some(path) => rule.field_path(path),
            None => rule,
        }
    }
}

const fn rule(rule: &'static str, message: &'static str) -> CelRule {
    CelRule {
        rule,
        message,
        field_path: None,
    }
}

const fn rule_at(rule: &'static str, message: &'static str, field_path: &'static str) -> CelRule {
    CelRule {
        rule,
        message,
        field_path: Some(field_path),
    }
}

// --- Provisioner ----------------------------------------------------------------------------

pub const PROVIDER_EXCLUSIVE: CelRule = rule(
    "!(has(self.provider) && has(self.providerRef))",
    "provider and providerRef are mutually exclusive",
);
pub const PROVIDER_REQUIRED: CelRule = rule(
    "has(self.provider) || has(self.providerRef)",
    "one of provider or providerRef is required",
);
pub const TTL_AFTER_EMPTY_EXCLUSIVE: CelRule = rule_at(
    "!(has(self.ttlSecondsAfterEmpty) && has(self.consolidation) && has(self.consolidation.enabled) && self.consolidation.enabled)",
    "ttlSecondsAfterEmpty and consolidation.enabled are mutually exclusive",
    ".ttlSecondsAfterEmpty",
);
/// The provisioner's name becomes the `karpenter.sh/provisioner-name` label value of its nodes.
pub const PROVISIONER_NAME_LENGTH: CelRule = rule(
    "self.metadata.name.size() <= 63",
    "metadata.name must be no more than 63 characters: it becomes the karpenter.sh/provisioner-name label of every node",
);
pub const PROVISIONER_NAME_RESTRICTED_MESSAGE: &str =
    "karpenter.sh/provisioner-name is set by nodewright and may not be given";

/// `spec.labels` may not set the provisioner-name label.
pub fn labels_without_provisioner_name() -> Rule {
    Rule::new(format!("!('{}' in self)", labels::PROVISIONER_NAME))
        .message(PROVISIONER_NAME_RESTRICTED_MESSAGE)
}

/// `spec.requirements` may not constrain the provisioner-name label.
pub fn requirements_without_provisioner_name() -> Rule {
    Rule::new(format!(
        "self.all(r, r.key != '{}')",
        labels::PROVISIONER_NAME
    ))
    .message(PROVISIONER_NAME_RESTRICTED_MESSAGE)
}

// --- Requirements -----------------------------------------------------------------------------

pub const REQUIREMENT_VALUES_REQUIRED: CelRule = rule_at(
    "self.operator in ['In', 'NotIn'] ? has(self.values) && size(self.values) > 0 : true",
    "operators In and NotIn need at least one value",
    ".values",
);
pub const REQUIREMENT_SINGLE_INTEGER: CelRule = rule_at(
    "self.operator in ['Gt', 'Lt'] ? has(self.values) && size(self.values) == 1 && self.values[0].matches('^[0-9]+$') : true",
    "operators Gt and Lt need exactly one value, a non-negative integer",
    ".values",
);
pub const REQUIREMENT_NO_VALUES: CelRule = rule_at(
    "self.operator in ['Exists', 'DoesNotExist'] ? !has(self.values) || size(self.values) == 0 : true",
    "operators Exists and DoesNotExist take no values",
    ".values",
);

pub const RESTRICTED_LABEL_MESSAGE: &str = "label domains kubernetes.io, k8s.io, karpenter.sh and karpenter.k8s.aws (and their subdomains) are restricted to well-known labels; node.kubernetes.io, node-restriction.kubernetes.io and kops.k8s.io stay open";

/// A CEL expression that is true when `key` (a CEL string expression) is a label key a user may
/// set: built from the same lists `labels::restricted_label_reason` uses.
fn label_key_allowed(key: &str) -> String {
    let mut allowed: Vec<&str> = labels::WELL_KNOWN_LABELS.to_vec();
    allowed.extend(labels::BETA_ALIASES.iter().map(|(beta, _)| *beta));
    let allowed = allowed
        .iter()
        .map(|label| format!("'{label}'"))
        .collect::<Vec<_>>()
        .join(", ");
    let domains = |list: &[&str]| {
        list.iter()
            .map(|domain| domain.replace('.', r"\."))
            .collect::<Vec<_>>()
            .join("|")
    };
    format!(
        r"{key} in [{allowed}] || {key}.matches(r'^([^/]*\.)?({exceptions})/') || !{key}.matches(r'^([^/]*\.)?({restricted})/')",
        exceptions = domains(labels::LABEL_DOMAIN_EXCEPTIONS),
        restricted = domains(labels::RESTRICTED_LABEL_DOMAINS),
    )
}

/// On a single label key (a requirement's `key`).
pub fn label_key_unrestricted() -> Rule {
    Rule::new(label_key_allowed("self")).message(RESTRICTED_LABEL_MESSAGE)
}

/// On a label map (`spec.labels`).
pub fn label_keys_unrestricted() -> Rule {
    Rule::new(format!("self.all(k, {})", label_key_allowed("k"))).message(RESTRICTED_LABEL_MESSAGE)
}

// --- Kubelet ----------------------------------------------------------------------------------

/// Signals the kubelet accepts in `evictionHard`, `evictionSoft` and `evictionSoftGracePeriod`.
pub const EVICTION_SIGNALS: &[&str] = &[
    "memory.available",
    "nodefs.available",
    "nodefs.inodesFree",
    "imagefs.available",
    "imagefs.inodesFree",
    "pid.available",
];
pub const EVICTION_SIGNAL_MESSAGE: &str = "eviction signals are memory.available, nodefs.available, nodefs.inodesFree, imagefs.available, imagefs.inodesFree and pid.available";

/// Resources `systemReserved` and `kubeReserved` may reserve. `pid` has no constant in
/// `labels` because it is a kubelet reservation, not a node resource.
pub const RESERVABLE_RESOURCES: &[&str] = &[
    labels::RESOURCE_CPU,
    labels::RESOURCE_MEMORY,
    labels::RESOURCE_EPHEMERAL_STORAGE,
    "pid",
];
pub const RESERVABLE_RESOURCE_MESSAGE: &str =
    "reservable resources are cpu, memory, ephemeral-storage and pid";

fn keys_in(list: &[&str]) -> String {
    let list = list
        .iter()
        .map(|item| format!("'{item}'"))
        .collect::<Vec<_>>()
        .join(", ");
    format!("self.all(k, k in [{list}])")
}

pub fn eviction_signals() -> Rule {
    Rule::new(keys_in(EVICTION_SIGNALS)).message(EVICTION_SIGNAL_MESSAGE)
}

pub fn reservable_resources() -> Rule {
    Rule::new(keys_in(RESERVABLE_RESOURCES)).message(RESERVABLE_RESOURCE_MESSAGE)
}

pub const IMAGE_GC_THRESHOLDS: CelRule = rule_at(
    "has(self.imageGCHighThresholdPercent) && has(self.imageGCLowThresholdPercent) ? self.imageGCHighThresholdPercent > self.imageGCLowThresholdPercent : true",
    "imageGCHighThresholdPercent must be greater than imageGCLowThresholdPercent",
    ".imageGCHighThresholdPercent",
);
pub const EVICTION_SOFT_NEEDS_GRACE_PERIOD: CelRule = rule_at(
    "has(self.evictionSoft) ? self.evictionSoft.all(k, has(self.evictionSoftGracePeriod) && k in self.evictionSoftGracePeriod) : true",
    "every evictionSoft signal needs an evictionSoftGracePeriod",
    ".evictionSoft",
);
pub const GRACE_PERIOD_NEEDS_EVICTION_SOFT: CelRule = rule_at(
    "has(self.evictionSoftGracePeriod) ? self.evictionSoftGracePeriod.all(k, has(self.evictionSoft) && k in self.evictionSoft) : true",
    "every evictionSoftGracePeriod signal needs an evictionSoft threshold",
    ".evictionSoftGracePeriod",
);

// --- AWS settings (inline provider and AWSNodeTemplate) ------------------------------------------

pub const SUBNET_SELECTOR_REQUIRED: CelRule =
    rule("has(self.subnetSelector)", "subnetSelector is required");
pub const SECURITY_GROUP_SELECTOR_REQUIRED: CelRule = rule(
    "has(self.launchTemplate) || has(self.securityGroupSelector)",
    "securityGroupSelector is required unless launchTemplate is set",
);
pub const LAUNCH_TEMPLATE_EXCLUSIVE: CelRule = rule(
    "!has(self.launchTemplate) || !(has(self.securityGroupSelector) || has(self.metadataOptions) || has(self.amiFamily) || has(self.instanceProfile) || has(self.blockDeviceMappings))",
    "launchTemplate is mutually exclusive with securityGroupSelector, metadataOptions, amiFamily, instanceProfile and blockDeviceMappings",
);
pub const SELECTOR_KEYS_NOT_EMPTY: CelRule = rule(
    "self.all(k, k != '')",
    "selector tag keys must not be empty",
);
pub const SUBNET_IDS: CelRule = rule(
    r"!('aws-ids' in self) || self['aws-ids'].matches(r'^subnet-[0-9a-z]+(\s*,\s*subnet-[0-9a-z]+)*$')",
    "aws-ids must be a comma-separated list of subnet ids (subnet-…)",
);
pub const SECURITY_GROUP_IDS: CelRule = rule(
    r"!('aws-ids' in self) || self['aws-ids'].matches(r'^sg-[0-9a-z]+(\s*,\s*sg-[0-9a-z]+)*$')",
    "aws-ids must be a comma-separated list of security group ids (sg-…)",
);
pub const AMI_IDS: CelRule = rule(
    r"!('aws-ids' in self) || self['aws-ids'].matches(r'^ami-[0-9a-z]+(\s*,\s*ami-[0-9a-z]+)*$')",
    "aws-ids must be a comma-separated list of AMI ids (ami-…)",
);
pub const TAG_KEYS_NOT_EMPTY: CelRule = rule("self.all(k, k != '')", "tag keys must not be empty");
pub const RESTRICTED_TAG_MESSAGE: &str = "tags kubernetes.io/cluster/<name>, karpenter.sh/provisioner-name and karpenter.sh/managed-by are set by nodewright and may not be given";

/// Tags nodewright writes itself: the cluster ownership tag, the provisioner name and the
/// managed-by tag.
pub fn tags_unrestricted() -> Rule {
    Rule::new(format!(
        r"self.all(k, !k.matches(r'^{cluster}[0-9A-Za-z][A-Za-z0-9\-_]*$') && k != '{provisioner}' && k != '{managed_by}')",
        cluster = labels::CLUSTER_TAG_PREFIX.replace('.', r"\."),
        provisioner = labels::PROVISIONER_NAME,
        managed_by = labels::MANAGED_BY_TAG,
    ))
    .message(RESTRICTED_TAG_MESSAGE)
}

pub const DEVICE_NAME_REQUIRED: CelRule = rule_at(
    "has(self.deviceName)",
    "deviceName is required",
    ".deviceName",
);
pub const VOLUME_SIZE_OR_SNAPSHOT: CelRule = rule(
    "has(self.volumeSize) || has(self.snapshotID)",
    "one of volumeSize or snapshotID is required",
);

// --- AWSNodeTemplate --------------------------------------------------------------------------

pub const USER_DATA_VS_LAUNCH_TEMPLATE: CelRule = rule(
    "!(has(self.userData) && has(self.launchTemplate))",
    "userData and launchTemplate are mutually exclusive",
);
pub const AMI_SELECTOR_VS_LAUNCH_TEMPLATE: CelRule = rule(
    "!(has(self.amiSelector) && has(self.launchTemplate))",
    "amiSelector and launchTemplate are mutually exclusive",
);
pub const CUSTOM_AMI_FAMILY_NEEDS_SELECTOR: CelRule = rule_at(
    "has(self.amiFamily) && self.amiFamily == 'Custom' ? has(self.amiSelector) : true",
    "amiFamily Custom needs an amiSelector",
    ".amiSelector",
);
