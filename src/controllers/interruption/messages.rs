//! EventBridge events as they arrive in the interruption queue, parsed into a [`Message`].
//!
//! Four kinds matter (matched on `source` and `detail-type`, as Karpenter does):
//! - `aws.ec2` "EC2 Spot Instance Interruption Warning": `detail.instance-id`;
//! - `aws.ec2` "EC2 Instance Rebalance Recommendation": `detail.instance-id`;
//! - `aws.ec2` "EC2 Instance State-change Notification": `detail.instance-id`, `detail.state`
//!   (only stopping, stopped, shutting-down and terminated matter);
//! - `aws.health` "AWS Health Event": EC2 `scheduledChange` events, the instances in
//!   `detail.affectedEntities[].entityValue`.
//!
//! Anything else that is still an EventBridge event is a [`MessageKind::NoOp`]; a body that is
//! not one at all is a [`ParseError`].

use std::time::SystemTime;

use k8s_openapi::jiff::Timestamp;
use serde::Deserialize;
use serde_json::Value;

pub const SOURCE_EC2: &str = "aws.ec2";
pub const SOURCE_HEALTH: &str = "aws.health";
pub const SPOT_INTERRUPTION: &str = "EC2 Spot Instance Interruption Warning";
pub const REBALANCE_RECOMMENDATION: &str = "EC2 Instance Rebalance Recommendation";
pub const STATE_CHANGE: &str = "EC2 Instance State-change Notification";
pub const HEALTH_EVENT: &str = "AWS Health Event";
/// Instance states that mean the node is going away.
pub const ACTIONABLE_STATES: [&str; 4] = ["stopping", "stopped", "shutting-down", "terminated"];

/// What a message announces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MessageKind {
    /// Two minutes before EC2 reclaims a spot instance.
    SpotInterruption,
    /// A spot instance is at elevated risk of interruption.
    RebalanceRecommendation,
    /// An AWS Health scheduled change (retirement, maintenance) for EC2 instances.
    ScheduledChange,
    /// The instance entered one of [`ACTIONABLE_STATES`].
    StateChange { state: String },
    /// An event nodewright does not act on (other states, other health events, other types).
    NoOp { detail_type: String },
}

impl MessageKind {
    /// The `message_type` metric label, as Karpenter names the kinds.
    pub fn label(&self) -> &'static str {
        match self {
            MessageKind::SpotInterruption => "SpotInterruptionKind",
            MessageKind::RebalanceRecommendation => "RebalanceRecommendationKind",
            MessageKind::ScheduledChange => "ScheduledChangeKind",
            MessageKind::StateChange { .. } => "StateChangeKind",
            MessageKind::NoOp { .. } => "NoOpKind",
        }
    }
}

/// The `message_type` label of a body that could not be parsed.
pub const MALFORMED_LABEL: &str = "MalformedKind";

/// One parsed event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub kind: MessageKind,
    /// EventBridge's event id (for logs).
    pub id: String,
    /// The EC2 instances it is about (`i-…`).
    pub instance_ids: Vec<String>,
    /// When the event happened (its `time`), for the latency metric.
    pub time: Option<SystemTime>,
}

/// Why a body is not an EventBridge event nodewright can read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("the message has no body")]
    NoBody,
    #[error("the body is not an EventBridge event: {0}")]
    NotAnEvent(String),
    #[error("{detail_type} event {id} lacks {field}")]
    MissingField {
        detail_type: String,
        id: String,
        field: &'static str,
    },
}

#[derive(Deserialize)]
struct Envelope {
    #[serde(rename = "detail-type")]
    detail_type: String,
    source: String,
    #[serde(default)]
    id: String,
    #[serde(default)]
    time: Option<String>,
    #[serde(default)]
    detail: Value,
}

/// Parses one queue message body.
pub fn parse(body: Option<&str>) -> Result<Message, ParseError> {
    let body = body.ok_or(ParseError::NoBody)?;
    let envelope: Envelope =
        serde_json::from_str(body).map_err(|e| ParseError::NotAnEvent(e.to_string()))?;
    let time = envelope
        .time
        .as_deref()
        .and_then(|t| t.parse::<Timestamp>().ok())
        .map(SystemTime::from);
    let missing = |field| ParseError::MissingField {
        detail_type: envelope.detail_type.clone(),
        id: envelope.id.clone(),
        field,
    };
    let detail = &envelope.detail;
    let text = |field: &str| detail.get(field).and_then(Value::as_str);
    let (kind, instance_ids) = match (envelope.source.as_str(), envelope.detail_type.as_str()) {
        (SOURCE_EC2, SPOT_INTERRUPTION) => {
            let id = text("instance-id").ok_or_else(|| missing("detail.instance-id"))?;
            (MessageKind::SpotInterruption, vec![id.to_string()])
        }
        (SOURCE_EC2, REBALANCE_RECOMMENDATION) => {
            let id = text("instance-id").ok_or_else(|| missing("detail.instance-id"))?;
            (MessageKind::RebalanceRecommendation, vec![id.to_string()])
        }
        (SOURCE_EC2, STATE_CHANGE) => {
            let id = text("instance-id").ok_or_else(|| missing("detail.instance-id"))?;
            let state = text("state").ok_or_else(|| missing("detail.state"))?;
            let kind = if ACTIONABLE_STATES.contains(&state) {
                MessageKind::StateChange {
                    state: state.to_string(),
                }
            } else {
                no_op(&envelope.detail_type)
            };
            (kind, vec![id.to_string()])
        }
        (SOURCE_HEALTH, HEALTH_EVENT) => {
            let scheduled_ec2 = text("service") == Some("EC2")
                && text("eventTypeCategory") == Some("scheduledChange");
            if scheduled_ec2 {
                (MessageKind::ScheduledChange, affected_instances(detail))
            } else {
                (no_op(&envelope.detail_type), Vec::new())
            }
        }
        _ => (no_op(&envelope.detail_type), Vec::new()),
    };
    Ok(Message {
        kind,
        id: envelope.id,
        instance_ids,
        time,
    })
}

fn no_op(detail_type: &str) -> MessageKind {
    MessageKind::NoOp {
        detail_type: detail_type.to_string(),
    }
}

/// The instance ids among a health event's affected entities (others name volumes, hosts…).
fn affected_instances(detail: &Value) -> Vec<String> {
    detail
        .get("affectedEntities")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|entity| entity.get("entityValue")?.as_str())
        .filter(|value| value.starts_with("i-"))
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
#[path = "messages_tests.rs"]
mod tests;
