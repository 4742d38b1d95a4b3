//! Interruption handling end to end: EventBridge events in moto's SQS queue, the controller in
//! the simulated cluster (fake cloud, simulated kubelets, scheduler and deployment
//! controller), and what a user sees: nodes drained and replaced, Events, metrics, and the
//! queue emptied.

#[allow(dead_code)]
#[path = "controller/support.rs"]
mod support;

#[allow(dead_code)]
#[path = "aws/support/moto.rs"]
mod moto;

#[path = "interruption/harness.rs"]
mod harness;

#[path = "interruption/eventbridge.rs"]
mod eventbridge;

use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, Pod};
use nodewright::cloudprovider::Clock;
use nodewright::cloudprovider::aws::sqs::{InMemoryQueue, Queue};
use nodewright::controllers::context::USER_AGENT;
use nodewright::settings::{RebalanceAction, Settings};
use nodewright_scheduling::labels;
use serde_json::json;

use crate::harness::{
    InterruptionController, MotoQueue, NodeHistory, event, instance_of, is_cordoned, is_deleting,
    rebalance_recommendation, scheduled_change, spot_interruption, state_change,
};
use crate::support::{Sim, events_about, label, node_of, phase, provisioner, settings};

async fn node_named(sim: &Sim, name: &str) -> Option<Node> {
    sim.nodes()
        .await
        .into_iter()
        .find(|n| n.metadata.name.as_deref() == Some(name))
}

/// Pods running (and not being deleted) on nodes other than `old`.
fn running_elsewhere(pods: &[Pod], old: &str) -> usize {
    pods.iter()
        .filter(|p| phase(p) == "Running" && p.metadata.deletion_timestamp.is_none())
        .filter(|p| node_of(p).is_some_and(|n| n != old))
        .count()
}

/// One spot node running `replicas` pods of the `web` deployment, and a controller reading
/// `queue` started once they all wait (so they are one batch); returns both.
async fn one_node_running_web(
    sim: &Sim,
    replicas: i32,
    queue: Arc<dyn Queue>,
) -> (InterruptionController, Node) {
    one_node_running_web_with(sim, replicas, queue, settings()).await
}

/// [`one_node_running_web`] with the controller on `settings`.
async fn one_node_running_web_with(
    sim: &Sim,
    replicas: i32,
    queue: Arc<dyn Queue>,
    settings: Settings,
) -> (InterruptionController, Node) {
    sim.apply_provisioner(provisioner("default", json!({})))
        .await;
    sim.add_deployment("web", replicas, "1").await;
    sim.unschedulable_pods(replicas as usize).await;
    let controller = InterruptionController::start(sim, queue, settings);
    let running = sim.running_pods(replicas as usize).await;
    let name = node_of(&running[0]).expect("bound");
    assert!(
        running.iter().all(|p| node_of(p).as_deref() == Some(&name)),
        "the pods share one node"
    );
    let node = node_named(sim, &name).await.expect("the node exists");
    (controller, node)
}

async fn reasons_about(sim: &Sim, name: &str) -> Vec<String> {
    events_about(&sim.client, name)
        .await
        .into_iter()
        .map(|(reason, _)| reason)
        .collect()
}

/// Waits for an Event with `reason` on `name`: Events are written by a background task, after
/// the action they describe.
async fn event_about(sim: &Sim, name: &str, reason: &str) {
    sim.eventually(&format!("a {reason} Event on {name}"), || async {
        reasons_about(sim, name)
            .await
            .iter()
            .any(|r| r == reason)
            .then_some(())
    })
    .await
}

