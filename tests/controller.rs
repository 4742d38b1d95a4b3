//! The controller end to end against the simulated cluster over HTTP: pending pods become
//! Machines, instances, nodes and running pods. Recovery from faults, crashes and hand-overs,
//! node termination and early binding have their own modules.

#[path = "controller/support.rs"]
mod support;

#[path = "controller/binding.rs"]
mod binding;
#[path = "controller/recovery.rs"]
mod recovery;
#[path = "controller/settings.rs"]
mod settings;
#[path = "controller/termination.rs"]
mod termination;
#[path = "controller/writes.rs"]
mod writes;

use nodewright::apis::common::find_condition;
use nodewright::apis::machine::{MACHINE_INITIALIZED, MACHINE_LAUNCHED, MACHINE_REGISTERED};
use nodewright_scheduling::labels;
use serde_json::json;

use crate::support::{Sim, label, node_of, provisioner};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_one_cpu_pods_get_one_spot_node_and_run() {
    let sim = Sim::start().await;
    sim.apply_provisioner(provisioner("default", json!({})))
        .await;
    sim.add_pods("inflate", 4, "1", json!({})).await;
    // One burst, one batch: the controller starts once all four wait.
    sim.unschedulable_pods(4).await;
    let controller = sim.controller();

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
    let cost = sim
        .eventually("the cost metric counts the node", || async {
            let text = controller.metrics.encode().expect("metrics encode");
            support::metric_value(
                &text,
                "nodewright_provisioner_cost_per_hour",
                "capacity_type=\"spot\"",
            )
            .filter(|v| *v > 0.0)
        })
        .await;
    assert!(
        cost < 1.0,
        "a few 1-cpu pods cost cents per hour, not {cost}"
    );
    sim.eventually(
        "the pods state metric counts the four pods running on spot",
        || async {
            let text = controller.metrics.encode().expect("metrics encode");
            let running_on_spot: f64 = text
                .lines()
                .filter(|l| {
                    l.starts_with("karpenter_pods_state{")
                        && l.contains("phase=\"Running\"")
                        && l.contains("capacity_type=\"spot\"")
                        && l.contains("provisioner=\"default\"")
                })
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum();
            (running_on_spot == 4.0).then_some(())
        },
    )
    .await;
    let text = controller.metrics.encode().expect("metrics encode");
    assert_eq!(
        support::metric_value(
            &text,
            "karpenter_machines_created",
            "provisioner=\"default\""
        ),
        Some(1.0)
    );
    assert_eq!(
        support::metric_value(&text, "karpenter_nodes_created", "provisioner=\"default\""),
        Some(1.0)
    );
    controller.stop().await;
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_hold_across_batches_and_the_pods_left_over_are_told_why() {
    let sim = Sim::start().await;
    let controller = sim.controller();
    sim.apply_provisioner(provisioner(
        "small",
        json!({"limits": {"resources": {"cpu": "8"}}}),
    ))
    .await;
    // Three batches of three 1.5-cpu pods: 13.5 cpu wanted, 8 allowed.
    for batch in 0..3 {
        sim.add_pods(&format!("batch{batch}"), 3, "1500m", json!({}))
            .await;
        sim.wait(std::time::Duration::from_secs(5)).await;
    }
    sim.running_pods(3).await;
    let refused = sim
        .eventually("a pod is told the limit stops it", || async {
            for pod in sim.pods().await {
                let name = pod.metadata.name.clone().unwrap_or_default();
                if node_of(&pod).is_some() {
                    continue;
                }
                let events = support::events_about(&sim.client, &name).await;
                if let Some((_, message)) = events
                    .iter()
                    .find(|(reason, _)| reason == "FailedScheduling")
                {
                    return Some(message.clone());
                }
            }
            None
        })
        .await;
    assert!(refused.contains("limit"), "{refused}");
    sim.wait(std::time::Duration::from_secs(60)).await;
    let nodes = sim.nodes().await;
    let cpu = support::cpu_of_nodes(&nodes, "small");
    assert!(
        cpu <= 8000,
        "nodes of provisioner small hold {cpu}m cpu, limit 8"
    );
    assert!(cpu > 0);
    let pending = sim
        .pods()
        .await
        .iter()
        .filter(|p| node_of(p).is_none())
        .count();
    assert!(pending > 0, "pods beyond the limit stay pending");
    // The counter loop writes the provisioner's status on its own schedule.
    sim.eventually("status.resources counts cpu", || async {
        let provisioner: nodewright::apis::Provisioner = kube::Api::all(sim.client.clone())
            .get("small")
            .await
            .expect("provisioner");
        provisioner
            .status
            .is_some_and(|s| s.resources.contains_key("cpu"))
            .then_some(())
    })
    .await;
    controller.stop().await;
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_provisioner_with_the_highest_weight_wins() {
    let sim = Sim::start().await;
    let controller = sim.controller();
    sim.apply_provisioner(provisioner("cheap", json!({}))).await;
    sim.apply_provisioner(provisioner(
        "preferred",
        json!({"weight": 50, "requirements": [
            {"key": "karpenter.sh/capacity-type", "operator": "In", "values": ["on-demand"]}
        ]}),
    ))
    .await;
    sim.add_pods("web", 3, "1", json!({})).await;
    sim.running_pods(3).await;
    let machines = sim.machines().await;
    assert!(!machines.is_empty());
    for machine in &machines {
        assert_eq!(
            label(machine, labels::PROVISIONER_NAME).as_deref(),
            Some("preferred")
        );
        assert_eq!(
            label(machine, labels::CAPACITY_TYPE).as_deref(),
            Some("on-demand")
        );
    }
    controller.stop().await;
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_impossible_pod_gets_an_event_and_the_others_run() {
    let sim = Sim::start().await;
    let controller = sim.controller();
    sim.apply_provisioner(provisioner("default", json!({})))
        .await;
    sim.add_pods("huge", 1, "1000", json!({})).await;
    sim.add_pods("small", 2, "1", json!({})).await;
    sim.running_pods(2).await;
    let events = sim
        .eventually("the impossible pod gets an event", || async {
            let events = support::events_about(&sim.client, "huge-0").await;
            events
                .into_iter()
                .find(|(reason, _)| reason == "FailedScheduling")
        })
        .await;
    assert!(
        events.1.contains("no provisioner can run this pod"),
        "{events:?}"
    );
    let huge = sim
        .pods()
        .await
        .into_iter()
        .find(|p| p.metadata.name.as_deref() == Some("huge-0"))
        .expect("the pod exists");
    assert_eq!(node_of(&huge), None);
    controller.stop().await;
    sim.stop().await;
}
