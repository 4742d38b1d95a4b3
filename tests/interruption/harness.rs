//! What the interruption tests share: a queue in moto's SQS, a controller in the simulated
//! cluster with its interruption loop pointed at that queue, EventBridge event bodies, and
//! readers for metrics and node history.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use aws_sdk_sqs::types::QueueAttributeName;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::runtime::{WatchStreamExt, watcher};
use nodewright::cloudprovider::aws::sdk::{SdkSettings, load_config};
use nodewright::cloudprovider::aws::sqs::{Queue, SdkQueue};
use nodewright::cloudprovider::types::instance_id_of;
use nodewright::controllers::interruption::Interruption;
use nodewright::controllers::manager::Manager;
use nodewright::leader::Leadership;
use nodewright::metrics::Metrics;
use nodewright::settings::Settings;
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::timeout;

use crate::moto;
use crate::support::{PATIENCE, Sim};

/// How long one receive waits in tests (real time; production waits 20 s).
const TEST_WAIT: Duration = Duration::from_secs(1);

fn sdk_settings(endpoint: &str) -> SdkSettings {
    SdkSettings {
        region: Some("us-east-1".to_string()),
        endpoint_url: Some(endpoint.to_string()),
        static_credentials: Some(("testing".to_string(), "testing".to_string())),
        ..SdkSettings::default()
    }
}

/// One test's queue in moto.
pub struct MotoQueue {
    pub name: String,
    pub url: String,
    client: aws_sdk_sqs::Client,
    config: aws_config::SdkConfig,
}

impl MotoQueue {
    pub async fn create(prefix: &str) -> MotoQueue {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "{prefix}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let endpoint = tokio::task::spawn_blocking(moto::endpoint)
            .await
            .expect("moto starts");
        let config = load_config(&sdk_settings(endpoint)).await;
        let client = aws_sdk_sqs::Client::new(&config);
        let url = client
            .create_queue()
            .queue_name(&name)
            .send()
            .await
            .expect("moto creates the queue")
            .queue_url()
            .expect("a queue URL")
            .to_string();
        MotoQueue {
            name,
            url,
            client,
            config,
        }
    }

    /// The controller's client for this queue, addressed by URL or (`by_name`) by name.
    pub fn sdk_queue(&self, by_name: bool) -> Arc<dyn Queue> {
        let queue = if by_name { &self.name } else { &self.url };
        Arc::new(SdkQueue::new(&self.config, queue.clone()))
    }

    pub async fn send(&self, body: &str) {
        self.client
            .send_message()
            .queue_url(&self.url)
            .message_body(body)
            .send()
            .await
            .expect("moto takes the message");
    }

