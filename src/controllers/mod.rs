//! The controllers' building blocks. Each controller is `observe (client) → decide (pure) → act
//! (client)`; what lives here so far is the pure middle, tested without an API server:
//!
//! - [`provisioning`]: the batching window and the plan → Machines decision of the fast loop.
//! - [`lifecycle`]: a machine's next step: launch, register its node, initialize, or give up.
//! - [`counter`]: a provisioner's status (resources in use, the `LimitsReached` condition).

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use nodewright_scheduling::resources::{Resources, format_amount};

pub mod context;
pub mod counter;
pub mod disruption;
pub mod emptiness;
pub mod error;
pub mod events;
pub mod gc;
pub mod global_settings;
pub mod interruption;
pub mod lifecycle;
pub mod manager;
pub mod node_template;
pub mod provisioning;
pub mod termination;
pub mod work;
pub mod write;

#[cfg(test)]
mod lifecycle_tests;
#[cfg(test)]
mod termination_tests;

/// Resources as a Kubernetes `ResourceList` (`cpu: 1500m`, `memory: 8Gi`, `pods: 58`).
pub fn resource_list(resources: &Resources) -> BTreeMap<String, Quantity> {
    resources
        .iter()
        .map(|(name, value)| (name.to_string(), Quantity(format_amount(name, value))))
        .collect()
}
