//! Nodes from `core/v1` into the scheduling core's terms, with the pods bound to them.

use std::sync::Arc;

use k8s_openapi::api::core::v1 as k8s;
use nodewright_scheduling::node::ExistingNode;
use nodewright_scheduling::pod::Pod;
use nodewright_scheduling::taints::Taint;

use super::ConvertError;
use super::pod::{quantities, taint_effect};

/// An existing node and the (already converted) pods bound to it. Allocatable falls back to
/// capacity when the node has not reported it yet.
pub fn existing_node(node: &k8s::Node, pods: Vec<Arc<Pod>>) -> Result<ExistingNode, ConvertError> {
    let name = node.metadata.name.clone().unwrap_or_default();
    let object = format!("node {name}");
    let spec = node.spec.clone().unwrap_or_default();
    let status = node.status.clone().unwrap_or_default();
    let capacity = status
        .capacity
        .as_ref()
        .map(quantities)
        .transpose()
        .map_err(|m| ConvertError::new(&object, "status.capacity", m))?
        .unwrap_or_default();
    let allocatable = match status.allocatable.as_ref() {
        Some(list) => {
            quantities(list).map_err(|m| ConvertError::new(&object, "status.allocatable", m))?
        }
        None => capacity.clone(),
    };
    Ok(ExistingNode {
        name,
        labels: node.metadata.labels.clone().unwrap_or_default(),
        taints: taints(spec.taints.as_deref().unwrap_or(&[]))
            .map_err(|m| ConvertError::new(&object, "spec.taints", m))?,
        allocatable,
        capacity,
        pods,
        in_flight: false,
        unschedulable: spec.unschedulable.unwrap_or(false),
    })
}

pub fn taints(list: &[k8s::Taint]) -> Result<Vec<Taint>, String> {
    list.iter()
        .map(|t| {
            Ok(Taint::new(
                t.key.clone(),
                t.value.clone().unwrap_or_default(),
                taint_effect(&t.effect)?,
            ))
        })
        .collect()
}
