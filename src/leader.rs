//! Leader election on a `coordination.k8s.io/v1` Lease, with client-go's semantics, so that of
//! several controller replicas only one runs the mutating loops while every replica keeps its
//! caches warm.
//!
//! A candidate reads the Lease every retry period and takes it when it is missing, released (no
//! holder) or expired (`renewTime + leaseDurationSeconds` has passed, by the wall clock, as
//! Kubernetes leases are). Writes carry the resourceVersion read, so of two candidates racing for
//! one Lease only one wins (the other gets 409). The leader renews every retry period; when it
//! cannot renew within the renew deadline, or finds another holder on the Lease, it reports
//! "not leader" before doing anything else. The renew deadline is shorter than the lease
//! duration, so a leader has stopped acting before anyone may take its Lease. On shutdown a
//! leader releases the Lease so that a standby takes over at its next retry.

use std::collections::hash_map::RandomState;
use std::future::Future;
use std::hash::{BuildHasher, Hash, Hasher};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PostParams};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep, sleep_until, timeout, timeout_at};

/// The Lease's name unless configured otherwise.
pub const DEFAULT_LEASE_NAME: &str = "nodewright-leader-election";

/// Where and how leadership is contended for. The defaults are client-go's (and Karpenter's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseSettings {
    pub namespace: String,
    pub name: String,
    /// Who this replica is; unique among the replicas.
    pub identity: String,
    /// How long a Lease not renewed stays valid for the others.
    pub lease_duration: Duration,
    /// How long a leader keeps trying to renew before it steps down.
    pub renew_deadline: Duration,
    /// How often a candidate tries to acquire and a leader renews.
    pub retry_period: Duration,
}

impl LeaseSettings {
    /// Lease [`DEFAULT_LEASE_NAME`] in `namespace`, an identity from [`default_identity`], and
    /// 15 s / 10 s / 2 s.
    pub fn new(namespace: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            name: DEFAULT_LEASE_NAME.to_string(),
            identity: default_identity(),
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }

    /// Refuses settings under which two replicas could lead at once.
    pub fn validate(&self) -> Result<(), LeaseSettingsError> {
        if self.namespace.is_empty() || self.name.is_empty() {
            return Err(LeaseSettingsError::NoLease);
        }
        if self.identity.is_empty() {
            return Err(LeaseSettingsError::NoIdentity);
        }
        if self.lease_duration < Duration::from_secs(1) {
            return Err(LeaseSettingsError::LeaseTooShort(self.lease_duration));
        }
        if self.renew_deadline >= self.lease_duration {
            return Err(LeaseSettingsError::RenewDeadline {
                renew_deadline: self.renew_deadline,
                lease_duration: self.lease_duration,
            });
        }
        if self.retry_period.is_zero() || self.retry_period >= self.renew_deadline {
            return Err(LeaseSettingsError::RetryPeriod {
                retry_period: self.retry_period,
                renew_deadline: self.renew_deadline,
            });
        }
        Ok(())
    }

    /// Whole seconds, as the Lease stores them (rounded up, so never shorter than configured).
    fn lease_duration_seconds(&self) -> i32 {
        let seconds =
            self.lease_duration.as_secs() + u64::from(self.lease_duration.subsec_nanos() > 0);
        i32::try_from(seconds).unwrap_or(i32::MAX)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LeaseSettingsError {
    #[error("leader election needs a Lease namespace and name")]
    NoLease,
    #[error("leader election needs an identity")]
    NoIdentity,
    #[error("the lease duration ({0:?}) must be at least 1s")]
    LeaseTooShort(Duration),
    #[error(
        "the renew deadline ({renew_deadline:?}) must be shorter than the lease duration ({lease_duration:?})"
    )]
    RenewDeadline {
        renew_deadline: Duration,
        lease_duration: Duration,
    },
    #[error(
        "the retry period ({retry_period:?}) must be positive and shorter than the renew deadline ({renew_deadline:?})"
    )]
    RetryPeriod {
        retry_period: Duration,
        renew_deadline: Duration,
    },
}

