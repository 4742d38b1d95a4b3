//! Well-known label, annotation, taint, finalizer and resource names: the one place they are spelled.
//!
//! Names follow Karpenter v1alpha5 (`karpenter.sh`) and its AWS provider (`karpenter.k8s.aws`) so that
//! manifests, selectors and dashboards written for Karpenter keep working.

/// API group of the provisioning kinds (Provisioner, Machine).
pub const KARPENTER_GROUP: &str = "karpenter.sh";
/// API group of the AWS kinds (AWSNodeTemplate).
pub const KARPENTER_AWS_GROUP: &str = "karpenter.k8s.aws";

// --- Node labels set by nodewright -------------------------------------------------------------

pub const PROVISIONER_NAME: &str = "karpenter.sh/provisioner-name";
pub const CAPACITY_TYPE: &str = "karpenter.sh/capacity-type";
pub const MACHINE_NAME: &str = "karpenter.sh/machine-name";
/// Set once the node has registered with the API server and been adopted.
pub const REGISTERED: &str = "karpenter.sh/registered";
/// Annotation on a node object nodewright created ahead of its kubelet to bind pods early.
pub const BOUND_EARLY: &str = "karpenter.sh/bound-early";
/// Set once the node is Ready, its startup taints are gone and extended resources are reported.
pub const INITIALIZED: &str = "karpenter.sh/initialized";

pub const CAPACITY_TYPE_SPOT: &str = "spot";
pub const CAPACITY_TYPE_ON_DEMAND: &str = "on-demand";

// --- Kubernetes well-known node labels ---------------------------------------------------------

pub const HOSTNAME: &str = "kubernetes.io/hostname";
pub const ARCH: &str = "kubernetes.io/arch";
pub const OS: &str = "kubernetes.io/os";
pub const INSTANCE_TYPE: &str = "node.kubernetes.io/instance-type";
pub const ZONE: &str = "topology.kubernetes.io/zone";
pub const REGION: &str = "topology.kubernetes.io/region";

pub const ARCH_AMD64: &str = "amd64";
pub const ARCH_ARM64: &str = "arm64";
pub const OS_LINUX: &str = "linux";
pub const OS_WINDOWS: &str = "windows";

// --- AWS instance attribute labels -------------------------------------------------------------

pub const INSTANCE_HYPERVISOR: &str = "karpenter.k8s.aws/instance-hypervisor";
pub const INSTANCE_ENCRYPTION_IN_TRANSIT_SUPPORTED: &str =
    "karpenter.k8s.aws/instance-encryption-in-transit-supported";
pub const INSTANCE_CATEGORY: &str = "karpenter.k8s.aws/instance-category";
pub const INSTANCE_FAMILY: &str = "karpenter.k8s.aws/instance-family";
pub const INSTANCE_GENERATION: &str = "karpenter.k8s.aws/instance-generation";
pub const INSTANCE_LOCAL_NVME: &str = "karpenter.k8s.aws/instance-local-nvme";
pub const INSTANCE_SIZE: &str = "karpenter.k8s.aws/instance-size";
pub const INSTANCE_CPU: &str = "karpenter.k8s.aws/instance-cpu";
pub const INSTANCE_MEMORY: &str = "karpenter.k8s.aws/instance-memory";
pub const INSTANCE_NETWORK_BANDWIDTH: &str = "karpenter.k8s.aws/instance-network-bandwidth";
pub const INSTANCE_PODS: &str = "karpenter.k8s.aws/instance-pods";
pub const INSTANCE_GPU_NAME: &str = "karpenter.k8s.aws/instance-gpu-name";
pub const INSTANCE_GPU_MANUFACTURER: &str = "karpenter.k8s.aws/instance-gpu-manufacturer";
pub const INSTANCE_GPU_COUNT: &str = "karpenter.k8s.aws/instance-gpu-count";
pub const INSTANCE_GPU_MEMORY: &str = "karpenter.k8s.aws/instance-gpu-memory";
pub const INSTANCE_ACCELERATOR_NAME: &str = "karpenter.k8s.aws/instance-accelerator-name";
pub const INSTANCE_ACCELERATOR_MANUFACTURER: &str =
    "karpenter.k8s.aws/instance-accelerator-manufacturer";
