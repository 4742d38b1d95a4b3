//! The interruption queue: the SQS queue EventBridge feeds with spot interruption warnings,
//! rebalance recommendations, instance state changes and health events.
//!
//! [`Queue`] is the narrow interface the interruption loop uses (receive, delete);
//! [`SdkQueue`] implements it over `aws-sdk-sqs`, [`InMemoryQueue`] in process for tests.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use aws_sdk_sqs::error::DisplayErrorContext;
use tokio::sync::{Notify, OnceCell};

use crate::cloudprovider::BoxFuture;
use crate::sync::lock;

/// SQS returns at most this many messages per receive.
pub const MAX_MESSAGES: u32 = 10;
/// SQS waits at most this long for a message (long polling).
pub const MAX_WAIT: Duration = Duration::from_secs(20);

/// One received message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueMessage {
    pub message_id: String,
    /// What [`Queue::delete`] needs; changes with every receive of the same message.
    pub receipt_handle: String,
    /// `None` when SQS sent no body (never for EventBridge, but the API allows it).
    pub body: Option<String>,
}

/// A failed queue call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("SQS {operation} on queue {queue}: {message}")]
pub struct QueueError {
    pub operation: &'static str,
    pub queue: String,
    pub message: String,
}

/// Receives and deletes messages. Implementations are shared (`Arc<dyn Queue>`) and safe to
/// call concurrently.
pub trait Queue: Send + Sync {
    /// The queue's name or URL, for logs.
    fn name(&self) -> &str;

    /// Up to `max_messages` (at most [`MAX_MESSAGES`]), waiting up to `wait` (at most
    /// [`MAX_WAIT`]) for the first; an empty list when none came.
    fn receive(
        &self,
        max_messages: u32,
        wait: Duration,
    ) -> BoxFuture<'_, Result<Vec<QueueMessage>, QueueError>>;

    /// Removes a handled message; a message not deleted comes back after its visibility
    /// timeout.
    fn delete<'a>(&'a self, message: &'a QueueMessage) -> BoxFuture<'a, Result<(), QueueError>>;
}

/// SQS through the AWS SDK. `queue` is a queue name (as Karpenter's `interruptionQueue`),
/// resolved to its URL on first use, or a URL (`https://…`), used as is.
#[derive(Debug)]
pub struct SdkQueue {
    client: aws_sdk_sqs::Client,
    queue: String,
    url: OnceCell<String>,
}

impl SdkQueue {
    /// The SDK's per-attempt timeout must exceed the long-poll wait (the default 30 s does).
    pub fn new(config: &aws_config::SdkConfig, queue: impl Into<String>) -> Self {
        Self {
            client: aws_sdk_sqs::Client::new(config),
            queue: queue.into(),
            url: OnceCell::new(),
        }
    }

    /// The queue URL; a failed lookup is tried again on the next call.
    pub async fn url(&self) -> Result<&str, QueueError> {
        self.url
            .get_or_try_init(|| async {
                if self.queue.starts_with("https://") || self.queue.starts_with("http://") {
                    return Ok(self.queue.clone());
                }
                let output = self
                    .client
                    .get_queue_url()
                    .queue_name(&self.queue)
                    .send()
                    .await
                    .map_err(|e| self.error("GetQueueUrl", e))?;
                output
                    .queue_url()
                    .map(str::to_string)
                    .ok_or_else(|| self.error("GetQueueUrl", "the answer carries no queue URL"))
            })
            .await
            .map(String::as_str)
    }

    fn error(&self, operation: &'static str, error: impl SdkErrorText) -> QueueError {
        QueueError {
            operation,
            queue: self.queue.clone(),
            message: error.text(),
        }
    }

    async fn receive_now(
        &self,
        max_messages: u32,
        wait: Duration,
    ) -> Result<Vec<QueueMessage>, QueueError> {
        let url = self.url().await?;
        let max = max_messages.clamp(1, MAX_MESSAGES);
        let wait = wait.min(MAX_WAIT).as_secs();
        let output = self
            .client
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(i32::try_from(max).unwrap_or(10))
            .wait_time_seconds(i32::try_from(wait).unwrap_or(20))
            .send()
            .await
            .map_err(|e| self.error("ReceiveMessage", e))?;
        Ok(output
            .messages()
            .iter()
            .filter_map(|m| {
                // Without a receipt handle a message could never be deleted; SQS always sends one.
                Some(QueueMessage {
                    message_id: m.message_id().unwrap_or_default().to_string(),
                    receipt_handle: m.receipt_handle()?.to_string(),
                    body: m.body().map(str::to_string),
                })
            })
            .collect())
    }