/// `POD_NAME` or `HOSTNAME` (the pod's name in a cluster), then `_` and a suffix unique to this
/// process, so a restarted replica is a new holder.
pub fn default_identity() -> String {
    let host = ["POD_NAME", "HOSTNAME"]
        .iter()
        .find_map(|key| std::env::var(key).ok().filter(|value| !value.is_empty()))
        .unwrap_or_else(|| "nodewright".to_string());
    let mut hasher = RandomState::new().build_hasher();
    std::process::id().hash(&mut hasher);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|since| since.as_nanos())
        .unwrap_or_default();
    nanos.hash(&mut hasher);
    format!("{host}_{:016x}", hasher.finish())
}

/// Whether this replica leads. Dropping it does not stop the election: complete the shutdown
/// future given to [`spawn`], then await [`Leadership::stopped`].
#[derive(Debug)]
pub struct Leadership {
    leading: watch::Receiver<bool>,
    /// Keeps the channel of [`Leadership::always`] open while this value lives.
    _always: Option<watch::Sender<bool>>,
    task: Option<JoinHandle<()>>,
}

impl Leadership {
    /// Leader election switched off: always the leader.
    pub fn always() -> Self {
        let (sender, leading) = watch::channel(true);
        Self {
            leading,
            _always: Some(sender),
            task: None,
        }
    }

    pub fn is_leader(&self) -> bool {
        *self.leading.borrow()
    }

    /// A receiver of every change. Once the election has stopped it holds `false` and is closed.
    pub fn subscribe(&self) -> watch::Receiver<bool> {
        self.leading.clone()
    }

    /// Waits until this replica leads; `false` if the election stopped first.
    pub async fn wait_until_leader(&mut self) -> bool {
        self.leading.wait_for(|leading| *leading).await.is_ok()
    }

    /// Waits until the election has stopped (after its shutdown future completed), the Lease
    /// released if this replica held it.
    pub async fn stopped(mut self) {
        if let Some(task) = self.task.take()
            && let Err(error) = task.await
        {
            tracing::error!(%error, "the leader election task failed");
        }
    }
}

