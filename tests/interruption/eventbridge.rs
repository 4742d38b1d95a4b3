//! The EventBridge template users deploy (docs/interruption-eventbridge.json) delivers every
//! event kind nodewright acts on to the queue, and nothing it would only throw away; the IAM
//! policy lets nodewright read and delete from that queue.

use std::time::SystemTime;

use serde_json::{Value, json};

use crate::harness::{
    event, rebalance_recommendation, scheduled_change, spot_interruption, state_change,
};

fn read_json(path: &str) -> Value {
    let path = format!("{}/{path}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn template() -> Value {
    read_json("docs/interruption-eventbridge.json")
}

/// EventBridge's matching for the pattern forms the template uses: each pattern key's value
/// is a list of accepted values, or a nested pattern for an object.
fn matches(pattern: &Value, event: &Value) -> bool {
    let Some(pattern) = pattern.as_object() else {
        return false;
    };
    pattern.iter().all(|(key, wanted)| {
        let actual = &event[key];
        match wanted {
            Value::Array(accepted) => accepted.contains(actual),
            Value::Object(_) => matches(wanted, actual),
            _ => false,
        }
    })
}

/// The rules whose pattern matches `body`.
fn rules_matching(template: &Value, body: &str) -> Vec<String> {
    let event: Value = serde_json::from_str(body).expect("an event body");
    template["Resources"]
        .as_object()
        .expect("resources")
        .iter()
        .filter(|(_, r)| r["Type"] == "AWS::Events::Rule")
        .filter(|(_, r)| matches(&r["Properties"]["EventPattern"], &event))
        .map(|(name, _)| name.clone())
        .collect()
}

fn queue_arn() -> Value {
    json!({"Fn::GetAtt": ["InterruptionQueue", "Arn"]})
}

#[test]
fn every_event_nodewright_acts_on_reaches_the_queue_through_one_rule() {
    let template = template();
    let now = SystemTime::now();
    let instance = "i-0123456789abcdef0";
    let mut bodies = vec![
        spot_interruption(instance, now),
        rebalance_recommendation(instance, now),
        scheduled_change(instance, now),
    ];
    for state in ["stopping", "stopped", "shutting-down", "terminated"] {
        bodies.push(state_change(instance, state, now));
    }
    for body in &bodies {
        let rules = rules_matching(&template, body);
        assert_eq!(rules.len(), 1, "{body} matches {rules:?}");
        let targets = &template["Resources"][&rules[0]]["Properties"]["Targets"];
        assert_eq!(
            targets[0]["Arn"],
            queue_arn(),
            "{} targets the queue",
            rules[0]
        );
    }
}

#[test]
fn events_nodewright_would_discard_are_not_sent() {
    let template = template();
    let now = SystemTime::now();
    let other_health = event(
        "aws.health",
        "AWS Health Event",
        now,
        json!({"service": "EC2", "eventTypeCategory": "issue"}),
    );
    for body in [
        state_change("i-0aaa", "running", now),
        state_change("i-0aaa", "pending", now),
        other_health,
    ] {
        assert_eq!(
            rules_matching(&template, &body),
            Vec::<String>::new(),
            "{body}"
        );
    }
}

#[test]
fn the_queue_takes_events_from_eventbridge_only_over_tls() {
    let template = template();
    let statements = template["Resources"]["InterruptionQueuePolicy"]["Properties"]
        ["PolicyDocument"]["Statement"]
        .as_array()
        .expect("statements")
        .clone();
    assert!(statements.iter().any(|s| {
        s["Effect"] == "Allow"
            && s["Action"] == "sqs:SendMessage"
            && s["Principal"]["Service"]
                .as_array()
                .is_some_and(|p| p.contains(&json!("events.amazonaws.com")))
            && s["Resource"] == queue_arn()
    }));
    assert!(statements.iter().any(|s| {
        s["Effect"] == "Deny" && s["Condition"]["Bool"]["aws:SecureTransport"] == "false"
    }));
}

#[test]
fn the_iam_policy_lets_nodewright_use_the_queue_the_template_creates() {
    let template = template();
    assert_eq!(
        template["Resources"]["InterruptionQueue"]["Properties"]["QueueName"],
        json!({"Ref": "ClusterName"}),
        "the queue is named after the cluster, as the IAM policy's resource says"
    );
    let policy = read_json("docs/iam-policy.json");
    let statements = policy["Statement"].as_array().expect("statements");
    for action in ["sqs:GetQueueUrl", "sqs:ReceiveMessage", "sqs:DeleteMessage"] {
        assert!(
            statements.iter().any(|s| {
                s["Effect"] == "Allow"
                    && s["Action"]
                        .as_array()
                        .is_some_and(|a| a.contains(&json!(action)))
                    && s["Resource"].as_str().is_some_and(|r| {
                        r.ends_with(":sqs:${AWS_REGION}:${AWS_ACCOUNT_ID}:${CLUSTER_NAME}")
                    })
            }),
            "{action} on the cluster's queue"
        );
    }
}
