//! Resource quantities (cpu, memory, storage, pods, extended resources) in integer units.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A bundle of resources: a pod's requests, a node's capacity or allocatable.
///
/// Integer units keep arithmetic exact: cpu in millicores, memory and storage in bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Resources {
    pub cpu_millis: i64,
    pub memory_bytes: i64,
    pub ephemeral_storage_bytes: i64,
    pub pods: i64,
    /// GPUs, accelerators and any other extended resource, by resource name. Zero entries are
    /// omitted so that equal bundles compare equal.
    pub extended: BTreeMap<String, i64>,
}