/// Starts contending for the Lease in a background task that runs until `shutdown` completes.
pub fn spawn(
    client: kube::Client,
    settings: LeaseSettings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<Leadership, LeaseSettingsError> {
    settings.validate()?;
    let (sender, leading) = watch::channel(false);
    let elector = Elector {
        api: Api::namespaced(client, &settings.namespace),
        settings,
        leading: sender,
        observed_holder: None,
    };
    Ok(Leadership {
        leading,
        _always: None,
        task: Some(tokio::spawn(elector.run(shutdown))),
    })
}

/// What one read-and-write of the Lease found.
#[derive(Debug)]
enum Attempt {
    /// The Lease names this replica, freshly renewed.
    Leading { transitions: i32 },
    /// Someone else holds the Lease.
    HeldBy(String),
    /// Another writer changed the Lease between our read and write (409).
    Conflict,
}

struct Elector {
    api: Api<Lease>,
    settings: LeaseSettings,
    leading: watch::Sender<bool>,
    /// The last holder seen, so a new leader is logged once.
    observed_holder: Option<String>,
}

impl Drop for Elector {
    /// However the task ends (shutdown, abort, panic), nobody may go on believing it leads.
    fn drop(&mut self) {
        self.leading.send_replace(false);
    }
}

impl Elector {
    async fn run(mut self, shutdown: impl Future<Output = ()> + Send) {
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            tokio::select! {
                biased;
                // A write cancelled here may still have made us the holder: release checks.
                () = &mut shutdown => {
                    self.release().await;
                    return;
                }
                () = self.acquire() => {}
            }
            tokio::select! {
                biased;
                () = &mut shutdown => {
                    self.leading.send_replace(false);
                    self.release().await;
                    return;
                }
                () = self.hold() => {}
            }
        }
    }

    /// Returns once this replica leads (and has said so).
    async fn acquire(&mut self) {
        loop {
            let attempt = timeout(
                self.settings.renew_deadline,
                self.try_acquire_or_renew(false),
            );
            match attempt.await {
                Ok(Ok(Attempt::Leading { transitions })) => {
                    self.leading.send_replace(true);
                    tracing::info!(
                        identity = %self.settings.identity,
                        lease = %self.lease_key(),
                        transitions,
                        "acquired leader lease"
                    );
                    return;
                }
                Ok(Ok(Attempt::HeldBy(_) | Attempt::Conflict)) => {}
                Ok(Err(error)) => self.log_api_error(&error, "acquiring"),
                Err(_) => self.log_timeout("acquiring"),
            }
            sleep(self.settings.retry_period).await;
        }
    }

    /// Renews while leading; returns once leadership is lost (and has said so).
    async fn hold(&mut self) {
        let mut renewed_at = Instant::now();
        let mut retry_at_once = false;
        loop {
            let deadline = renewed_at + self.settings.renew_deadline;
            if !retry_at_once {
                sleep_until(deadline.min(Instant::now() + self.settings.retry_period)).await;
            }
            retry_at_once = false;
            let started = Instant::now();
            if started >= deadline {
                self.lose("not renewed within the renew deadline");
                return;
            }
            match timeout_at(deadline, self.try_acquire_or_renew(true)).await {
                Ok(Ok(Attempt::Leading { .. })) => renewed_at = started,
                Ok(Ok(Attempt::HeldBy(holder))) => {
                    self.lose(&format!("the lease is held by {holder}"));
                    return;
                }
                // Someone else wrote the Lease: read it again now to learn who holds it.
                Ok(Ok(Attempt::Conflict)) => retry_at_once = true,
                Ok(Err(error)) => self.log_api_error(&error, "renewing"),
                Err(_) => self.log_timeout("renewing"),
            }
        }
    }

    fn lose(&mut self, reason: &str) {
        self.leading.send_replace(false);
        tracing::warn!(
            identity = %self.settings.identity,
            lease = %self.lease_key(),
            reason,
            "lost leader lease"
        );
    }

    /// client-go's tryAcquireOrRenew. A leader (`leading`) that finds another holder has lost,
    /// even if that holder's Lease has since expired: the other may have acted meanwhile.
    async fn try_acquire_or_renew(&mut self, leading: bool) -> Result<Attempt, kube::Error> {
        let now = SystemTime::now();
        let name = self.settings.name.clone();
        let Some(mut lease) = self.api.get_opt(&name).await? else {
            let created = self
                .api
                .create(&PostParams::default(), &self.new_lease(now))
                .await;
            return match created {
                Ok(_) => Ok(Attempt::Leading { transitions: 0 }),
                Err(kube::Error::Api(status)) if status.is_already_exists() => {
                    Ok(Attempt::Conflict)
                }
                Err(error) => Err(error),
            };
        };
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        let holder = spec
            .holder_identity
            .clone()
            .filter(|holder| !holder.is_empty());
        let ours = holder.as_deref() == Some(self.settings.identity.as_str());
        self.observe(holder.as_deref());
        if let Some(holder) = holder
            && !ours
            && (leading || !expired(spec, now))
        {
            return Ok(Attempt::HeldBy(holder));
        }
        let mut transitions = spec.lease_transitions.unwrap_or(0);
        if !ours {
            transitions = transitions.saturating_add(1);
            spec.acquire_time = Some(micro_time(now));
        }
        spec.holder_identity = Some(self.settings.identity.clone());
        spec.lease_duration_seconds = Some(self.settings.lease_duration_seconds());
        spec.renew_time = Some(micro_time(now));
        spec.lease_transitions = Some(transitions);
        match self
            .api
            .replace(&name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => Ok(Attempt::Leading { transitions }),
            Err(kube::Error::Api(status)) if status.is_conflict() => Ok(Attempt::Conflict),
            Err(error) => Err(error),
        }
    }

    fn new_lease(&self, now: SystemTime) -> Lease {
        Lease {
            metadata: ObjectMeta {
                name: Some(self.settings.name.clone()),
                namespace: Some(self.settings.namespace.clone()),
                ..ObjectMeta::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(self.settings.identity.clone()),
                lease_duration_seconds: Some(self.settings.lease_duration_seconds()),
                acquire_time: Some(micro_time(now)),
                renew_time: Some(micro_time(now)),
                lease_transitions: Some(0),
                ..LeaseSpec::default()
            }),
        }
    }

    /// Gives the Lease up (no holder, expired) if it is still ours, so a standby need not wait
    /// for it to expire. Bounded by the renew deadline: shutdown must not hang on the API server.
    async fn release(&mut self) {
        let name = self.settings.name.clone();
        let release = async {
            let Some(mut lease) = self.api.get_opt(&name).await? else {
                return Ok(false);
            };
            let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
            if spec.holder_identity.as_deref() != Some(self.settings.identity.as_str()) {
                return Ok(false);
            }
            let now = SystemTime::now();
            spec.holder_identity = None;
            spec.lease_duration_seconds = Some(1);
            spec.acquire_time = Some(micro_time(now));
            spec.renew_time = Some(micro_time(now));
            self.api
                .replace(&name, &PostParams::default(), &lease)
                .await?;
            Ok::<_, kube::Error>(true)
        };
        let identity = &self.settings.identity;
        let lease = self.lease_key();
        match timeout(self.settings.renew_deadline, release).await {
            Ok(Ok(true)) => tracing::info!(%identity, %lease, "released leader lease"),
            Ok(Ok(false)) => {
                tracing::debug!(%identity, %lease, "leader lease not ours; nothing to release")
            }
            Ok(Err(error)) => {
                tracing::warn!(%identity, %lease, %error, "cannot release leader lease; it will expire")
            }
            Err(_) => {
                tracing::warn!(%identity, %lease, "releasing leader lease timed out; it will expire")
            }
        }
    }

    fn observe(&mut self, holder: Option<&str>) {
        if self.observed_holder.as_deref() == holder {
            return;
        }
        self.observed_holder = holder.map(str::to_string);
        if let Some(holder) = holder
            && holder != self.settings.identity
        {
            tracing::info!(
                identity = %self.settings.identity,
                lease = %self.lease_key(),
                leader = holder,
                "another replica leads"
            );
        }
    }

    fn log_api_error(&self, error: &kube::Error, doing: &str) {
        tracing::warn!(
            identity = %self.settings.identity,
            lease = %self.lease_key(),
            %error,
            "leader election: {doing} the lease failed; retrying"
        );
    }

    fn log_timeout(&self, doing: &str) {
        tracing::warn!(
            identity = %self.settings.identity,
            lease = %self.lease_key(),
            "leader election: {doing} the lease timed out; retrying"
        );
    }

    fn lease_key(&self) -> String {
        format!("{}/{}", self.settings.namespace, self.settings.name)
    }
}

