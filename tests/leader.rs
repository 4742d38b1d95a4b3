//! Leader election against the simulated API server over HTTP: one leader at a time, hand-over
//! on shutdown, stepping down when the Lease is taken or the API server is gone.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::api::{Api, Patch, PatchParams};
use nodewright::leader::{self, DEFAULT_LEASE_NAME, Leadership, LeaseSettings};
use nodewright::sim::{ApiServer, ApiServerConfig};
use serde_json::json;
use tokio::sync::{oneshot, watch};
use tokio::time::{sleep, timeout};

/// A safety net for waits on observable conditions; never a synchronisation device.
const PATIENCE: Duration = Duration::from_secs(120);

async fn server() -> ApiServer {
    ApiServer::start(ApiServerConfig::default())
        .await
        .expect("the API server starts")
}

/// A client that reports errors instead of retrying them, as the other sim tests build it.
fn client(server: &ApiServer) -> Client {
    let mut config = server.kube_config().expect("a client configuration");
    config.default_retry = false;
    Client::try_from(config).expect("a client for the server")
}

fn settings(identity: &str) -> LeaseSettings {
    LeaseSettings {
        namespace: "default".to_string(),
        name: DEFAULT_LEASE_NAME.to_string(),
        identity: identity.to_string(),
        lease_duration: Duration::from_secs(2),
        renew_deadline: Duration::from_secs(1),
        retry_period: Duration::from_millis(200),
    }
}

/// One replica's elector and the switch that shuts it down.
struct Replica {
    identity: String,
    leadership: Leadership,
    stop: oneshot::Sender<()>,
}

impl Replica {
    fn start(client: Client, identity: &str) -> Replica {
        let (stop, stopped) = oneshot::channel::<()>();
        let shutdown = async move {
            let _ = stopped.await;
        };
        let leadership =
            leader::spawn(client, settings(identity), shutdown).expect("valid settings");
        Replica {
            identity: identity.to_string(),
            leadership,
            stop,
        }
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        timeout(PATIENCE, self.leadership.stopped())
            .await
            .expect("the elector stops in time");
    }
}

async fn until(receiver: &mut watch::Receiver<bool>, wanted: bool, what: &str) {
    timeout(PATIENCE, receiver.wait_for(|leading| *leading == wanted))
        .await
        .unwrap_or_else(|_| panic!("{what} in time"))
        .unwrap_or_else(|_| panic!("the elector still runs while waiting until {what}"));
}

/// Whichever of the two leads first: (leader, standby).
async fn first_leader(a: Replica, b: Replica) -> (Replica, Replica) {
    let (mut a_leading, mut b_leading) = (a.leadership.subscribe(), b.leadership.subscribe());
    let a_first = timeout(PATIENCE, async {
        tokio::select! {
            _ = a_leading.wait_for(|leading| *leading) => true,
            _ = b_leading.wait_for(|leading| *leading) => false,
        }
    })
    .await
    .expect("one of the replicas leads in time");
    if a_first { (a, b) } else { (b, a) }
}

/// Records whether two receivers were ever both true, checked on every change of either.
fn watch_for_two_leaders(
    mut a: watch::Receiver<bool>,
    mut b: watch::Receiver<bool>,
) -> Arc<AtomicBool> {
    let both = Arc::new(AtomicBool::new(false));
    let seen = both.clone();
    tokio::spawn(async move {
        loop {
            if *a.borrow_and_update() && *b.borrow_and_update() {
                seen.store(true, Ordering::SeqCst);
            }
            tokio::select! {
                changed = a.changed() => if changed.is_err() { return },
                changed = b.changed() => if changed.is_err() { return },
            }
        }
    });
    both
}

async fn lease_spec(client: &Client) -> LeaseSpec {
    let leases: Api<Lease> = Api::namespaced(client.clone(), "default");
    leases
        .get(DEFAULT_LEASE_NAME)
        .await
        .expect("the lease exists")
        .spec
        .unwrap_or_default()
}

/// Waits until the lease has been renewed `times` more times (its renewTime changed).
async fn renewals(client: &Client, times: usize) {
    timeout(PATIENCE, async {
        let mut last = lease_spec(client).await.renew_time;
        let mut seen = 0;
        while seen < times {
            sleep(Duration::from_millis(50)).await;
            let renewed = lease_spec(client).await.renew_time;
            if renewed != last {
                seen += 1;
                last = renewed;
            }
        }
    })
    .await
    .expect("the leader keeps renewing its lease");
}

