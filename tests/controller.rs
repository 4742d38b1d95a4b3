//! The controller end to end against the simulated cluster over HTTP: pending pods become
//! Machines, instances, nodes and running pods.

#[path = "controller/support.rs"]
mod support;

use nodewright::apis::common::find_condition;
use nodewright::apis::machine::{MACHINE_INITIALIZED, MACHINE_LAUNCHED, MACHINE_REGISTERED};
use nodewright_scheduling::labels;
use serde_json::json;

use crate::support::{Sim, label, node_of, provisioner};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_one_cpu_pods_get_one_spot_node_and_run() {
    let sim = Sim::start().await;
    let controller = sim.controller();
    sim.apply_provisioner(provisioner("default", json!({})))
        .await;
    sim.add_pods("inflate", 4, "1", json!({})).await;

    let running = sim.running_pods(4).await;
    let nodes: std::collections::BTreeSet<String> = running.iter().filter_map(node_of).collect();
    assert_eq!(nodes.len(), 1, "one node for four 1-cpu pods: {nodes:?}");

    let machines = sim.machines().await;
    assert_eq!(machines.len(), 1);
    let machine = &machines[0];
    let status = machine.status.clone().unwrap_or_default();
    for condition in [MACHINE_LAUNCHED, MACHINE_REGISTERED] {
        assert!(
            find_condition(&status.conditions, condition).is_some_and(|c| c.is_true()),
            "{condition} on {status:?}"
        );
    }
    assert_eq!(
        label(machine, labels::CAPACITY_TYPE).as_deref(),
        Some("spot")
    );
    let node = sim
        .nodes()
        .await
        .into_iter()
        .find(|n| nodes.contains(&n.metadata.name.clone().unwrap_or_default()))
        .expect("the node exists");
    assert_eq!(
        label(&node, labels::PROVISIONER_NAME).as_deref(),
        Some("default")
    );
    assert_eq!(label(&node, labels::REGISTERED).as_deref(), Some("true"));
    assert!(
        node.metadata
            .finalizers
            .unwrap_or_default()
            .contains(&labels::TERMINATION_FINALIZER.to_string()),
        "the node carries the termination finalizer"
    );
    sim.eventually("the machine is initialized", || async {
        let machines = sim.machines().await;
        machines.first().and_then(|m| {
            let status = m.status.clone()?;
            find_condition(&status.conditions, MACHINE_INITIALIZED)
                .is_some_and(|c| c.is_true())
                .then_some(())
        })
    })
    .await;
    assert_eq!(sim.instances().await.len(), 1, "one instance launched");
    controller.stop().await;
    sim.stop().await;
}