    async fn delete_now(&self, message: &QueueMessage) -> Result<(), QueueError> {
        let url = self.url().await?;
        self.client
            .delete_message()
            .queue_url(url)
            .receipt_handle(&message.receipt_handle)
            .send()
            .await
            .map_err(|e| self.error("DeleteMessage", e))?;
        Ok(())
    }
}

/// Text for an SDK error with its whole cause chain (the SDK's `Display` says only "service
/// error").
trait SdkErrorText {
    fn text(self) -> String;
}

impl<E: std::error::Error + Send + Sync + 'static> SdkErrorText
    for aws_sdk_sqs::error::SdkError<E, aws_sdk_sqs::config::http::HttpResponse>
{
    fn text(self) -> String {
        DisplayErrorContext(self).to_string()
    }
}

impl SdkErrorText for &str {
    fn text(self) -> String {
        self.to_string()
    }
}

impl Queue for SdkQueue {
    fn name(&self) -> &str {
        &self.queue
    }

    fn receive(
        &self,
        max_messages: u32,
        wait: Duration,
    ) -> BoxFuture<'_, Result<Vec<QueueMessage>, QueueError>> {
        Box::pin(self.receive_now(max_messages, wait))
    }

    fn delete<'a>(&'a self, message: &'a QueueMessage) -> BoxFuture<'a, Result<(), QueueError>> {
        Box::pin(self.delete_now(message))
    }
}

#[derive(Debug, Default)]
struct Messages {
    next: u64,
    waiting: VecDeque<(String, Option<String>)>,
    /// Received and not yet deleted, by receipt handle.
    in_flight: HashMap<String, (String, Option<String>)>,
    deleted: Vec<String>,
    failing_receives: usize,
    /// Times the queue was looked at by a receive.
    looked: usize,
}

/// A queue in memory: messages are received in order, stay in flight until deleted and never
/// come back by themselves ([`InMemoryQueue::redeliver`] plays the visibility timeout).
#[derive(Debug, Default)]
pub struct InMemoryQueue {
    messages: Mutex<Messages>,
    arrived: Notify,
}

impl InMemoryQueue {
    pub fn new() -> Self {
        Self::default()
    }

    /// Queues a message; returns its id.
    pub fn send(&self, body: Option<String>) -> String {
        let id = {
            let mut messages = lock(&self.messages);
            messages.next += 1;
            let id = format!("message-{}", messages.next);
            messages.waiting.push_back((id.clone(), body));
            id
        };
        self.arrived.notify_waiters();
        id
    }

    /// The next `count` receives fail.
    pub fn fail_next_receives(&self, count: usize) {
        lock(&self.messages).failing_receives = count;
    }

    /// Ids of the deleted messages, in deletion order.
    pub fn deleted(&self) -> Vec<String> {
        lock(&self.messages).deleted.clone()
    }

    /// Times a receive has looked for messages: one that looks after a reader started handling
    /// what it received means that handling is over.
    pub fn looked(&self) -> usize {
        lock(&self.messages).looked
    }