#[tokio::test]
async fn of_two_replicas_exactly_one_leads() {
    let server = server().await;
    let client = client(&server);
    let a = Replica::start(client.clone(), "replica-a");
    let b = Replica::start(client.clone(), "replica-b");
    let two_leaders = watch_for_two_leaders(a.leadership.subscribe(), b.leadership.subscribe());

    let (leader, standby) = first_leader(a, b).await;
    renewals(&client, 5).await;

    assert!(leader.leadership.is_leader());
    assert!(!standby.leadership.is_leader(), "the standby never leads");
    assert!(!two_leaders.load(Ordering::SeqCst), "never two leaders");
    let spec = lease_spec(&client).await;
    assert_eq!(
        spec.holder_identity.as_deref(),
        Some(leader.identity.as_str())
    );
    assert_eq!(spec.lease_transitions, Some(0));
    assert_eq!(spec.lease_duration_seconds, Some(2));
    leader.stop().await;
    standby.stop().await;
}

#[tokio::test]
async fn a_standby_takes_over_when_the_leader_stops() {
    let server = server().await;
    let client = client(&server);
    let a = Replica::start(client.clone(), "replica-a");
    let b = Replica::start(client.clone(), "replica-b");
    let two_leaders = watch_for_two_leaders(a.leadership.subscribe(), b.leadership.subscribe());
    let (leader, standby) = first_leader(a, b).await;
    let mut old_leader = leader.leadership.subscribe();
    let transitions_before = lease_spec(&client).await.lease_transitions.unwrap_or(0);

    leader.stop().await;
    let mut new_leader = standby.leadership.subscribe();
    until(&mut new_leader, true, "the standby leads").await;

    assert!(
        !*old_leader.borrow_and_update(),
        "the stopped leader no longer leads"
    );
    assert!(!two_leaders.load(Ordering::SeqCst), "never two leaders");
    let spec = lease_spec(&client).await;
    assert_eq!(
        spec.holder_identity.as_deref(),
        Some(standby.identity.as_str())
    );
    assert_eq!(spec.lease_transitions, Some(transitions_before + 1));
    standby.stop().await;
}

#[tokio::test]
async fn a_stopped_leader_releases_its_lease() {
    let server = server().await;
    let client = client(&server);
    let replica = Replica::start(client.clone(), "replica-a");
    until(
        &mut replica.leadership.subscribe(),
        true,
        "the replica leads",
    )
    .await;

    replica.stop().await;

    assert_eq!(lease_spec(&client).await.holder_identity, None);
}

#[tokio::test]
async fn a_leader_whose_lease_is_taken_steps_down() {
    let server = server().await;
    let client = client(&server);
    let replica = Replica::start(client.clone(), "replica-a");
    let mut leading = replica.leadership.subscribe();
    until(&mut leading, true, "the replica leads").await;

    let now = MicroTime(Timestamp::try_from(SystemTime::now()).expect("a representable time"));
    let leases: Api<Lease> = Api::namespaced(client.clone(), "default");
    let intruder = json!({"spec": {
        "holderIdentity": "intruder",
        "renewTime": now,
        "leaseDurationSeconds": 3600,
    }});
    leases
        .patch(
            DEFAULT_LEASE_NAME,
            &PatchParams::default(),
            &Patch::Merge(intruder),
        )
        .await
        .expect("the intruder takes the lease");
    until(&mut leading, false, "the replica steps down").await;

    let spec = lease_spec(&client).await;
    assert_eq!(
        spec.holder_identity.as_deref(),
        Some("intruder"),
        "the replica does not write over a valid lease held by another"
    );
    replica.stop().await;
}

#[tokio::test]
async fn a_leader_that_cannot_reach_the_api_server_steps_down() {
    let server = server().await;
    let replica = Replica::start(client(&server), "replica-a");
    let mut leading = replica.leadership.subscribe();
    until(&mut leading, true, "the replica leads").await;

    server.shutdown().await.expect("the API server stops");
    until(&mut leading, false, "the replica steps down").await;

    replica.stop().await;
}

#[tokio::test]
async fn with_election_off_the_replica_always_leads() {
    let mut leadership = Leadership::always();

    assert!(leadership.is_leader());
    assert!(
        timeout(PATIENCE, leadership.wait_until_leader())
            .await
            .expect("at once")
    );
    assert!(*leadership.subscribe().borrow());
}
