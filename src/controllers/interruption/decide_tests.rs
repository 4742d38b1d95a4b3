use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::*;

/// The steps with the default settings (a rebalance recommendation only records an Event).
fn decide(message: &Message, find: impl Fn(&str) -> Option<Target>) -> Vec<Step> {
    super::decide(message, RebalanceAction::Event, find)
}

fn message(kind: MessageKind, instances: &[&str]) -> Message {
    Message {
        kind,
        id: "event-1".to_string(),
        instance_ids: instances.iter().map(|i| i.to_string()).collect(),
        time: None,
    }
}

fn spot_node(name: &str, deleting: bool) -> Target {
    let labels: BTreeMap<String, String> = [
        (labels::INSTANCE_TYPE, "m5.large"),
        (labels::ZONE, "us-east-1b"),
        (labels::CAPACITY_TYPE, labels::CAPACITY_TYPE_SPOT),
        (labels::PROVISIONER_NAME, "default"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    Target {
        node: Some(Node {
            metadata: ObjectMeta {
                name: Some(name.to_string()),
                labels: Some(labels.clone()),
                ..ObjectMeta::default()
            },
            ..Node::default()
        }),
        machine: None,
        deleting,
        labels,
    }
}

fn only(target: Target) -> impl Fn(&str) -> Option<Target> {
    move |id| (id == "i-0aaa").then(|| target.clone())
}

#[test]
fn a_spot_interruption_drains_the_node_and_holds_its_offering_out() {
    let steps = decide(
        &message(MessageKind::SpotInterruption, &["i-0aaa"]),
        only(spot_node("ip-1", false)),
    );
    assert_eq!(steps.len(), 1);
    let step = &steps[0];
    assert_eq!(step.action, Action::CordonAndDrain);
    assert!(step.delete);
    assert_eq!(
        step.hold_out,
        Some(Offering {
            instance_type: "m5.large".to_string(),
            zone: "us-east-1b".to_string()
        })
    );
    let notice = step.notice.as_ref().expect("an event");
    assert_eq!(notice.reason, "SpotInterrupted");
    assert!(notice.warning);
}

#[test]
fn scheduled_changes_and_ending_states_drain_without_holding_out() {
    for kind in [
        MessageKind::ScheduledChange,
        MessageKind::StateChange {
            state: "stopping".to_string(),
        },
        MessageKind::StateChange {
            state: "terminated".to_string(),
        },
    ] {
        let steps = decide(
            &message(kind.clone(), &["i-0aaa"]),
            only(spot_node("ip-1", false)),
        );
        assert_eq!(steps[0].action, Action::CordonAndDrain, "{kind:?}");
        assert!(steps[0].delete, "{kind:?}");
        assert_eq!(steps[0].hold_out, None, "{kind:?}");
    }
    let stopping = decide(
        &message(
            MessageKind::StateChange {
                state: "stopped".to_string(),
            },
            &["i-0aaa"],
        ),
        only(spot_node("ip-1", false)),
    );
    assert_eq!(
        stopping[0].notice.as_ref().map(|n| n.reason),
        Some("InstanceStopping")
    );
    let terminating = decide(
        &message(
            MessageKind::StateChange {
                state: "shutting-down".to_string(),
            },
            &["i-0aaa"],
        ),
        only(spot_node("ip-1", false)),
    );
    assert_eq!(
        terminating[0].notice.as_ref().map(|n| n.reason),
        Some("InstanceTerminating")
    );
}

#[test]
fn a_rebalance_recommendation_only_records_an_event() {
    let steps = decide(
        &message(MessageKind::RebalanceRecommendation, &["i-0aaa"]),
        only(spot_node("ip-1", false)),
    );
    assert_eq!(steps[0].action, Action::EventOnly);
    assert!(!steps[0].delete);
    assert_eq!(steps[0].hold_out, None);
    let notice = steps[0].notice.as_ref().expect("an event");
    assert_eq!(notice.reason, "SpotRebalanceRecommendation");
    assert!(!notice.warning);
}

#[test]
fn with_rebalance_drain_a_recommendation_drains_the_node_and_holds_its_offering_out() {
    let steps = super::decide(
        &message(MessageKind::RebalanceRecommendation, &["i-0aaa"]),
        RebalanceAction::Drain,
        only(spot_node("ip-1", false)),
    );
    assert_eq!(steps[0].action, Action::CordonAndDrain);
    assert!(steps[0].delete);
    assert_eq!(
        steps[0].hold_out,
        Some(Offering {
            instance_type: "m5.large".to_string(),
            zone: "us-east-1b".to_string(),
        })
    );
    assert_eq!(
        steps[0].notice.as_ref().map(|n| n.reason),
        Some("SpotRebalanceRecommendation")
    );
}

#[test]
fn the_rebalance_setting_changes_nothing_else() {
    for kind in [
        MessageKind::SpotInterruption,
        MessageKind::ScheduledChange,
        MessageKind::StateChange {
            state: "stopping".to_string(),
        },
        MessageKind::NoOp {
            detail_type: "Other".to_string(),
        },
    ] {
        let steps = |rebalance| {
            super::decide(
                &message(kind.clone(), &["i-0aaa"]),
                rebalance,
                only(spot_node("ip-1", false)),
            )
        };
        assert_eq!(
            steps(RebalanceAction::Event),
            steps(RebalanceAction::Drain),
            "{kind:?}"
        );
    }
}

#[test]
fn an_unknown_instance_is_ignored() {
    let steps = decide(
        &message(MessageKind::SpotInterruption, &["i-0zzz"]),
        only(spot_node("ip-1", false)),
    );
    assert_eq!(steps[0].target, None);
    assert_eq!(steps[0].action, Action::Ignore);
    assert!(!steps[0].delete);
    assert_eq!(steps[0].notice, None);
    assert_eq!(steps[0].hold_out, None);
}

#[test]
fn a_node_already_deleting_is_not_deleted_again() {
    let steps = decide(
        &message(MessageKind::SpotInterruption, &["i-0aaa"]),
        only(spot_node("ip-1", true)),
    );
    assert_eq!(steps[0].action, Action::CordonAndDrain);
    assert!(!steps[0].delete);
    // Its offering is still held out: the next launch must not land there.
    assert!(steps[0].hold_out.is_some());
}

#[test]
fn an_on_demand_node_has_no_spot_offering_to_hold_out() {
    let mut target = spot_node("ip-1", false);
    target.labels.insert(
        labels::CAPACITY_TYPE.to_string(),
        labels::CAPACITY_TYPE_ON_DEMAND.to_string(),
    );
    let steps = decide(
        &message(MessageKind::SpotInterruption, &["i-0aaa"]),
        only(target),
    );
    assert!(steps[0].delete);
    assert_eq!(steps[0].hold_out, None);
}

#[test]
fn no_op_messages_do_nothing_even_for_known_instances() {
    let steps = decide(
        &message(
            MessageKind::NoOp {
                detail_type: "EC2 Instance State-change Notification".to_string(),
            },
            &["i-0aaa"],
        ),
        only(spot_node("ip-1", false)),
    );
    assert_eq!(steps[0].action, Action::Ignore);
    assert_eq!(steps[0].notice, None);
    assert!(!steps[0].delete);
}

#[test]
fn a_health_event_for_several_instances_decides_each() {
    let steps = decide(
        &message(MessageKind::ScheduledChange, &["i-0aaa", "i-0zzz"]),
        only(spot_node("ip-1", false)),
    );
    assert_eq!(
        steps.iter().map(|s| s.action).collect::<Vec<_>>(),
        vec![Action::CordonAndDrain, Action::Ignore]
    );
}

#[test]
fn action_labels_are_karpenters() {
    assert_eq!(Action::CordonAndDrain.label(), Some("CordonAndDrain"));
    assert_eq!(Action::EventOnly.label(), Some("NoAction"));
    assert_eq!(Action::Ignore.label(), None);
}
