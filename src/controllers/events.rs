//! Kubernetes Events on pods, nodes, machines and provisioners (`core/v1`, what `kubectl
//! describe` shows). Loops hand events to a background task, so an Event never delays a
//! decision; a repeat of the same event within [`REPEAT_WINDOW`] is dropped, and a full queue
//! drops events rather than memory.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PostParams};
use kube::{Client, Resource, ResourceExt};
use tokio::sync::mpsc;

use crate::clock::Clock;

/// Who reports the events.
pub const COMPONENT: &str = "nodewright";
/// The same event on the same object is not repeated within this window.
pub const REPEAT_WINDOW: Duration = Duration::from_secs(300);
const QUEUE: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Normal,
    Warning,
}

impl EventType {
    fn as_str(self) -> &'static str {
        match self {
            EventType::Normal => "Normal",
            EventType::Warning => "Warning",
        }
    }
}

#[derive(Debug, Clone)]
struct Pending {
    regarding: ObjectReference,
    type_: EventType,
    reason: String,
    message: String,
}

/// Sends events; cheap to clone.
#[derive(Debug, Clone)]
pub struct Events {
    queue: mpsc::Sender<Pending>,
}

/// A reference to `object` for an Event's `involvedObject`.
pub fn reference<K: Resource<DynamicType = ()>>(object: &K) -> ObjectReference {
    ObjectReference {
        api_version: Some(K::api_version(&()).into_owned()),
        kind: Some(K::kind(&()).into_owned()),
        name: Some(object.name_any()),
        namespace: object.namespace(),
        uid: object.uid(),
        ..ObjectReference::default()
    }
}

/// A reference to the pod `namespace/name` (the cache keeps pods in the core's terms).
pub fn pod_reference(key: &str) -> ObjectReference {
    let (namespace, name) = key.split_once('/').unwrap_or(("default", key));
    ObjectReference {
        api_version: Some("v1".to_string()),
        kind: Some("Pod".to_string()),
        name: Some(name.to_string()),
        namespace: Some(namespace.to_string()),
        ..ObjectReference::default()
    }
}

impl Events {
    /// Starts the task that writes events through `client`.
    pub fn spawn(client: Client, clock: Arc<dyn Clock>) -> Events {
        let (queue, receiver) = mpsc::channel(QUEUE);
        tokio::spawn(write_events(client, clock, receiver));
        Events { queue }
    }

    pub fn normal(&self, regarding: ObjectReference, reason: &str, message: impl Into<String>) {
        self.publish(regarding, EventType::Normal, reason, message.into());
    }

    pub fn warning(&self, regarding: ObjectReference, reason: &str, message: impl Into<String>) {
        self.publish(regarding, EventType::Warning, reason, message.into());
    }

    fn publish(&self, regarding: ObjectReference, type_: EventType, reason: &str, message: String) {
        let event = Pending {
            regarding,
            type_,
            reason: reason.to_string(),
            message,
        };
        if self.queue.try_send(event).is_err() {
            tracing::debug!("event queue full; dropping an event");
        }
    }
}

async fn write_events(client: Client, clock: Arc<dyn Clock>, mut queue: mpsc::Receiver<Pending>) {
    let mut recent: HashMap<(String, String, String), SystemTime> = HashMap::new();
    let mut sequence: u64 = 0;
    while let Some(event) = queue.recv().await {
        let now = clock.now();
        let object = format!(
            "{}/{}/{}",
            event.regarding.kind.as_deref().unwrap_or_default(),
            event.regarding.namespace.as_deref().unwrap_or_default(),
            event.regarding.name.as_deref().unwrap_or_default()
        );
        let key = (object, event.reason.clone(), event.message.clone());
        if recent
            .get(&key)
            .is_some_and(|at| now.duration_since(*at).is_ok_and(|age| age < REPEAT_WINDOW))
        {
            continue;
        }
        if recent.len() > 10_000 {
            recent.retain(|_, at| now.duration_since(*at).is_ok_and(|age| age < REPEAT_WINDOW));
        }
        recent.insert(key, now);
        sequence += 1;
        let namespace = event
            .regarding
            .namespace
            .clone()
            .unwrap_or_else(|| "default".to_string());
        let stamp = Timestamp::try_from(now).unwrap_or(Timestamp::UNIX_EPOCH);
        let nanos = now
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        let name = format!(
            "{}.{:x}{:x}",
            event.regarding.name.as_deref().unwrap_or("object"),
            nanos,
            sequence
        );
        let object = Event {
            metadata: ObjectMeta {
                name: Some(name),
                namespace: Some(namespace.clone()),
                ..ObjectMeta::default()
            },
            involved_object: event.regarding,
            type_: Some(event.type_.as_str().to_string()),
            reason: Some(event.reason),
            message: Some(event.message),
            source: Some(EventSource {
                component: Some(COMPONENT.to_string()),
                host: None,
            }),
            reporting_component: Some(COMPONENT.to_string()),
            first_timestamp: Some(Time(stamp)),
            last_timestamp: Some(Time(stamp)),
            event_time: Some(MicroTime(stamp)),
            count: Some(1),
            ..Event::default()
        };
        let api: Api<Event> = Api::namespaced(client.clone(), &namespace);
        if let Err(error) = api.create(&PostParams::default(), &object).await {
            tracing::debug!(%error, "cannot write event");
        }
    }
}