/// The value of `series` once it is counted: the loop counts after the change a test waits for
/// (a message is deleted after its node is; a node is counted after it is released).
async fn counted(sim: &Sim, controller: &InterruptionController, series: &str) -> f64 {
    sim.eventually(&format!("{series} is counted"), || async {
        Some(controller.sample(series)).filter(|v| *v > 0.0)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spot_interruption_replaces_the_node_before_draining_and_terminating_it() {
    let sim = Sim::start().await;
    let queue = MotoQueue::create("spot").await;
    let (controller, node) = one_node_running_web(&sim, 3, queue.sdk_queue(false)).await;
    // Two of three must stay up: the drain can only finish once pods run elsewhere.
    sim.add_pdb("web", 2).await;
    let old = node.metadata.name.clone().expect("named");
    let instance = instance_of(&node);
    let offering = (
        label(&node, labels::INSTANCE_TYPE).expect("instance type"),
        label(&node, labels::ZONE).expect("zone"),
    );
    assert_eq!(label(&node, labels::CAPACITY_TYPE).as_deref(), Some("spot"));
    let history = NodeHistory::watch(&sim, &old);

    queue
        .send(&spot_interruption(&instance, sim.clock.now()))
        .await;

    sim.eventually("a replacement machine is created", || async {
        (sim.machines().await.len() >= 2).then_some(())
    })
    .await;
    assert!(
        node_named(&sim, &old).await.is_some(),
        "the replacement is launched while the interrupted node still exists"
    );
    sim.eventually(
        "the interrupted node is gone and the three pods run elsewhere",
        || async {
            let gone = node_named(&sim, &old).await.is_none();
            (gone && running_elsewhere(&sim.pods().await, &old) == 3).then_some(())
        },
    )
    .await;

    assert!(
        history.was_cordoned_while_deleting(),
        "the node was cordoned"
    );
    assert!(history.was_annotated("karpenter.sh/disruption-reason", "interruption"));
    let instances = sim.instances().await;
    assert!(
        instances.iter().all(|i| i.instance_id != instance),
        "the interrupted instance is terminated"
    );
    // The interrupted offering was held out: the replacement went to another one, though the
    // same pods would otherwise get the same cheapest offering.
    assert!(!instances.is_empty());
    for replacement in &instances {
        assert_ne!(
            (replacement.instance_type.clone(), replacement.zone.clone()),
            offering,
            "the replacement avoids the interrupted spot offering"
        );
    }
    for reason in ["SpotInterrupted", "TerminatingOnInterruption"] {
        event_about(&sim, &old, reason).await;
    }
    assert_eq!(
        controller.sample(
            r#"karpenter_interruption_received_messages{message_type="SpotInterruptionKind"}"#
        ),
        1.0
    );
    assert_eq!(
        controller
            .sample(r#"karpenter_interruption_actions_performed{action_type="CordonAndDrain"}"#),
        1.0
    );
    assert_eq!(
        counted(&sim, &controller, "karpenter_interruption_deleted_messages").await,
        1.0
    );
    assert_eq!(
        controller.sample("karpenter_interruption_message_latency_time_seconds_count"),
        1.0
    );
    assert_eq!(
        counted(
            &sim,
            &controller,
            r#"karpenter_nodes_terminated{nodepool="",provisioner="default"}"#
        )
        .await,
        1.0
    );
    assert_eq!(controller.sample("nodewright_pods_evicted_total"), 3.0);
    sim.eventually("the message is deleted", || async {
        (queue.left().await == 0).then_some(())
    })
    .await;
    controller.stop().await;
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_changes_and_scheduled_changes_drain_the_node() {
    let sim = Sim::start().await;
    let queue = MotoQueue::create("state").await;
    let (controller, mut node) = one_node_running_web(&sim, 1, queue.sdk_queue(false)).await;
    let kinds = [
        ("stopping", "InstanceStopping"),
        ("stopped", "InstanceStopping"),
        ("shutting-down", "InstanceTerminating"),
        ("terminated", "InstanceTerminating"),
        ("scheduled change", "InstanceUnhealthy"),
    ];
    for (kind, reason) in kinds {
        let old = node.metadata.name.clone().expect("named");
        let instance = instance_of(&node);
        let now = sim.clock.now();
        let body = match kind {
            "scheduled change" => scheduled_change(&instance, now),
            state => state_change(&instance, state, now),
        };
        queue.send(&body).await;
        let moved = sim
            .eventually(
                &format!("after {kind}, the node is gone and the pod runs elsewhere"),
                || async {
                    let pods = sim.pods().await;
                    let gone = node_named(&sim, &old).await.is_none();
                    let elsewhere = pods.iter().find(|p| {
                        phase(p) == "Running"
                            && p.metadata.deletion_timestamp.is_none()
                            && node_of(p).is_some_and(|n| n != old)
                    });
                    elsewhere.filter(|_| gone).and_then(node_of)
                },
            )
            .await;
        event_about(&sim, &old, reason).await;
        assert!(
            sim.instances()
                .await
                .iter()
                .all(|i| i.instance_id != instance),
            "{kind}: the instance is terminated"
        );
        node = node_named(&sim, &moved).await.expect("the new node exists");
    }
    assert_eq!(
        controller
            .sample(r#"karpenter_interruption_received_messages{message_type="StateChangeKind"}"#),
        4.0
    );
    assert_eq!(
        controller.sample(
            r#"karpenter_interruption_received_messages{message_type="ScheduledChangeKind"}"#
        ),
        1.0
    );
    assert_eq!(
        controller
            .sample(r#"karpenter_interruption_actions_performed{action_type="CordonAndDrain"}"#),
        5.0
    );
    assert!(
        sim.cloud.unavailable_offerings().offerings().is_empty(),
        "only a spot interruption holds an offering out"
    );
    sim.eventually("the queue is empty", || async {
        (queue.left().await == 0).then_some(())
    })
    .await;
    controller.stop().await;
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebalance_recommendation_only_records_an_event() {
    let sim = Sim::start().await;
    let queue = MotoQueue::create("rebalance").await;
    let (controller, node) = one_node_running_web(&sim, 1, queue.sdk_queue(false)).await;
    let name = node.metadata.name.clone().expect("named");
    queue
        .send(&rebalance_recommendation(
            &instance_of(&node),
            sim.clock.now(),
        ))
        .await;

    sim.eventually("the message is handled and deleted", || async {
        (controller.sample("karpenter_interruption_deleted_messages") == 1.0).then_some(())
    })
    .await;
    sim.eventually("a rebalance Event on the node", || async {
        let reasons = reasons_about(&sim, &name).await;
        reasons
            .iter()
            .any(|r| r == "SpotRebalanceRecommendation")
            .then_some(())
    })
    .await;
    let node = node_named(&sim, &name).await.expect("the node stays");
    assert!(
        !is_deleting(&node) && !is_cordoned(&node),
        "the node is left alone"
    );
    assert_eq!(sim.machines().await.len(), 1, "nothing is replaced");
    assert_eq!(
        controller.sample(r#"karpenter_interruption_actions_performed{action_type="NoAction"}"#),
        1.0
    );
    assert!(sim.cloud.unavailable_offerings().offerings().is_empty());
    assert_eq!(queue.left().await, 0);
    controller.stop().await;
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_rebalance_drain_a_recommendation_moves_the_pods_off_the_pool_at_risk() {
    let sim = Sim::start().await;
    let queue = Arc::new(InMemoryQueue::new());
    let mut drain = settings();
    drain.rebalance_action = RebalanceAction::Drain;
    let (controller, node) = one_node_running_web_with(&sim, 2, queue.clone(), drain).await;
    let old = node.metadata.name.clone().expect("named");
    let instance = instance_of(&node);
    let offering = (
        label(&node, labels::INSTANCE_TYPE).expect("instance type"),
        label(&node, labels::ZONE).expect("zone"),
    );
    let history = NodeHistory::watch(&sim, &old);
    queue.send(Some(rebalance_recommendation(&instance, sim.clock.now())));

    sim.eventually("the node is gone and both pods run elsewhere", || async {
        let gone = node_named(&sim, &old).await.is_none();
        (gone && running_elsewhere(&sim.pods().await, &old) == 2).then_some(())
    })
    .await;
    assert!(history.was_annotated("karpenter.sh/disruption-reason", "interruption"));
    let instances = sim.instances().await;
    assert!(!instances.is_empty());
    for replacement in &instances {
        assert_ne!(replacement.instance_id, instance, "terminated");
        assert_ne!(
            (replacement.instance_type.clone(), replacement.zone.clone()),
            offering,
            "the replacement avoids the pool at risk"
        );
    }
    for reason in ["SpotRebalanceRecommendation", "TerminatingOnInterruption"] {
        event_about(&sim, &old, reason).await;
    }
    assert_eq!(
        controller
            .sample(r#"karpenter_interruption_actions_performed{action_type="CordonAndDrain"}"#),
        1.0
    );
    sim.eventually("the message is deleted", || async {
        queue.is_empty().then_some(())
    })
    .await;
    controller.stop().await;
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_instances_and_malformed_bodies_are_deleted_and_counted() {
    let sim = Sim::start().await;
    let queue = MotoQueue::create("malformed").await;
    // Addressed by name, as Karpenter's interruptionQueue setting is: the URL is looked up.
    let (controller, node) = one_node_running_web(&sim, 1, queue.sdk_queue(true)).await;
    let name = node.metadata.name.clone().expect("named");
    let now = sim.clock.now();
    let bodies = [
        spot_interruption("i-0000000000000dead", now),
        "not json".to_string(),
        "{}".to_string(),
        event(
            "aws.ec2",
            "EC2 Spot Instance Interruption Warning",
            now,
            json!({"instance-action": "terminate"}),
        ),
        // Understood, and nothing to do: another event type, and a state that keeps the node.
        event(
            "aws.ec2",
            "EC2 AMI State Change",
            now,
            json!({"ImageId": "ami-1"}),
        ),
        state_change(&instance_of(&node), "running", now),
    ];
    for body in &bodies {
        queue.send(body).await;
    }

    sim.eventually("every message is deleted", || async {
        (controller.sample("karpenter_interruption_deleted_messages") == bodies.len() as f64)
            .then_some(())
    })
    .await;
    let received = |kind: &str| {
        controller.sample(&format!(
            r#"karpenter_interruption_received_messages{{message_type="{kind}"}}"#
        ))
    };
    assert_eq!(received("MalformedKind"), 3.0);
    assert_eq!(received("SpotInterruptionKind"), 1.0);
    assert_eq!(received("NoOpKind"), 2.0);
    assert!(
        !controller.has_series("karpenter_interruption_actions_performed{"),
        "no action was taken"
    );
    let node = node_named(&sim, &name).await.expect("the node stays");
    assert!(!is_deleting(&node) && !is_cordoned(&node));
    assert_eq!(queue.left().await, 0);
    controller.stop().await;
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_loop_keeps_reading_after_the_queue_fails() {
    let sim = Sim::start().await;
    let queue = Arc::new(InMemoryQueue::new());
    queue.fail_next_receives(3);
    let (controller, node) = one_node_running_web(&sim, 1, queue.clone()).await;
    let name = node.metadata.name.clone().expect("named");
    let id = queue.send(Some(rebalance_recommendation(
        &instance_of(&node),
        sim.clock.now(),
    )));

    sim.eventually("the message is handled and deleted", || async {
        queue.deleted().contains(&id).then_some(())
    })
    .await;
    sim.eventually("a rebalance Event on the node", || async {
        reasons_about(&sim, &name)
            .await
            .iter()
            .any(|r| r == "SpotRebalanceRecommendation")
            .then_some(())
    })
    .await;
    assert!(queue.is_empty());
    controller.stop().await;
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_whose_action_failed_stays_queued_and_is_acted_on_when_it_comes_back() {
    let sim = Sim::start().await;
    let queue = Arc::new(InMemoryQueue::new());
    let (controller, node) = one_node_running_web(&sim, 1, queue.clone()).await;
    let name = node.metadata.name.clone().expect("named");
    sim.server
        .fail_requests_from(USER_AGENT, "delete", "nodes", 1);
    let id = queue.send(Some(state_change(
        &instance_of(&node),
        "terminated",
        sim.clock.now(),
    )));

    sim.eventually("the node delete fails", || async {
        sim.server
            .statuses("delete", "nodes")
            .contains(&500)
            .then_some(())
    })
    .await;
    // The loop was handling the message when the delete failed; once it looks at the queue
    // again, that handling is over.
    let looked = queue.looked();
    sim.eventually("the loop reads the queue again", || async {
        (queue.looked() > looked).then_some(())
    })
    .await;
    assert!(
        !queue.deleted().contains(&id),
        "a failed action keeps its message"
    );
    assert_eq!(
        queue.len(),
        1,
        "the message waits out its visibility timeout"
    );
    let kept = node_named(&sim, &name)
        .await
        .expect("the node is still there");
    assert!(!is_deleting(&kept));

    // Its visibility timeout passes: SQS delivers it again and this time the action succeeds.
    queue.redeliver();
    sim.eventually("the node is deleted on the second delivery", || async {
        node_named(&sim, &name)
            .await
            .is_none_or(|n| is_deleting(&n))
            .then_some(())
    })
    .await;
    sim.eventually("the message is deleted", || async {
        queue.deleted().contains(&id).then_some(())
    })
    .await;
    assert_eq!(
        controller
            .sample(r#"karpenter_interruption_received_messages{message_type="StateChangeKind"}"#),
        2.0,
        "received twice"
    );
    assert!(queue.is_empty());
    controller.stop().await;
    sim.stop().await;
}