pub const INSTANCE_ACCELERATOR_COUNT: &str = "karpenter.k8s.aws/instance-accelerator-count";

/// Labels nodewright knows the value of before a node exists: pods and provisioners may select on
/// any of them, although they sit in restricted domains.
pub const WELL_KNOWN_LABELS: &[&str] = &[
    PROVISIONER_NAME,
    CAPACITY_TYPE,
    HOSTNAME,
    ARCH,
    OS,
    INSTANCE_TYPE,
    ZONE,
    REGION,
    INSTANCE_HYPERVISOR,
    INSTANCE_ENCRYPTION_IN_TRANSIT_SUPPORTED,
    INSTANCE_CATEGORY,
    INSTANCE_FAMILY,
    INSTANCE_GENERATION,
    INSTANCE_LOCAL_NVME,
    INSTANCE_SIZE,
    INSTANCE_CPU,
    INSTANCE_MEMORY,
    INSTANCE_NETWORK_BANDWIDTH,
    INSTANCE_PODS,
    INSTANCE_GPU_NAME,
    INSTANCE_GPU_MANUFACTURER,
    INSTANCE_GPU_COUNT,
    INSTANCE_GPU_MEMORY,
    INSTANCE_ACCELERATOR_NAME,
    INSTANCE_ACCELERATOR_MANUFACTURER,
    INSTANCE_ACCELERATOR_COUNT,
];

/// Deprecated beta keys and the stable key each one means.
pub const BETA_ALIASES: &[(&str, &str)] = &[
    ("beta.kubernetes.io/arch", ARCH),
    ("beta.kubernetes.io/os", OS),
    ("beta.kubernetes.io/instance-type", INSTANCE_TYPE),
    ("failure-domain.beta.kubernetes.io/zone", ZONE),
    ("failure-domain.beta.kubernetes.io/region", REGION),
];

/// The stable key for `key`: beta aliases map to their replacement, every other key to itself.
pub fn normalize_key(key: &str) -> &str {
    BETA_ALIASES
        .iter()
        .find(|(beta, _)| *beta == key)
        .map_or(key, |(_, stable)| stable)
}

/// Label domains that users may not set on nodes through a provisioner, except for the
/// well-known labels above and the exception domains below.
pub const RESTRICTED_LABEL_DOMAINS: &[&str] = &[
    "kubernetes.io",
    "k8s.io",
    KARPENTER_GROUP,
    KARPENTER_AWS_GROUP,
];
/// Sub-domains of the restricted domains that stay open to users.
pub const LABEL_DOMAIN_EXCEPTIONS: &[&str] = &[
    "kops.k8s.io",
    "node.kubernetes.io",
    "node-restriction.kubernetes.io",
];

/// Why a label key may not be set by a provisioner, or `None` when it may.
///
/// A key is restricted when its prefix is one of the restricted domains or a sub-domain of one,
/// unless it is well known or lies in an exception domain.
pub fn restricted_label_reason(key: &str) -> Option<String> {
    let key = normalize_key(key);
    if WELL_KNOWN_LABELS.contains(&key) {
        return None;
    }
    let domain = key.split_once('/').map(|(domain, _)| domain)?;
    let within = |parent: &str| domain == parent || domain.ends_with(&format!(".{parent}"));
    if LABEL_DOMAIN_EXCEPTIONS.iter().any(|d| within(d)) {
        return None;
    }
    RESTRICTED_LABEL_DOMAINS
        .iter()
        .find(|d| within(d))
        .map(|d| format!("label domain \"{d}\" is restricted"))
}

// --- Annotations ------------------------------------------------------------------------------

