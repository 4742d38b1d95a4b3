//! The metrics of the loops that act on nodes: the interruption queue's and disruption's.

use std::time::Duration;

use prometheus::{Histogram, HistogramOpts, IntCounterVec, Opts, Registry};

use super::{DURATION_BUCKETS, Metrics, MetricsError};

/// The interruption queue's metrics (Karpenter's names and labels), registered in the same
/// registry only when a queue is configured.
#[derive(Debug, Clone)]
pub struct InterruptionMetrics {
    received: IntCounterVec,
    deleted: prometheus::IntCounter,
    actions: IntCounterVec,
    latency: Histogram,
}

impl InterruptionMetrics {
    pub fn register(metrics: &Metrics) -> Result<InterruptionMetrics, MetricsError> {
        let received = IntCounterVec::new(
            Opts::new(
                "karpenter_interruption_received_messages",
                "Messages received from the interruption queue, by message type.",
            ),
            &["message_type"],
        )?;
        let deleted = prometheus::IntCounter::new(
            "karpenter_interruption_deleted_messages",
            "Messages deleted from the interruption queue.",
        )?;
        let actions = IntCounterVec::new(
            Opts::new(
                "karpenter_interruption_actions_performed",
                "Actions taken on interruption messages, by action (CordonAndDrain, NoAction).",
            ),
            &["action_type"],
        )?;
        let latency = Histogram::with_opts(
            HistogramOpts::new(
                "karpenter_interruption_message_latency_time_seconds",
                "Seconds from an interruption event to its handling.",
            )
            .buckets(DURATION_BUCKETS.to_vec()),
        )?;
        let registry = metrics.registry();
        registry.register(Box::new(received.clone()))?;
        registry.register(Box::new(deleted.clone()))?;
        registry.register(Box::new(actions.clone()))?;
        registry.register(Box::new(latency.clone()))?;
        Ok(InterruptionMetrics {
            received,
            deleted,
            actions,
            latency,
        })
    }

    pub fn message_received(&self, message_type: &str) {
        self.received.with_label_values(&[message_type]).inc();
    }

    pub fn message_deleted(&self) {
        self.deleted.inc();
    }

    pub fn action_performed(&self, action_type: &str) {
        self.actions.with_label_values(&[action_type]).inc();
    }

    pub fn observe_message_latency(&self, latency: Duration) {
        self.latency.observe(latency.as_secs_f64());
    }
}

/// The disruption loop's metrics: actions by disruption and kind, what consolidation saved, and
/// how each pass and each replacement went.
#[derive(Debug, Clone)]
pub struct DisruptionMetrics {
    actions: IntCounterVec,
    savings: prometheus::Gauge,
    eligible: prometheus::IntGaugeVec,
    evaluation: prometheus::HistogramVec,
    timeouts: IntCounterVec,
    replacement_initialized: Histogram,
    replacement_failures: IntCounterVec,
}

impl DisruptionMetrics {
    pub(super) fn register(registry: &Registry) -> Result<DisruptionMetrics, prometheus::Error> {
        let actions = IntCounterVec::new(
            Opts::new(
                "karpenter_deprovisioning_actions_performed",
                "Disruption actions taken, by action (`<deprovisioner>/delete`, `<deprovisioner>/replace`) and deprovisioner (consolidation, expiration, drift, emptiness).",
            ),
            &["action", "deprovisioner"],
        )?;
        let savings = prometheus::Gauge::new(
            "nodewright_consolidation_savings_per_hour",
            "US dollars per hour that consolidation actions saved since the controller started (the removed nodes' prices minus their replacements').",
        )?;
        let eligible = prometheus::IntGaugeVec::new(
            Opts::new(
                "karpenter_deprovisioning_eligible_machines",
                "Candidates each deprovisioner considered on its last pass.",
            ),
            &["deprovisioner"],
        )?;
        let evaluation = prometheus::HistogramVec::new(
            HistogramOpts::new(
                "karpenter_deprovisioning_evaluation_duration_seconds",
                "Seconds one deprovisioner took to decide on a pass, by method.",
            )
            .buckets(DURATION_BUCKETS.to_vec()),
            &["method"],
        )?;
        let timeouts = IntCounterVec::new(
            Opts::new(
                "karpenter_deprovisioning_consolidation_timeouts",
                "Consolidation searches that ran out of time, by consolidation type (single-machine, multi-machine).",
            ),
            &["consolidation_type"],
        )?;
        let replacement_initialized = Histogram::with_opts(
            HistogramOpts::new(
                "karpenter_deprovisioning_replacement_machine_initialized_seconds",
                "Seconds from launching a disruption's replacements until all were initialized.",
            )
            .buckets(DURATION_BUCKETS.to_vec()),
        )?;
        let replacement_failures = IntCounterVec::new(
            Opts::new(
                "karpenter_deprovisioning_replacement_machine_launch_failure_counter",
                "Disruptions whose replacements failed to launch or initialize (label `<deprovisioner>/<action>`, as Karpenter v0.31 fills it).",
            ),
            &["deprovisioner"],
        )?;
        registry.register(Box::new(actions.clone()))?;
        registry.register(Box::new(savings.clone()))?;
        registry.register(Box::new(eligible.clone()))?;
        registry.register(Box::new(evaluation.clone()))?;
        registry.register(Box::new(timeouts.clone()))?;
        registry.register(Box::new(replacement_initialized.clone()))?;
        registry.register(Box::new(replacement_failures.clone()))?;
        Ok(DisruptionMetrics {
            actions,
            savings,
            eligible,
            evaluation,
            timeouts,
            replacement_initialized,
            replacement_failures,
        })
    }

    pub fn set_eligible(&self, deprovisioner: &str, candidates: usize) {
        self.eligible
            .with_label_values(&[deprovisioner])
            .set(i64::try_from(candidates).unwrap_or(i64::MAX));
    }

    pub fn evaluated(&self, method: &str, took: Duration) {
        self.evaluation
            .with_label_values(&[method])
            .observe(took.as_secs_f64());
    }

    pub fn consolidation_timed_out(&self, consolidation_type: &str) {
        self.timeouts.with_label_values(&[consolidation_type]).inc();
    }

    pub fn replacements_initialized(&self, took: Duration) {
        self.replacement_initialized.observe(took.as_secs_f64());
    }

    /// `action` is `delete` or `replace`, as in [`DisruptionMetrics::action_performed`].
    pub fn replacements_failed(&self, action: &str, deprovisioner: &str) {
        self.replacement_failures
            .with_label_values(&[&format!("{deprovisioner}/{action}")])
            .inc();
    }

    /// `action` is `delete` or `replace`; the label is `<deprovisioner>/<action>`, as v0.31's.
    pub fn action_performed(&self, action: &str, deprovisioner: &str) {
        self.actions
            .with_label_values(&[&format!("{deprovisioner}/{action}"), deprovisioner])
            .inc();
    }

    pub fn consolidation_saved(&self, usd_per_hour: f64) {
        self.savings.add(usd_per_hour);
    }
}
