//! The controller keeps its promises through faults: a refused API call, lost watches, a crash
//! mid-launch or mid-drain, a leader that stops, an instance nobody recorded.

use nodewright::controllers::context::USER_AGENT;
use nodewright::sim::{ApiServerConfig, RequestRecord};
use serde_json::json;

use crate::support::{self, Sim, node_of, provisioner};

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
    pods_created_while_the_controllers_pod_watch_is_refused_run_on_one_node(&sim).await;
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_watch_that_comes_back_after_its_history_is_gone_relists_and_provisions() {
    // A history shorter than the burst's changes: the controller's resume answers 410 Gone.
    let sim = Sim::start_on(ApiServerConfig {
        event_history: 4,
        ..ApiServerConfig::default()
    })
    .await;
    pods_created_while_the_controllers_pod_watch_is_refused_run_on_one_node(&sim).await;
    let controller_lists = |requests: &[RequestRecord]| {
        requests
            .iter()
            .filter(|r| r.user_agent.as_deref() == Some(USER_AGENT))
            .filter(|r| r.verb == "list" && r.resource == "pods")
            .count()
    };
    assert!(
        controller_lists(&sim.server.requests()) >= 2,
        "the controller listed its pods again"
    );
    sim.stop().await;
}

/// Ends every watch and refuses the controller's pod watches until a burst of four pods waits
/// (the simulated scheduler keeps its watches); then the four run on one node.
async fn pods_created_while_the_controllers_pod_watch_is_refused_run_on_one_node(sim: &Sim) {
    sim.apply_provisioner(provisioner("default", json!({})))
        .await;
    let controller = sim.controller();
    sim.eventually("the controller runs", || async {
        controller.is_running().then_some(())
    })
    .await;
    sim.server
        .fail_requests_from(USER_AGENT, "watch", "pods", usize::MAX);
    sim.server.end_watches();
    sim.add_pods("inflate", 4, "1", json!({})).await;
    sim.unschedulable_pods(4).await;
    sim.eventually("the controller's pod watch is refused", || async {
        controller_pod_watch_refused(sim).then_some(())
    })
    .await;
    sim.server.clear_faults();

    let running = sim.running_pods(4).await;
    let nodes: std::collections::BTreeSet<String> = running.iter().filter_map(node_of).collect();
    assert_eq!(nodes.len(), 1, "one batch, one node: {nodes:?}");
    controller.stop().await;
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
            "karpenter_machines_created",
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
        "karpenter_machines_created",
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
            "karpenter_machines_terminated",
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

/// A launch no retry can fix does not hold the pods behind it until the launch TTL: the
/// machine goes at once, with an Event saying why, and the next batch launches for its pods.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_machine_that_can_never_launch_is_deleted_at_once_and_its_pods_launch_again() {
    use k8s_openapi::api::core::v1::Event;
    use kube::api::Api;
    use nodewright::cloudprovider::fake::FakeCall;

    let sim = Sim::start().await;
    sim.apply_provisioner(provisioner("default", json!({})))
        .await;
    sim.cloud.fail_next_invalid(
        FakeCall::Create,
        "none of the instance types [c6i.large] is offered",
    );
    sim.add_pods("inflate", 1, "1", json!({})).await;
    sim.unschedulable_pods(1).await;
    let controller = sim.controller();

    let running = sim.running_pods(1).await;
    assert!(node_of(&running[0]).is_some());
    let events: Api<Event> = Api::all(sim.client.clone());
    let failed: Vec<String> = events
        .list(&Default::default())
        .await
        .expect("events list")
        .items
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some("LaunchFailed"))
        .inspect(|e| {
            assert!(
                e.message
                    .as_deref()
                    .unwrap_or_default()
                    .contains("is offered"),
                "the Event says why: {e:?}"
            )
        })
        .filter_map(|e| e.involved_object.name)
        .collect();
    assert_eq!(failed.len(), 1, "one machine failed to launch: {failed:?}");
    // Its finalizer may still be coming off when the pod runs; no other machine may appear.
    let machines = sim
        .eventually("only the machine that launched is left", || async {
            let machines = sim.machines().await;
            (machines.len() == 1).then_some(machines)
        })
        .await;
    assert_ne!(
        machines[0].metadata.name.as_ref(),
        Some(&failed[0]),
        "the machine that could not launch was deleted, not retried"
    );
    let terminated = sim
        .metric(
            &controller.metrics,
            "karpenter_machines_terminated",
            "reason=\"launch_failed\"",
        )
        .await;
    assert_eq!(terminated, 1.0);
    controller.stop().await;
    sim.stop().await;
}