/// On a pod: `"true"` blocks voluntary disruption of its node.
pub const DO_NOT_EVICT: &str = "karpenter.sh/do-not-evict";
/// On a node: `"true"` keeps consolidation away from it.
pub const DO_NOT_CONSOLIDATE: &str = "karpenter.sh/do-not-consolidate";
/// On a node: when it was last seen empty (RFC 3339).
pub const EMPTINESS_TIMESTAMP: &str = "karpenter.sh/emptiness-timestamp";
/// On a node or machine: hash of the provisioner spec it was launched from, for drift.
pub const PROVISIONER_HASH: &str = "karpenter.sh/provisioner-hash";

// --- Finalizers and taints --------------------------------------------------------------------

/// Holds a node (and its machine) until its instance is terminated.
pub const TERMINATION_FINALIZER: &str = "karpenter.sh/termination";
/// Put on a node that is being disrupted so that nothing new lands on it.
pub const DISRUPTION_TAINT_KEY: &str = "karpenter.sh/disruption";
pub const DISRUPTION_TAINT_VALUE: &str = "disrupting";
pub const TAINT_NOT_READY: &str = "node.kubernetes.io/not-ready";
pub const TAINT_UNREACHABLE: &str = "node.kubernetes.io/unreachable";
pub const TAINT_UNSCHEDULABLE: &str = "node.kubernetes.io/unschedulable";
pub const TAINT_UNINITIALIZED: &str = "node.cloudprovider.kubernetes.io/uninitialized";

// --- Resource names ---------------------------------------------------------------------------

pub const RESOURCE_CPU: &str = "cpu";
pub const RESOURCE_MEMORY: &str = "memory";
pub const RESOURCE_EPHEMERAL_STORAGE: &str = "ephemeral-storage";
pub const RESOURCE_PODS: &str = "pods";
pub const RESOURCE_NVIDIA_GPU: &str = "nvidia.com/gpu";
pub const RESOURCE_AMD_GPU: &str = "amd.com/gpu";
pub const RESOURCE_AWS_NEURON: &str = "aws.amazon.com/neuron";
pub const RESOURCE_HABANA_GAUDI: &str = "habana.ai/gaudi";
pub const RESOURCE_AWS_POD_ENI: &str = "vpc.amazonaws.com/pod-eni";

// --- Tags on cloud resources ------------------------------------------------------------------

/// `kubernetes.io/cluster/<name>=owned` marks every instance launched for a cluster.
pub const CLUSTER_TAG_PREFIX: &str = "kubernetes.io/cluster/";
pub const MANAGED_BY_TAG: &str = "karpenter.sh/managed-by";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn beta_keys_normalise_to_stable_keys() {
        assert_eq!(
            normalize_key("failure-domain.beta.kubernetes.io/zone"),
            ZONE
        );
        assert_eq!(normalize_key("beta.kubernetes.io/arch"), ARCH);
        assert_eq!(normalize_key("team"), "team");
    }

    #[test]
    fn restricted_domains_refuse_custom_keys_but_allow_well_known_and_exceptions() {
        assert!(restricted_label_reason("kubernetes.io/custom").is_some());
        assert!(restricted_label_reason("foo.kubernetes.io/custom").is_some());
        assert!(restricted_label_reason("karpenter.sh/custom").is_some());
        assert!(restricted_label_reason("sub.k8s.io/x").is_some());
        assert!(restricted_label_reason(ZONE).is_none());
        assert!(restricted_label_reason(CAPACITY_TYPE).is_none());
        assert!(restricted_label_reason("node.kubernetes.io/pool").is_none());
        assert!(restricted_label_reason("node-restriction.kubernetes.io/x").is_none());
        assert!(restricted_label_reason("kops.k8s.io/instancegroup").is_none());
        assert!(restricted_label_reason("team").is_none());
        assert!(restricted_label_reason("example.com/team").is_none());
    }
}