    /// Messages waiting or in flight (not deleted).
    pub fn len(&self) -> usize {
        let messages = lock(&self.messages);
        messages.waiting.len() + messages.in_flight.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Puts every message in flight back in the queue, as their visibility timeout would.
    pub fn redeliver(&self) {
        {
            let mut messages = lock(&self.messages);
            let back: Vec<_> = messages.in_flight.drain().map(|(_, m)| m).collect();
            messages.waiting.extend(back);
        }
        self.arrived.notify_waiters();
    }

    fn take(&self, max_messages: u32) -> Result<Vec<QueueMessage>, QueueError> {
        let mut messages = lock(&self.messages);
        messages.looked += 1;
        if messages.failing_receives > 0 {
            messages.failing_receives -= 1;
            return Err(QueueError {
                operation: "ReceiveMessage",
                queue: "in-memory".to_string(),
                message: "injected failure".to_string(),
            });
        }
        let mut taken = Vec::new();
        while taken.len() < max_messages.clamp(1, MAX_MESSAGES) as usize {
            let Some((id, body)) = messages.waiting.pop_front() else {
                break;
            };
            messages.next += 1;
            let receipt_handle = format!("{id}-receipt-{}", messages.next);
            messages
                .in_flight
                .insert(receipt_handle.clone(), (id.clone(), body.clone()));
            taken.push(QueueMessage {
                message_id: id,
                receipt_handle,
                body,
            });
        }
        Ok(taken)
    }
}

impl Queue for InMemoryQueue {
    fn name(&self) -> &str {
        "in-memory"
    }

    /// Waits in real time, as SQS does.
    fn receive(
        &self,
        max_messages: u32,
        wait: Duration,
    ) -> BoxFuture<'_, Result<Vec<QueueMessage>, QueueError>> {
        Box::pin(async move {
            let deadline = tokio::time::Instant::now() + wait.min(MAX_WAIT);
            loop {
                // Registered before looking, so a send in between is not missed.
                let arrived = self.arrived.notified();
                let taken = self.take(max_messages)?;
                if !taken.is_empty() {
                    return Ok(taken);
                }
                if tokio::time::timeout_at(deadline, arrived).await.is_err() {
                    return Ok(Vec::new());
                }
            }
        })
    }

    fn delete<'a>(&'a self, message: &'a QueueMessage) -> BoxFuture<'a, Result<(), QueueError>> {
        Box::pin(async move {
            let mut messages = lock(&self.messages);
            match messages.in_flight.remove(&message.receipt_handle) {
                Some((id, _)) => {
                    messages.deleted.push(id);
                    Ok(())
                }
                None => Err(QueueError {
                    operation: "DeleteMessage",
                    queue: "in-memory".to_string(),
                    message: format!("receipt handle {} is not valid", message.receipt_handle),
                }),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn messages_stay_in_flight_until_deleted() {
        let queue = InMemoryQueue::new();
        let first = queue.send(Some("one".to_string()));
        queue.send(Some("two".to_string()));
        let received = queue.receive(1, Duration::ZERO).await.expect("receives");
        assert_eq!(received.len(), 1);
        assert_eq!(received[0].message_id, first);
        assert_eq!(received[0].body.as_deref(), Some("one"));
        assert_eq!(queue.len(), 2);
        queue.delete(&received[0]).await.expect("deletes");
        assert_eq!(queue.deleted(), vec![first]);
        assert!(queue.delete(&received[0]).await.is_err(), "deleted once");
        assert_eq!(queue.len(), 1);
    }

    #[tokio::test]
    async fn an_undeleted_message_comes_back_on_redelivery() {
        let queue = InMemoryQueue::new();
        let id = queue.send(None);
        let first = queue.receive(10, Duration::ZERO).await.expect("receives");
        assert!(
            queue
                .receive(10, Duration::ZERO)
                .await
                .expect("receives")
                .is_empty()
        );
        queue.redeliver();
        let again = queue.receive(10, Duration::ZERO).await.expect("receives");
        assert_eq!(again[0].message_id, id);
        assert_ne!(again[0].receipt_handle, first[0].receipt_handle);
    }

    #[tokio::test]
    async fn a_waiting_receive_wakes_for_a_message() {
        let queue = std::sync::Arc::new(InMemoryQueue::new());
        let waiting = {
            let queue = queue.clone();
            tokio::spawn(async move { queue.receive(10, MAX_WAIT).await })
        };
        tokio::task::yield_now().await;
        queue.send(Some("late".to_string()));
        let received = waiting.await.expect("no panic").expect("receives");
        assert_eq!(received[0].body.as_deref(), Some("late"));
    }

    #[tokio::test]
    async fn injected_failures_end() {
        let queue = InMemoryQueue::new();
        queue.fail_next_receives(1);
        assert!(queue.receive(10, Duration::ZERO).await.is_err());
        assert!(queue.receive(10, Duration::ZERO).await.is_ok());
    }
}
