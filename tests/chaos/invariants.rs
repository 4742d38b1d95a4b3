//! What must hold whatever the faults, checked on snapshots of moto and the API server.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime};

use aws_sdk_ec2::types::Filter;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::ResourceExt;
use kube::api::{Api, ListParams};
use nodewright::apis::Machine;

use crate::workload::GUARDED;

/// An instance of the trial's cluster that is not (being) terminated.
#[derive(Debug, Clone)]
pub struct Instance {
    pub id: String,
    pub instance_type: String,
    pub machine: Option<String>,
    pub launched: Option<SystemTime>,
}

impl Instance {
    pub fn provider_id_suffix(&self) -> String {
        format!("/{}", self.id)
    }
}

pub struct Snapshot {
    pub machines: Vec<Machine>,
    pub nodes: Vec<Node>,
    pub pods: Vec<Pod>,
    pub instances: Vec<Instance>,
}

pub async fn live_instances(
    ec2: &aws_sdk_ec2::Client,
    cluster: &str,
) -> Result<Vec<Instance>, String> {
    let out = ec2
        .describe_instances()
        .filters(
            Filter::builder()
                .name("tag-key")
                .values(format!("kubernetes.io/cluster/{cluster}"))
                .build(),
        )
        .send()
        .await
        .map_err(|e| format!("describe instances: {e}"))?;
    Ok(out
        .reservations()
        .iter()
        .flat_map(|r| r.instances())
        .filter(|i| {
            !matches!(
                i.state().and_then(|s| s.name()).map(|n| n.as_str()),
                Some("terminated" | "shutting-down")
            )
        })
        .map(|i| Instance {
            id: i.instance_id().unwrap_or_default().to_string(),
            instance_type: i
                .instance_type()
                .map(|t| t.as_str().to_string())
                .unwrap_or_default(),
            machine: i
                .tags()
                .iter()
                .find(|t| t.key() == Some("karpenter.sh/machine-name"))
                .and_then(|t| t.value().map(str::to_string)),
            launched: i.launch_time().and_then(|t| SystemTime::try_from(*t).ok()),
        })
        .collect())
}

pub async fn snapshot(
    client: &kube::Client,
    ec2: &aws_sdk_ec2::Client,
    cluster: &str,
) -> Result<Snapshot, String> {
    let params = ListParams::default();
    // Instances first: anything the API shows afterwards is at least as new.
    let instances = live_instances(ec2, cluster).await?;
    let machines = Api::<Machine>::all(client.clone())
        .list(&params)
        .await
        .map_err(|e| format!("list machines: {e}"))?
        .items;
    let nodes = Api::<Node>::all(client.clone())
        .list(&params)
        .await
        .map_err(|e| format!("list nodes: {e}"))?
        .items;
    let pods = Api::<Pod>::all(client.clone())
        .list(&params)
        .await
        .map_err(|e| format!("list pods: {e}"))?
        .items;
    Ok(Snapshot {
        machines,
        nodes,
        pods,
        instances,
    })
}

/// vCPUs of the c5/m5 sizes the trials allow.
pub fn vcpus(instance_type: &str) -> u64 {
    let size = instance_type.split('.').nth(1).unwrap_or_default();
    match size {
        "large" => 2,
        "xlarge" => 4,
        other => {
            other
                .strip_suffix("xlarge")
                .and_then(|n| n.parse::<u64>().ok())
                .unwrap_or(0)
                * 4
        }
    }
}

impl Snapshot {
    pub fn launched_cpu(&self) -> u64 {
        self.instances.iter().map(|i| vcpus(&i.instance_type)).sum()
    }

    /// More than one live instance for one Machine.
    pub fn duplicate_launches(&self) -> Vec<String> {
        let mut by_machine: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for instance in &self.instances {
            if let Some(machine) = &instance.machine {
                by_machine.entry(machine).or_default().push(&instance.id);
            }
        }
        by_machine
            .into_iter()
            .filter(|(_, ids)| ids.len() > 1)
            .map(|(machine, ids)| format!("machine {machine} has instances {ids:?}"))
            .collect()
    }

    /// Instances no Machine accounts for once older than `grace` (the GC's to end), and
    /// instances whose Machine has no Node once older than `registration` (the machine
    /// liveness check's to end): either is a leak.
    pub fn orphans(&self, now: SystemTime, grace: Duration, registration: Duration) -> Vec<String> {
        let machines: BTreeSet<String> = self.machines.iter().map(|m| m.name_any()).collect();
        let older_than = |launched: Option<SystemTime>, limit: Duration| {
            launched.is_some_and(|at| now.duration_since(at).is_ok_and(|age| age > limit))
        };
        self.instances
            .iter()
            .filter_map(|i| {
                let has_machine = i.machine.as_ref().is_some_and(|m| machines.contains(m));
                let has_node = self.nodes.iter().any(|n| {
                    n.spec
                        .as_ref()
                        .and_then(|s| s.provider_id.as_deref())
                        .is_some_and(|p| p.ends_with(&i.provider_id_suffix()))
                });
                let limit = match (has_machine, has_node) {
                    (false, _) => grace,
                    (true, false) => registration,
                    (true, true) => return None,
                };
                older_than(i.launched, limit).then(|| {
                    format!(
                        "instance {} ({}) older than {limit:?} has machine: {has_machine}, node: {has_node}",
                        i.id, i.instance_type
                    )
                })
            })
            .collect()
    }

    fn live_pods(&self) -> impl Iterator<Item = &Pod> {
        self.pods
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
    }

    /// Ready, not terminating pods of the guarded deployment.
    pub fn guarded_ready(&self) -> usize {
        self.live_pods()
            .filter(|p| p.labels().get("app").map(String::as_str) == Some(GUARDED))
            .filter(|p| {
                p.status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
            })
            .count()
    }

    /// Pods no node holds yet, by name.
    pub fn pending(&self) -> Vec<String> {
        self.live_pods()
            .filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_none())
            .map(|p| p.name_any())
            .collect()
    }

    /// Running pods of the deployments.
    pub fn running(&self) -> usize {
        self.live_pods()
            .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
            .count()
    }

    /// A Machine created but not launched yet (between its create and CreateFleet).
    pub fn launching(&self) -> bool {
        self.machines.iter().any(|m| {
            m.metadata.deletion_timestamp.is_none()
                && m.status
                    .as_ref()
                    .and_then(|s| s.provider_id.as_ref())
                    .is_none()
        })
    }

    /// Nodes being deleted while still cordoned: a drain in progress.
    pub fn draining(&self) -> Vec<String> {
        self.nodes
            .iter()
            .filter(|n| n.metadata.deletion_timestamp.is_some())
            .filter(|n| n.spec.as_ref().and_then(|s| s.unschedulable) == Some(true))
            .map(|n| n.name_any())
            .collect()
    }

    pub fn managed_nodes(&self) -> Vec<String> {
        managed_nodes(&self.nodes)
    }
}

/// Nodes nodewright manages (labelled with a provisioner), by name.
pub fn managed_nodes(nodes: &[Node]) -> Vec<String> {
    nodes
        .iter()
        .filter(|n| n.labels().contains_key("karpenter.sh/provisioner-name"))
        .map(|n| n.name_any())
        .collect()
}