/// A launch whose cloud call never answers (a hung connection) is cut off at its deadline and
/// tried again, so the pods behind it still get a node instead of waiting forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_launch_that_never_answers_is_cut_off_and_tried_again() {
    let sim = Sim::start().await;
    sim.apply_provisioner(provisioner("default", json!({})))
        .await;
    sim.cloud.hang_next_creates(1);
    sim.add_pods("inflate", 1, "1", json!({})).await;
    sim.unschedulable_pods(1).await;
    let controller = sim.controller();

    let running = sim.running_pods(1).await;
    assert!(node_of(&running[0]).is_some());
    let timed_out = sim
        .metric(
            &controller.metrics,
            "karpenter_cloudprovider_errors_total",
            "method=\"Create\"",
        )
        .await;
    assert_eq!(timed_out, 1.0, "the hung call counts as one failed call");
    assert_eq!(
        controller
            .metrics
            .controller_errors("machine.lifecycle", "cloud_retryable"),
        1,
        "the failed launch is counted by kind"
    );
    controller.stop().await;
    sim.stop().await;
}

/// A node template's status says what its selectors resolved to, as Karpenter writes it, and
/// launch templates left unused are looked for on a timer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_templates_status_lists_its_subnets_security_groups_and_images() {
    use kube::api::{Api, PostParams};
    use nodewright::apis::AwsNodeTemplate;

    let sim = Sim::start().await;
    let template: AwsNodeTemplate = serde_json::from_value(json!({
        "apiVersion": "karpenter.k8s.aws/v1alpha1", "kind": "AWSNodeTemplate",
        "metadata": {"name": "default"},
        "spec": {
            "subnetSelector": {"karpenter.sh/discovery": "sim"},
            "securityGroupSelector": {"karpenter.sh/discovery": "sim"}
        }
    }))
    .expect("a node template");
    let api: Api<AwsNodeTemplate> = Api::all(sim.client.clone());
    api.create(&PostParams::default(), &template)
        .await
        .expect("the node template is created");
    let controller = sim.controller();

    let status = sim
        .eventually("the template's status is written", || async {
            api.get("default").await.ok()?.status
        })
        .await;
    let zones: Vec<&str> = status.subnets.iter().map(|s| s.zone.as_str()).collect();
    assert!(zones.contains(&"us-east-1a"), "{zones:?}");
    assert!(!status.security_groups.is_empty());
    assert!(
        status.amis.iter().any(|ami| ami
            .requirements
            .iter()
            .any(|r| r.key == "kubernetes.io/arch")),
        "each image says which instance types it serves: {:?}",
        status.amis
    );
    assert!(
        sim.cloud.cleanups() >= 1,
        "unused launch templates were looked for"
    );
    controller.stop().await;
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_left_pending_for_want_of_capacity_launches_once_the_offerings_come_back() {
    use nodewright_scheduling::instance_type::CapacityType;

    let sim = Sim::start().await;
    sim.apply_provisioner(provisioner(
        "default",
        json!({"requirements": [
            {"key": "karpenter.sh/capacity-type", "operator": "In", "values": ["on-demand"]},
            {"key": "node.kubernetes.io/instance-type", "operator": "In", "values": ["c5.large"]},
        ]}),
    ))
    .await;
    for zone in ["a", "b", "c", "d", "e", "f"] {
        sim.cloud.set_no_capacity(
            "c5.large",
            &format!("us-east-1{zone}"),
            CapacityType::OnDemand,
        );
    }
    sim.add_deployment("web", 1, "1").await;
    sim.unschedulable_pods(1).await;
    let controller = sim.controller();
    sim.eventually("the offerings are held out", || async {
        let unavailable = sim.cloud.unavailable_offerings();
        ["a", "b", "c", "d", "e", "f"]
            .iter()
            .any(|zone| {
                unavailable.is_unavailable(
                    "c5.large",
                    &format!("us-east-1{zone}"),
                    CapacityType::OnDemand,
                )
            })
            .then_some(())
    })
    .await;
    // EC2 has capacity again; nothing in the cluster changes. Once the hold-out (3 min) passes,
    // the waiting pod is planned again and launched.
    sim.cloud.clear_no_capacity();
    let running = sim.running_pods(1).await;
    assert!(node_of(&running[0]).is_some());
    controller.stop().await;
    sim.stop().await;
}
