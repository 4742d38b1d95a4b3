//! Kubelet settings a provisioner (`spec.kubeletConfiguration`) or a machine (`spec.kubelet`)
//! passes to the nodes it launches: a subset of the upstream `KubeletConfiguration`, with
//! Karpenter's field names.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::KubeSchema;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = crate::apis::cel::IMAGE_GC_THRESHOLDS.to_rule())]
#[x_kube(validation = crate::apis::cel::EVICTION_SOFT_NEEDS_GRACE_PERIOD.to_rule())]
#[x_kube(validation = crate::apis::cel::GRACE_PERIOD_NEEDS_EVICTION_SOFT.to_rule())]
pub struct KubeletConfiguration {
    /// IP addresses of the cluster DNS servers.
    #[serde(default, rename = "clusterDNS", skip_serializing_if = "Vec::is_empty")]
    pub cluster_dns: Vec<String>,
    /// Container runtime of the nodes (e.g. `containerd`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_runtime: Option<String>,
    /// Upper bound on pods per node, overriding the instance type's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub max_pods: Option<i32>,
    /// Pods per CPU core; the lower of this and maxPods wins.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub pods_per_core: Option<i32>,
    /// Resources reserved for OS daemons (cpu, memory, ephemeral-storage, pid).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(schema_with = "crate::apis::schema::quantity_map")]
    #[x_kube(validation = crate::apis::cel::reservable_resources())]
    pub system_reserved: BTreeMap<String, Quantity>,
    /// Resources reserved for Kubernetes components (cpu, memory, ephemeral-storage, pid).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(schema_with = "crate::apis::schema::quantity_map")]
    #[x_kube(validation = crate::apis::cel::reservable_resources())]
    pub kube_reserved: BTreeMap<String, Quantity>,
    /// Hard eviction thresholds: signal → percentage or quantity.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(schema_with = "crate::apis::schema::eviction_thresholds")]
    #[x_kube(validation = crate::apis::cel::eviction_signals())]
    pub eviction_hard: BTreeMap<String, String>,
    /// Soft eviction thresholds: signal → percentage or quantity.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(schema_with = "crate::apis::schema::eviction_thresholds")]
    #[x_kube(validation = crate::apis::cel::eviction_signals())]
    pub eviction_soft: BTreeMap<String, String>,
    /// How long each soft threshold must hold before pods are evicted: signal → duration.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(schema_with = "crate::apis::schema::durations")]
    #[x_kube(validation = crate::apis::cel::eviction_signals())]
    pub eviction_soft_grace_period: BTreeMap<String, String>,
    /// Longest grace period (seconds) granted to pods evicted for a soft threshold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eviction_max_pod_grace_period: Option<i32>,
    /// Disk usage percentage above which image garbage collection always runs.
    #[serde(
        default,
        rename = "imageGCHighThresholdPercent",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(range(min = 0, max = 100))]
    pub image_gc_high_threshold_percent: Option<i32>,
    /// Disk usage percentage that image garbage collection frees down to.
    #[serde(
        default,
        rename = "imageGCLowThresholdPercent",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(range(min = 0, max = 100))]
    pub image_gc_low_threshold_percent: Option<i32>,
    /// Enforce CPU limits with CFS quota.
    #[serde(
        default,
        rename = "cpuCFSQuota",
        skip_serializing_if = "Option::is_none"
    )]
    pub cpu_cfs_quota: Option<bool>,
}
