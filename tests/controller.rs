//! The controller end to end against the simulated cluster over HTTP: pending pods become
//! Machines, instances, nodes and running pods.

#[path = "controller/support.rs"]
mod support;

use kube::ResourceExt;
use nodewright::apis::common::find_condition;
use nodewright::apis::machine::{MACHINE_INITIALIZED, MACHINE_LAUNCHED, MACHINE_REGISTERED};
use nodewright::controllers::context::USER_AGENT;
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
            "karpenter_machines_created_total",
            "provisioner=\"default\""
        ),
        Some(1.0)
    );
    assert_eq!(
        support::metric_value(
            &text,
            "karpenter_nodes_created_total",
            "provisioner=\"default\""
        ),
        Some(1.0)
    );
    controller.stop().await;
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_whose_machine_could_not_be_created_go_to_the_next_batch() {
    let sim = Sim::start().await;
    sim.apply_provisioner(provisioner("default", json!({})))
        .await;
    sim.add_pods("inflate", 4, "1", json!({})).await;
    sim.unschedulable_pods(4).await;
    sim.server
        .fail_requests_from(USER_AGENT, "create", "machines", 1);
    let controller = sim.controller();

    let running = sim.running_pods(4).await;
    let nodes: std::collections::BTreeSet<String> = running.iter().filter_map(node_of).collect();
    assert_eq!(nodes.len(), 1, "{nodes:?}");
    assert_eq!(
        sim.server.statuses("create", "machines"),
        [500, 201],
        "one refused, one retried"
    );
    assert_eq!(sim.machines().await.len(), 1);
    assert_eq!(
        sim.instances().await.len(),
        1,
        "nothing launched for the refused machine"
    );
    controller.stop().await;
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_that_arrive_while_the_watches_are_down_are_still_provisioned() {
    let sim = Sim::start().await;
    sim.apply_provisioner(provisioner("default", json!({})))
        .await;
    let controller = sim.controller();
    sim.eventually("the controller runs", || async {
        controller.is_running().then_some(())
    })
    .await;
    // Every watch stream ends and the controller's pod watches are refused until the whole
    // burst is waiting; the simulated scheduler keeps its watches.
    sim.server
        .fail_requests_from(USER_AGENT, "watch", "pods", usize::MAX);
    sim.server.end_watches();
    sim.add_pods("inflate", 4, "1", json!({})).await;
    sim.unschedulable_pods(4).await;
    sim.eventually("the controller's pod watch is refused", || async {
        controller_pod_watch_refused(&sim).then_some(())
    })
    .await;
    sim.server.clear_faults();

    let running = sim.running_pods(4).await;
    let nodes: std::collections::BTreeSet<String> = running.iter().filter_map(node_of).collect();
    assert_eq!(nodes.len(), 1, "one batch, one node: {nodes:?}");
    controller.stop().await;
    sim.stop().await;
}

fn controller_pod_watch_refused(sim: &Sim) -> bool {
    sim.server.requests().iter().any(|request| {
        request.user_agent.as_deref() == Some(USER_AGENT)
            && request.verb == "watch"
            && request.resource == "pods"
            && request.status == 500
    })
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_controller_that_crashes_around_a_launch_never_buys_twice() {
    use nodewright::cloudprovider::fake::FakeCall;
    use nodewright::cloudprovider::{CloudProvider, LaunchRequest, NodeTemplate};

    let sim = Sim::start().await;
    sim.apply_provisioner(provisioner("default", json!({})))
        .await;
    // The first controller records the machine, but every launch of it fails ...
    sim.cloud.fail_next(FakeCall::Create, "InternalError", 1000);
    sim.add_pods("inflate", 2, "1", json!({})).await;
    sim.unschedulable_pods(2).await;
    let first = sim.controller();
    let machine = sim
        .eventually("the first controller records a machine", || async {
            sim.machines().await.into_iter().next()
        })
        .await;
    // ... and it dies.
    first.kill();
    assert!(sim.instances().await.is_empty(), "nothing launched yet");
    // Suppose its last launch did reach EC2 just before it died, unrecorded.
    sim.cloud.clear_failures(FakeCall::Create);
    let provider = nodewright::apis::node_template::AwsProvider::default();
    let spec: nodewright::apis::Provisioner = kube::Api::all(sim.client.clone())
        .get("default")
        .await
        .expect("provisioner");
    let template = NodeTemplate::from_provider(spec.spec.provider.as_ref().unwrap_or(&provider))
        .expect("the tutorial's provider is usable");
    let request = LaunchRequest::from_machine(&machine, template).expect("a launch request");
    let orphan = sim
        .cloud
        .create(&request)
        .await
        .expect("the launch reaches the cloud");

    let second = sim.controller();
    sim.running_pods(2).await;
    let instances = sim.instances().await;
    assert_eq!(instances.len(), 1, "exactly one instance: {instances:?}");
    let machines = sim.machines().await;
    assert_eq!(
        machines.len(),
        1,
        "the restarted controller reuses the machine"
    );
    let status = machines[0].status.clone().unwrap_or_default();
    assert_eq!(
        status.provider_id.as_deref(),
        Some(orphan.provider_id.as_str())
    );
    second.stop().await;
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_node_is_cordoned_drained_terminated_and_removed_after_its_ttl() {
    use k8s_openapi::api::core::v1::Pod;
    use kube::api::{Api, DeleteParams};

    let sim = Sim::start().await;
    sim.apply_provisioner(provisioner("default", json!({"ttlSecondsAfterEmpty": 30})))
        .await;
    sim.add_pods("inflate", 4, "1", json!({})).await;
    sim.unschedulable_pods(4).await;
    let controller = sim.controller();
    sim.running_pods(4).await;
    let node = sim
        .eventually("the node is initialized", || async {
            sim.nodes()
                .await
                .into_iter()
                .find(|n| label(n, labels::INITIALIZED).as_deref() == Some("true"))
        })
        .await;
    let node_name = node.metadata.name.clone().unwrap_or_default();
    // A busy node is never marked empty.
    sim.wait(std::time::Duration::from_secs(40)).await;
    let busy = sim.nodes().await;
    assert!(
        busy.iter()
            .all(|n| !n.annotations().contains_key(labels::EMPTINESS_TIMESTAMP)),
        "a node running pods carries no emptiness timestamp"
    );
    let pods: Api<Pod> = Api::default_namespaced(sim.client.clone());
    for i in 0..4 {
        pods.delete(&format!("inflate-{i}"), &DeleteParams::default())
            .await
            .expect("the pod is deleted");
    }
    let marked = sim
        .eventually("the empty node gets its timestamp", || async {
            sim.nodes()
                .await
                .into_iter()
                .find(|n| n.annotations().contains_key(labels::EMPTINESS_TIMESTAMP))
        })
        .await;
    assert_eq!(marked.metadata.name.as_deref(), Some(node_name.as_str()));
    sim.eventually("the node is gone", || async {
        sim.nodes().await.is_empty().then_some(())
    })
    .await;
    assert!(
        sim.instances().await.is_empty(),
        "the instance is terminated"
    );
    sim.eventually("the machine is gone", || async {
        sim.machines().await.is_empty().then_some(())
    })
    .await;
    let terminated = sim
        .metric(
            &controller.metrics,
            "karpenter_nodes_terminated_total",
            "reason=\"emptiness\"",
        )
        .await;
    assert_eq!(terminated, 1.0);
    controller.stop().await;
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn of_two_replicas_one_acts_and_the_other_takes_over_when_it_stops() {
    let sim = Sim::start().await;
    let first = sim.replica("replica-a");
    let second = sim.replica("replica-b");
    sim.apply_provisioner(provisioner("default", json!({})))
        .await;
    let leader_runs = sim
        .eventually("one replica runs its loops", || async {
            match (first.is_running(), second.is_running()) {
                (true, false) => Some(true),
                (false, true) => Some(false),
                _ => None,
            }
        })
        .await;
    let (leader, standby) = if leader_runs {
        (first, second)
    } else {
        (second, first)
    };
    sim.add_pods("before", 2, "1", json!({})).await;
    sim.running_pods(2).await;
    assert!(!standby.is_running(), "the standby does not act");
    assert_eq!(
        support::metric_value(
            &standby.metrics.encode().expect("metrics"),
            "karpenter_machines_created_total",
            "provisioner"
        ),
        None,
        "the standby created no machine"
    );

    leader.stop().await;
    sim.eventually("the standby takes over", || async {
        standby.is_running().then_some(())
    })
    .await;
    // Pods that need a new node: the new leader provisions them.
    sim.add_pods("after", 2, "6", json!({})).await;
    sim.running_pods(4).await;
    let created = support::metric_value(
        &standby.metrics.encode().expect("metrics"),
        "karpenter_machines_created_total",
        "provisioner=\"default\"",
    );
    assert!(
        created.is_some_and(|n| n >= 1.0),
        "the new leader created machines: {created:?}"
    );
    standby.stop().await;
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_node_gets_its_replacement_first_and_its_drain_respects_the_pdb() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use k8s_openapi::api::core::v1::Node;
    use kube::api::{Api, DeleteParams};

    let sim = Sim::start().await;
    sim.apply_provisioner(provisioner("default", json!({})))
        .await;
    sim.add_deployment("web", 2, "1").await;
    sim.unschedulable_pods(2).await;
    let controller = sim.controller();
    let running = sim.running_pods(2).await;
    let old_node = node_of(&running[0]).expect("bound");
    let old_instance = sim
        .nodes()
        .await
        .into_iter()
        .find(|n| n.metadata.name.as_deref() == Some(old_node.as_str()))
        .and_then(|n| n.spec?.provider_id)
        .expect("the node has a provider id");
    sim.add_pdb("web", 1).await;

    // Watch the number of running web pods from now on.
    let fewest = Arc::new(AtomicUsize::new(usize::MAX));
    let watcher = {
        let fewest = fewest.clone();
        let client = sim.client.clone();
        tokio::spawn(async move {
            let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::default_namespaced(client);
            loop {
                if let Ok(list) = pods.list(&Default::default()).await {
                    let ready = list
                        .items
                        .iter()
                        .filter(|p| {
                            support::phase(p) == "Running"
                                && p.metadata.deletion_timestamp.is_none()
                        })
                        .count();
                    fewest.fetch_min(ready, Ordering::SeqCst);
                }
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
        })
    };

    let nodes: Api<Node> = Api::all(sim.client.clone());
    nodes
        .delete(&old_node, &DeleteParams::default())
        .await
        .expect("the node is marked for deletion");
    sim.eventually("a replacement machine is created", || async {
        (sim.machines().await.len() >= 2).then_some(())
    })
    .await;
    assert!(
        sim.nodes()
            .await
            .iter()
            .any(|n| n.metadata.name.as_deref() == Some(old_node.as_str())),
        "the replacement is launched while the old node still exists"
    );
    sim.eventually(
        "the old node is gone and both pods run elsewhere",
        || async {
            let gone = !sim
                .nodes()
                .await
                .iter()
                .any(|n| n.metadata.name.as_deref() == Some(old_node.as_str()));
            let elsewhere = sim
                .pods()
                .await
                .iter()
                .filter(|p| {
                    support::phase(p) == "Running" && node_of(p).is_some_and(|n| n != old_node)
                })
                .count();
            (gone && elsewhere == 2).then_some(())
        },
    )
    .await;
    watcher.abort();
    assert!(
        fewest.load(Ordering::SeqCst) >= 1,
        "the PDB (minAvailable 1) was never broken"
    );
    // One replacement usually, two when the drain's first eviction beat the replacement's
    // batch (its pod then waits apart): either way the old instance is gone.
    assert!(
        !sim.instances()
            .await
            .iter()
            .any(|i| i.provider_id == old_instance),
        "the old instance is terminated"
    );
    controller.stop().await;
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_launched_behind_the_controllers_back_is_collected() {
    use nodewright::cloudprovider::{CloudProvider, LaunchRequest};

    let sim = Sim::start().await;
    let leaked = sim
        .cloud
        .create(&LaunchRequest {
            machine_name: "launched-by-hand".to_string(),
            machine_uid: "no-machine-has-this-uid".to_string(),
            provisioner_name: "default".to_string(),
            instance_types: vec!["m5.large".to_string()],
            ..LaunchRequest::default()
        })
        .await
        .expect("the fake cloud launches it");
    let controller = sim.controller();
    sim.eventually("the leaked instance is terminated", || async {
        let live = sim.instances().await;
        (!live.iter().any(|i| i.instance_id == leaked.instance_id)).then_some(())
    })
    .await;
    let collected = sim
        .metric(
            &controller.metrics,
            "karpenter_machines_terminated_total",
            "reason=\"garbage_collection\"",
        )
        .await;
    assert_eq!(collected, 1.0);
    controller.stop().await;
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_controller_killed_mid_drain_resumes_it_and_the_finalizer_holds_the_node() {
    use k8s_openapi::api::core::v1::Node;
    use k8s_openapi::api::policy::v1::PodDisruptionBudget;
    use kube::api::{Api, DeleteParams, Patch, PatchParams};

    let sim = Sim::start().await;
    sim.apply_provisioner(provisioner("default", json!({})))
        .await;
    sim.add_deployment("web", 2, "1").await;
    sim.unschedulable_pods(2).await;
    let first = sim.controller();
    let running = sim.running_pods(2).await;
    let old_node = node_of(&running[0]).expect("bound");
    let old_instance = sim.instances().await[0].instance_id.clone();
    // No pod may go: the drain stalls.
    sim.add_pdb("web", 2).await;
    let nodes: Api<Node> = Api::all(sim.client.clone());
    nodes
        .delete(&old_node, &DeleteParams::default())
        .await
        .expect("the node is marked for deletion");
    sim.eventually("the node is cordoned", || async {
        let node = nodes.get(&old_node).await.ok()?;
        node.spec?.unschedulable.filter(|u| *u)
    })
    .await;
    sim.wait(std::time::Duration::from_secs(30)).await;
    first.kill();
    sim.wait(std::time::Duration::from_secs(60)).await;
    let held = nodes
        .get(&old_node)
        .await
        .expect("the finalizer holds the node");
    assert!(held.metadata.deletion_timestamp.is_some());
    assert!(
        sim.instances()
            .await
            .iter()
            .any(|i| i.instance_id == old_instance),
        "the instance runs until the node is drained"
    );
    // The budget relaxes and a new controller takes over the drain.
    let pdbs: Api<PodDisruptionBudget> = Api::default_namespaced(sim.client.clone());
    pdbs.patch(
        "web",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"minAvailable": 1}})),
    )
    .await
    .expect("the PDB is relaxed");
    let second = sim.controller();
    sim.eventually("the drain resumes and the node goes", || async {
        nodes.get_opt(&old_node).await.ok()?.is_none().then_some(())
    })
    .await;
    assert!(
        !sim.instances()
            .await
            .iter()
            .any(|i| i.instance_id == old_instance),
        "its instance is terminated"
    );
    sim.eventually("both pods run elsewhere", || async {
        let elsewhere = sim
            .pods()
            .await
            .iter()
            .filter(|p| support::phase(p) == "Running" && node_of(p).is_some_and(|n| n != old_node))
            .count();
        (elsewhere == 2).then_some(())
    })
    .await;
    second.stop().await;
    sim.stop().await;
}

fn bind_pods() -> nodewright::settings::Settings {
    let mut settings = support::settings();
    settings.bind_pods = true;
    settings
}

fn is_ready(node: &k8s_openapi::api::core::v1::Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_bind_pods_the_pods_are_bound_to_their_node_before_it_is_ready() {
    // No kubelet yet: the instance boots for as long as the test looks.
    let mut sim = Sim::without_kubelets().await;
    sim.apply_provisioner(provisioner("default", json!({})))
        .await;
    sim.add_deployment("inflate", 4, "1").await;
    sim.unschedulable_pods(4).await;
    let controller = sim.controller_with_settings(bind_pods());
    let node = sim
        .eventually("the four pods are bound early", || async {
            let pods = sim.pods().await;
            let nodes: std::collections::BTreeSet<String> =
                pods.iter().filter_map(node_of).collect();
            (pods.len() == 4 && pods.iter().all(|p| node_of(p).is_some()) && nodes.len() == 1)
                .then(|| nodes.into_iter().next().unwrap_or_default())
        })
        .await;
    let early = sim
        .nodes()
        .await
        .into_iter()
        .find(|n| n.metadata.name.as_deref() == Some(node.as_str()))
        .expect("the node object exists");
    assert!(!is_ready(&early), "bound while its instance still boots");
    assert!(
        early
            .spec
            .and_then(|s| s.taints)
            .unwrap_or_default()
            .iter()
            .any(|t| t.key == labels::TAINT_NOT_READY),
        "tainted not-ready until the kubelet takes over"
    );
    // The instance finishes booting: its kubelet adopts the node the pods were bound to.
    sim.start_kubelets();
    let running = sim.running_pods(4).await;
    assert!(
        running
            .iter()
            .all(|p| node_of(p).as_deref() == Some(node.as_str()))
    );
    let adopted = sim
        .nodes()
        .await
        .into_iter()
        .find(|n| n.metadata.name.as_deref() == Some(node.as_str()))
        .expect("the kubelet adopted the node");
    assert!(is_ready(&adopted));
    assert_eq!(
        label(&adopted, labels::PROVISIONER_NAME).as_deref(),
        Some("default"),
        "labels kept"
    );
    assert_eq!(sim.instances().await.len(), 1);
    controller.stop().await;
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_bound_early_to_a_node_that_never_comes_are_recreated_elsewhere() {
    let mut sim = Sim::without_kubelets().await;
    sim.apply_provisioner(provisioner("default", json!({})))
        .await;
    sim.add_deployment("web", 2, "1").await;
    sim.unschedulable_pods(2).await;
    let controller = sim.controller_with_settings(bind_pods());
    let doomed = sim
        .eventually("the pods are bound early", || async {
            let pods = sim.pods().await;
            (pods.len() == 2 && pods.iter().all(|p| node_of(p).is_some()))
                .then(|| node_of(&pods[0]).unwrap_or_default())
        })
        .await;
    // The instance dies before its kubelet ever starts; the replacement's will.
    for instance in sim.instances().await {
        sim.cloud.reclaim(&instance.instance_id);
    }
    sim.start_kubelets();
    sim.eventually("both pods run on another node", || async {
        let pods = sim.pods().await;
        let elsewhere = pods
            .iter()
            .filter(|p| support::phase(p) == "Running" && node_of(p).is_some_and(|n| n != doomed))
            .count();
        (elsewhere == 2).then_some(())
    })
    .await;
    sim.eventually("the node that never came is gone", || async {
        (!sim
            .nodes()
            .await
            .iter()
            .any(|n| n.metadata.name.as_deref() == Some(doomed.as_str())))
        .then_some(())
    })
    .await;
    let events = sim
        .eventually("the deleted pods say why", || async {
            let events: kube::Api<k8s_openapi::api::core::v1::Event> =
                kube::Api::all(sim.client.clone());
            let list = events.list(&Default::default()).await.ok()?;
            let why: Vec<String> = list
                .items
                .into_iter()
                .filter(|e| e.reason.as_deref() == Some("NodeNeverRegistered"))
                .filter_map(|e| e.message)
                .collect();
            (why.len() == 2).then_some(why)
        })
        .await;
    assert!(events.iter().all(|m| m.contains(&doomed)), "{events:?}");
    controller.stop().await;
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bare_pods_are_not_bound_early() {
    let sim = Sim::start().await;
    let controller = sim.controller_with_settings(bind_pods());
    sim.apply_provisioner(provisioner("default", json!({})))
        .await;
    sim.add_pods("bare", 2, "1", json!({})).await;
    // Whenever a bare pod is bound, its node is already Ready: the kube-scheduler bound it.
    let bound_to_ready = sim
        .eventually("the bare pods are bound", || async {
            let pods = sim.pods().await;
            if !pods.iter().all(|p| node_of(p).is_some()) {
                return None;
            }
            let nodes = sim.nodes().await;
            Some(pods.iter().all(|p| {
                nodes
                    .iter()
                    .any(|n| n.metadata.name == node_of(p) && is_ready(n))
            }))
        })
        .await;
    assert!(bound_to_ready);
    assert!(
        sim.nodes()
            .await
            .iter()
            .all(|n| !n.annotations().contains_key(labels::BOUND_EARLY)),
        "no node object was created ahead of its kubelet"
    );
    controller.stop().await;
    sim.stop().await;
}
