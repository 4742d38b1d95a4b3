use std::time::{Duration, UNIX_EPOCH};

use serde_json::json;

use super::*;

/// An event as EventBridge delivers it to an SQS target.
fn event(source: &str, detail_type: &str, detail: Value) -> String {
    json!({
        "version": "0",
        "id": "7bf73129-1428-4cd3-a780-95db273d1602",
        "detail-type": detail_type,
        "source": source,
        "account": "123456789012",
        "time": "2023-11-14T22:13:20Z",
        "region": "us-east-1",
        "resources": ["arn:aws:ec2:us-east-1:123456789012:instance/i-0123456789abcdef0"],
        "detail": detail,
    })
    .to_string()
}

fn parsed(body: &str) -> Message {
    parse(Some(body)).expect("parses")
}

#[test]
fn a_spot_interruption_warning_names_its_instance_and_time() {
    let message = parsed(&event(
        SOURCE_EC2,
        SPOT_INTERRUPTION,
        json!({"instance-id": "i-0123456789abcdef0", "instance-action": "terminate"}),
    ));
    assert_eq!(message.kind, MessageKind::SpotInterruption);
    assert_eq!(message.instance_ids, vec!["i-0123456789abcdef0"]);
    assert_eq!(message.id, "7bf73129-1428-4cd3-a780-95db273d1602");
    assert_eq!(
        message.time,
        Some(UNIX_EPOCH + Duration::from_secs(1_700_000_000))
    );
    assert_eq!(message.kind.label(), "SpotInterruptionKind");
}

#[test]
fn a_rebalance_recommendation_names_its_instance() {
    let message = parsed(&event(
        SOURCE_EC2,
        REBALANCE_RECOMMENDATION,
        json!({"instance-id": "i-0aaa"}),
    ));
    assert_eq!(message.kind, MessageKind::RebalanceRecommendation);
    assert_eq!(message.instance_ids, vec!["i-0aaa"]);
}

#[test]
fn every_state_that_ends_the_instance_is_a_state_change() {
    for state in ["stopping", "stopped", "shutting-down", "terminated"] {
        let message = parsed(&event(
            SOURCE_EC2,
            STATE_CHANGE,
            json!({"instance-id": "i-0bbb", "state": state}),
        ));
        assert_eq!(
            message.kind,
            MessageKind::StateChange {
                state: state.to_string()
            }
        );
        assert_eq!(message.instance_ids, vec!["i-0bbb"]);
    }
}

#[test]
fn pending_and_running_are_no_ops() {
    for state in ["pending", "running"] {
        let message = parsed(&event(
            SOURCE_EC2,
            STATE_CHANGE,
            json!({"instance-id": "i-0bbb", "state": state}),
        ));
        assert_eq!(message.kind.label(), "NoOpKind", "{state}");
    }
}

#[test]
fn a_scheduled_ec2_health_event_names_the_affected_instances() {
    let message = parsed(&event(
        SOURCE_HEALTH,
        HEALTH_EVENT,
        json!({
            "eventArn": "arn:aws:health:us-east-1::event/EC2/AWS_EC2_INSTANCE_RETIREMENT_SCHEDULED/x",
            "service": "EC2",
            "eventTypeCode": "AWS_EC2_INSTANCE_RETIREMENT_SCHEDULED",
            "eventTypeCategory": "scheduledChange",
            "startTime": "Tue, 14 Nov 2023 22:13:20 GMT",
            "eventDescription": [{"language": "en_US", "latestDescription": "retiring"}],
            "affectedEntities": [
                {"entityValue": "i-0ccc"},
                {"entityValue": "vol-0123"},
                {"entityValue": "i-0ddd"}
            ]
        }),
    ));
    assert_eq!(message.kind, MessageKind::ScheduledChange);
    assert_eq!(message.instance_ids, vec!["i-0ccc", "i-0ddd"]);
}

#[test]
fn other_health_events_are_no_ops() {
    for (service, category) in [("EC2", "issue"), ("RDS", "scheduledChange")] {
        let message = parsed(&event(
            SOURCE_HEALTH,
            HEALTH_EVENT,
            json!({"service": service, "eventTypeCategory": category,
                   "affectedEntities": [{"entityValue": "i-0ccc"}]}),
        ));
        assert_eq!(message.kind.label(), "NoOpKind", "{service} {category}");
        assert!(message.instance_ids.is_empty());
    }
}

#[test]
fn unknown_event_types_and_sources_are_no_ops() {
    let other = parsed(&event(
        SOURCE_EC2,
        "EC2 AMI State Change",
        json!({"ImageId": "ami-1"}),
    ));
    assert_eq!(
        other.kind,
        MessageKind::NoOp {
            detail_type: "EC2 AMI State Change".to_string()
        }
    );
    // The right detail-type from another source is not EC2's warning.
    let spoofed = parsed(&event(
        "my.app",
        SPOT_INTERRUPTION,
        json!({"instance-id": "i-0aaa"}),
    ));
    assert_eq!(spoofed.kind.label(), "NoOpKind");
}

#[test]
fn a_body_that_is_not_an_event_is_malformed() {
    for body in ["", "not json", "{}", r#"{"detail-type": "x"}"#, "[1, 2]"] {
        assert!(
            matches!(parse(Some(body)), Err(ParseError::NotAnEvent(_))),
            "{body:?}"
        );
    }
    assert_eq!(parse(None), Err(ParseError::NoBody));
}

#[test]
fn a_known_event_without_its_instance_is_malformed() {
    let error =
        parse(Some(&event(SOURCE_EC2, SPOT_INTERRUPTION, json!({})))).expect_err("no instance id");
    assert!(error.to_string().contains("detail.instance-id"), "{error}");
    let error = parse(Some(&event(
        SOURCE_EC2,
        STATE_CHANGE,
        json!({"instance-id": "i-0aaa"}),
    )))
    .expect_err("no state");
    assert!(error.to_string().contains("detail.state"), "{error}");
}

#[test]
fn an_unreadable_time_leaves_the_event_usable() {
    let body = event(
        SOURCE_EC2,
        REBALANCE_RECOMMENDATION,
        json!({"instance-id": "i-0aaa"}),
    )
    .replace("2023-11-14T22:13:20Z", "yesterday");
    let message = parsed(&body);
    assert_eq!(message.time, None);
    assert_eq!(message.instance_ids, vec!["i-0aaa"]);
}