/// A Lease without a renewTime or duration counts as expired, as in client-go.
fn expired(spec: &LeaseSpec, now: SystemTime) -> bool {
    let Some(renewed) = &spec.renew_time else {
        return true;
    };
    let seconds = u64::try_from(spec.lease_duration_seconds.unwrap_or(0)).unwrap_or(0);
    match SystemTime::from(renewed.0).checked_add(Duration::from_secs(seconds)) {
        Some(valid_until) => valid_until <= now,
        None => false,
    }
}

fn micro_time(time: SystemTime) -> MicroTime {
    MicroTime(Timestamp::try_from(time).unwrap_or_else(|_| Timestamp::now()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_client_gos_and_valid() {
        let settings = LeaseSettings::new("kube-system");
        assert_eq!(settings.name, DEFAULT_LEASE_NAME);
        assert_eq!(settings.lease_duration, Duration::from_secs(15));
        assert_eq!(settings.validate(), Ok(()));
    }

    #[test]
    fn identities_differ_between_electors() {
        assert_ne!(default_identity(), default_identity());
    }

    #[test]
    fn a_renew_deadline_as_long_as_the_lease_is_refused() {
        let mut settings = LeaseSettings::new("kube-system");
        settings.renew_deadline = settings.lease_duration;
        assert!(matches!(
            settings.validate(),
            Err(LeaseSettingsError::RenewDeadline { .. })
        ));
    }

    #[test]
    fn a_lease_is_expired_once_its_duration_has_passed_since_renewal() {
        let renewed = SystemTime::now();
        let spec = LeaseSpec {
            renew_time: Some(micro_time(renewed)),
            lease_duration_seconds: Some(15),
            ..LeaseSpec::default()
        };
        assert!(!expired(&spec, renewed + Duration::from_secs(14)));
        assert!(expired(&spec, renewed + Duration::from_secs(15)));
        assert!(expired(&LeaseSpec::default(), renewed));
    }
}