    /// Messages waiting plus those received and not deleted.
    pub async fn left(&self) -> u64 {
        let attributes = self
            .client
            .get_queue_attributes()
            .queue_url(&self.url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await
            .expect("moto answers GetQueueAttributes");
        let count = |name| {
            attributes
                .attributes()
                .and_then(|a| a.get(&name))
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        count(QueueAttributeName::ApproximateNumberOfMessages)
            + count(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
    }
}

/// A controller that leads, with its interruption loop reading `queue`.
pub struct InterruptionController {
    pub metrics: Arc<Metrics>,
    shutdown: watch::Sender<bool>,
    task: JoinHandle<()>,
    _leadership: Leadership,
}

impl InterruptionController {
    /// A controller on `settings`, reading interruption messages from `queue`.
    pub fn start(
        sim: &Sim,
        queue: Arc<dyn Queue>,
        mut settings: Settings,
    ) -> InterruptionController {
        let metrics = Arc::new(Metrics::new().expect("metrics register"));
        settings.interruption_queue = Some(queue.name().to_string());
        let interruption = Interruption::new(queue, sim.cloud.clone(), &metrics)
            .expect("interruption metrics register")
            .with_wait(TEST_WAIT);
        let manager = Manager::new(
            sim.controller_client.clone(),
            sim.cloud.clone(),
            sim.clock.clone(),
            settings,
            metrics.clone(),
        )
        .with_interruption(interruption)
        .with_eviction_client(sim.evictions.clone());
        let leadership = Leadership::always();
        let (shutdown, stopped) = watch::channel(false);
        let task = tokio::spawn(manager.run(leadership.subscribe(), stopped));
        InterruptionController {
            metrics,
            shutdown,
            task,
            _leadership: leadership,
        }
    }

    /// The value of one series (`name` or `name{label="value"}`), 0 when absent.
    pub fn sample(&self, series: &str) -> f64 {
        let text = self.metrics.encode().expect("metrics encode");
        text.lines()
            .filter_map(|line| line.strip_prefix(series))
            .find_map(|rest| rest.strip_prefix(' ')?.trim().parse().ok())
            .unwrap_or(0.0)
    }

    /// Whether any series of `name` exists.
    pub fn has_series(&self, name: &str) -> bool {
        let text = self.metrics.encode().expect("metrics encode");
        text.lines().any(|line| line.starts_with(name))
    }

    pub async fn stop(self) {
        let _ = self.shutdown.send(true);
        timeout(PATIENCE, self.task)
            .await
            .expect("the controller stops")
            .expect("no panic");
    }
}

/// Every version of one node seen from now on, through a watch (nothing is missed between polls).
pub struct NodeHistory {
    seen: Arc<Mutex<Vec<Node>>>,
    task: JoinHandle<()>,
}

impl NodeHistory {
    pub fn watch(sim: &Sim, name: &str) -> NodeHistory {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let api: Api<Node> = Api::all(sim.client.clone());
        let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
        let task = {
            let seen = seen.clone();
            tokio::spawn(async move {
                // Without a backoff, a watch whose API server has gone fails at once on every
                // poll: the task never yields, so neither its abort nor the runtime's shutdown
                // can stop it and the test hangs after it passed.
                let mut events = std::pin::pin!(watcher(api, config).default_backoff());
                while let Some(event) = events.next().await {
                    if let Ok(watcher::Event::Apply(node) | watcher::Event::InitApply(node)) = event
                    {
                        seen.lock().expect("not poisoned").push(node);
                    }
                }
            })
        };
        NodeHistory { seen, task }
    }

    /// Whether some version was cordoned while being deleted.
    pub fn was_cordoned_while_deleting(&self) -> bool {
        self.seen.lock().expect("not poisoned").iter().any(|node| {
            node.metadata.deletion_timestamp.is_some()
                && node.spec.as_ref().and_then(|s| s.unschedulable) == Some(true)
        })
    }

    /// Whether some version carried `key: value` as an annotation.
    pub fn was_annotated(&self, key: &str, value: &str) -> bool {
        self.seen.lock().expect("not poisoned").iter().any(|node| {
            node.metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(key))
                .is_some_and(|v| v == value)
        })
    }
}

impl Drop for NodeHistory {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A node's instance id, from its `spec.providerID`.
pub fn instance_of(node: &Node) -> String {
    let provider_id = node
        .spec
        .as_ref()
        .and_then(|s| s.provider_id.clone())
        .expect("the node has a provider id");
    instance_id_of(&provider_id)
        .expect("an aws:///ZONE/i-… provider id")
        .to_string()
}

pub fn is_deleting(node: &Node) -> bool {
    node.metadata.deletion_timestamp.is_some()
}

pub fn is_cordoned(node: &Node) -> bool {
    node.spec.as_ref().and_then(|s| s.unschedulable) == Some(true)
}

/// An EventBridge event body as an SQS target receives it.
pub fn event(source: &str, detail_type: &str, at: SystemTime, detail: Value) -> String {
    let time = Timestamp::try_from(at)
        .expect("a representable time")
        .to_string();
    json!({
        "version": "0",
        "id": format!("{:x}", at.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_nanos()),
        "detail-type": detail_type,
        "source": source,
        "account": "123456789012",
        "time": time,
        "region": "us-east-1",
        "resources": [],
        "detail": detail,
    })
    .to_string()
}

pub fn spot_interruption(instance: &str, at: SystemTime) -> String {
    event(
        "aws.ec2",
        "EC2 Spot Instance Interruption Warning",
        at,
        json!({"instance-id": instance, "instance-action": "terminate"}),
    )
}

pub fn rebalance_recommendation(instance: &str, at: SystemTime) -> String {
    event(
        "aws.ec2",
        "EC2 Instance Rebalance Recommendation",
        at,
        json!({"instance-id": instance}),
    )
}

pub fn state_change(instance: &str, state: &str, at: SystemTime) -> String {
    event(
        "aws.ec2",
        "EC2 Instance State-change Notification",
        at,
        json!({"instance-id": instance, "state": state}),
    )
}

pub fn scheduled_change(instance: &str, at: SystemTime) -> String {
    event(
        "aws.health",
        "AWS Health Event",
        at,
        json!({
            "service": "EC2",
            "eventTypeCode": "AWS_EC2_INSTANCE_RETIREMENT_SCHEDULED",
            "eventTypeCategory": "scheduledChange",
            "affectedEntities": [{"entityValue": instance}],
        }),
    )
}
