//! Interruption handling: spot interruption warnings, rebalance recommendations, AWS Health
//! scheduled changes and instance state changes, read from the SQS queue EventBridge feeds
//! (`settings.interruption_queue`), move pods off a node before EC2 takes it away.
//!
//! - [`messages`]: an EventBridge event body → a [`messages::Message`] (pure).
//! - [`decide`]: a message and the cache → per instance, the action, Event and offering to
//!   hold out (pure).
//! - [`run`]: the loop: long-poll, handle messages concurrently, delete each once handled.
//!
//! A node to drain is annotated `karpenter.sh/disruption-reason: interruption` and deleted;
//! the termination controller then cordons, drains, terminates and releases it.

use std::sync::Arc;
use std::time::Duration;

use nodewright_scheduling::instance_type::CapacityType;

use crate::cloudprovider::aws::AwsCloudProvider;
use crate::cloudprovider::aws::sqs::{MAX_WAIT, Queue};
use crate::cloudprovider::fake::FakeCloudProvider;
use crate::metrics::{InterruptionMetrics, Metrics, MetricsError};

pub mod decide;
pub mod messages;
mod run;

pub use run::run;

/// Holds an interrupted spot offering out of scheduling, as an insufficient-capacity error
/// does (for the unavailable-offerings TTL).
pub trait OfferingHoldOut: Send + Sync {
    fn hold_out_spot(&self, instance_type: &str, zone: &str);
}

impl OfferingHoldOut for AwsCloudProvider {
    fn hold_out_spot(&self, instance_type: &str, zone: &str) {
        self.unavailable_offerings()
            .mark_unavailable(instance_type, zone, CapacityType::Spot);
    }
}

impl OfferingHoldOut for FakeCloudProvider {
    fn hold_out_spot(&self, instance_type: &str, zone: &str) {
        self.unavailable_offerings()
            .mark_unavailable(instance_type, zone, CapacityType::Spot);
    }
}

/// What the interruption loop needs besides the controller's context.
pub struct Interruption {
    queue: Arc<dyn Queue>,
    hold_out: Arc<dyn OfferingHoldOut>,
    metrics: InterruptionMetrics,
    wait: Duration,
}

impl Interruption {
    /// Registers the interruption metrics in `metrics`' registry (once per registry).
    pub fn new(
        queue: Arc<dyn Queue>,
        hold_out: Arc<dyn OfferingHoldOut>,
        metrics: &Metrics,
    ) -> Result<Interruption, MetricsError> {
        Ok(Interruption {
            queue,
            hold_out,
            metrics: InterruptionMetrics::register(metrics)?,
            wait: MAX_WAIT,
        })
    }

    /// How long one receive waits for a message (SQS long polling; 20 s, the most SQS allows,
    /// unless set). Real time, not the controller's clock.
    pub fn with_wait(mut self, wait: Duration) -> Interruption {
        self.wait = wait.min(MAX_WAIT);
        self
    }
}
