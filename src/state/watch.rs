//! Watchers that feed the shared [`ClusterState`]: one kube-runtime watcher per kind, each watched
//! once and read by every loop. Objects are applied (converted and shrunk) as they arrive and
//! never kept whole, so the cache holds only what decisions read.
//!
//! A relist (the start, or a watch that lost its place: 410 Gone) replaces that kind's contents:
//! objects not listed again are removed. Loops learn of changes through [`SharedState::changed`]
//! and of pods that newly wait for a node through [`SharedState::take_new_pods`].

use std::collections::{BTreeSet, HashMap};
use std::fmt::Debug;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use tokio::sync::watch;

use super::limits::Reservations;
use super::nominations::Nominations;
use super::views::{InstanceTypesByProvisioner, counted_for_new_machine};
use super::{ClusterState, object_key};
use crate::apis::{AwsNodeTemplate, Machine, Provisioner};
use crate::convert::ConvertError;
use crate::sync::lock;

/// What happened to the cluster, for loops that wait on more than "something changed".
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Changes {
    /// Bumped on every applied change.
    pub any: u64,
    /// Bumped when capacity went away or rules changed (a machine or node deleted, a
    /// provisioner's or node template's spec changed): pending pods deserve another batch.
    pub capacity: u64,
}

/// The cluster state shared by the watchers (writers) and the loops (readers).
#[derive(Debug)]
pub struct SharedState {
    state: Mutex<ClusterState>,
    changes: watch::Sender<Changes>,
    /// Pods that became provisionable since the provisioning loop last looked.
    new_pods: Mutex<BTreeSet<String>>,
    synced: watch::Sender<BTreeSet<&'static str>>,
    /// Nodes and machines pods are on their way to: not empty meanwhile.
    nominated: Mutex<Nominations>,
    /// Pods to bind to each new machine's node as soon as it launches (`BIND_PODS`).
    early_pods: Mutex<HashMap<String, Vec<String>>>,
    /// Machines admitted against their provisioner's limits, not yet in the cache.
    reservations: Mutex<Reservations>,
}

/// The name of the machine behind `node`, if nodewright launched it.
fn machine_name_of<'a>(state: &'a ClusterState, node: &str) -> Option<&'a str> {
    state
        .node(node)
        .and_then(|n| state.machine_of_node(n))
        .and_then(|m| m.machine.metadata.name.as_deref())
}

/// The kinds the controller watches; the cache is synced once each has listed.
pub const WATCHED_KINDS: [&str; 7] = [
    "Pod",
    "Node",
    "Machine",
    "Provisioner",
    "AWSNodeTemplate",
    "DaemonSet",
    "PodDisruptionBudget",
];

impl Default for SharedState {
    fn default() -> Self {
        SharedState {
            state: Mutex::new(ClusterState::new()),
            changes: watch::Sender::new(Changes::default()),
            new_pods: Mutex::new(BTreeSet::new()),
            synced: watch::Sender::new(BTreeSet::new()),
            nominated: Mutex::new(Nominations::default()),
            early_pods: Mutex::new(HashMap::new()),
            reservations: Mutex::new(Reservations::default()),
        }
    }
}

impl SharedState {
    pub fn new() -> Arc<SharedState> {
        Arc::new(SharedState::default())
    }

    /// The state, locked. Hold it briefly: watchers wait on it.
    pub fn read(&self) -> MutexGuard<'_, ClusterState> {
        lock(&self.state)
    }

    /// Changes as they are applied.
    pub fn changed(&self) -> watch::Receiver<Changes> {
        self.changes.subscribe()
    }

    /// Pods (`namespace/name`) that became provisionable since the last call.
    pub fn take_new_pods(&self) -> BTreeSet<String> {
        std::mem::take(&mut *lock(&self.new_pods))
    }

    /// Records that pods are on their way to the node or machine `name` until `until`.
    pub fn nominate(&self, name: &str, until: SystemTime) {
        lock(&self.nominated).nominate(name, until);
    }

    /// Records that one batch nominated `pods` (`namespace/name`) to the nodes and machines
    /// `targets`: none of them is empty until `until`, nor while those pods still wait for the
    /// kube-scheduler (see [`super::PENDING_HOLD`]).
    pub fn nominate_batch(&self, targets: &[&str], until: SystemTime, pods: &[String]) {
        lock(&self.nominated).nominate_batch(targets, until, pods);
    }

    /// Admits `machine` against its provisioner's limits before it is created, whichever loop
    /// creates it: what the cache counts plus the machines admitted and not yet cached, plus
    /// this one at its largest candidate, must stay within every limit. Call
    /// [`SharedState::machine_not_created`] when the create fails.
    pub fn admit_machine(
        &self,
        machine: &Machine,
        types: &InstanceTypesByProvisioner,
    ) -> Result<(), String> {
        let name = machine.name_any();
        let Some((provisioner, counted)) = counted_for_new_machine(types, machine) else {
            return Ok(());
        };
        let state = self.read();
        lock(&self.reservations).admit(&state, types, &name, &provisioner, counted)
    }

    /// Ends the reservation of a machine whose create failed.
    pub fn machine_not_created(&self, machine: &str) {
        lock(&self.reservations).release(machine);
    }

    /// Machines admitted and not yet in the cache.
    pub fn reserved_machines(&self) -> usize {
        lock(&self.reservations).count()
    }

    /// Remembers the pods (`namespace/name`) to bind early to `machine`'s node.
    pub fn plan_early_binding(&self, machine: &str, pods: Vec<String>) {
        lock(&self.early_pods).insert(machine.to_string(), pods);
    }

    /// The pods to bind early to `machine`'s node, once.
    pub fn take_early_binding(&self, machine: &str) -> Vec<String> {
        lock(&self.early_pods).remove(machine).unwrap_or_default()
    }

    pub fn forget_nomination(&self, name: &str) {
        lock(&self.nominated).forget(name);
    }

    /// Ends the nominations of `node` and of its machine: the pods it waited for landed.
    pub fn forget_node_nomination(&self, state: &ClusterState, node: &str) {
        let mut nominated = lock(&self.nominated);
        nominated.forget(node);
        if let Some(machine) = machine_name_of(state, node) {
            nominated.forget(machine);
        }
    }

    /// Whether pods nominated to `node` or to its machine may still arrive; `state` is the
    /// caller's locked view (see [`SharedState::read`]).
    pub fn is_node_nominated(&self, state: &ClusterState, node: &str, now: SystemTime) -> bool {
        let machine = machine_name_of(state, node);
        let mut nominated = lock(&self.nominated);
        nominated.holds(node, now, state) || machine.is_some_and(|m| nominated.holds(m, now, state))
    }

    /// Whether every watched kind has listed once.
    pub fn is_synced(&self) -> bool {
        self.synced.borrow().len() == WATCHED_KINDS.len()
    }

    /// Waits until every watched kind has listed once.
    pub async fn wait_synced(&self) {
        let mut synced = self.synced.subscribe();
        // The sender lives as long as `self`, so this ends only when synced.
        let _ = synced
            .wait_for(|kinds| kinds.len() == WATCHED_KINDS.len())
            .await;
    }

    /// Applies what a loop itself just wrote (the API server's answer), so the next decision
    /// sees it before the watch event arrives.
    pub fn apply<K: Cached>(&self, object: &K) {
        let mut state = self.read();
        self.apply_locked(&mut state, object);
    }

    fn apply_locked<K: Cached>(&self, state: &mut ClusterState, object: &K) {
        let key = K::key(object);
        // A loop may have applied its own newer write before the watch delivers older events.
        if is_older(
            object.meta().resource_version.as_deref(),
            K::cached_version(state, &key).as_deref(),
        ) {
            return;
        }
        let was_provisionable = K::is_provisionable(state, &key);
        // Status writes (the counter's own, for one) leave the generation alone.
        let starts_deleting = K::starts_deleting(state, object);
        let rules_changed = starts_deleting
            || K::RULES
                && (object.meta().generation.is_none()
                    || object.meta().generation != K::cached_generation(state, &key));
        if let Err(error) = K::apply(state, object) {
            tracing::warn!(kind = K::KIND, object = %key, %error, "cannot use object; leaving it out of decisions");
        }
        if K::KIND == <Machine as Cached>::KIND {
            // The cache counts it from now on.
            lock(&self.reservations).release(&key);
        }
        if !was_provisionable && K::is_provisionable(state, &key) {
            lock(&self.new_pods).insert(key);
        }
        self.changes.send_modify(|c| {
            c.any += 1;
            if rules_changed {
                c.capacity += 1;
            }
        });
    }

    fn remove_locked<K: Cached>(&self, state: &mut ClusterState, key: &str) {
        K::remove(state, key);
        if K::KIND == <Machine as Cached>::KIND {
            // A machine deleted before its node came (a capacity error, a launch that timed
            // out) never takes its early binding.
            lock(&self.early_pods).remove(key);
        }
        self.changes.send_modify(|c| {
            c.any += 1;
            if K::CAPACITY_ON_DELETE || K::RULES {
                c.capacity += 1;
            }
        });
    }

    /// Removes an object a loop just deleted for good (no finalizer held it).
    pub fn remove<K: Cached>(&self, object: &K) {
        let mut state = self.read();
        self.remove_locked::<K>(&mut state, &K::key(object));
    }

    fn mark_synced(&self, kind: &'static str) {
        self.synced.send_if_modified(|kinds| kinds.insert(kind));
    }
}

/// A kind the cache holds: how it is keyed, applied and removed.
pub trait Cached:
    Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static
{
    const KIND: &'static str;
    /// Writing one changes what pending pods could get (provisioners, node templates).
    const RULES: bool = false;
    /// Deleting one frees capacity or drops in-flight capacity (nodes, machines).
    const CAPACITY_ON_DELETE: bool = false;
    fn key(object: &Self) -> String {
        match object.namespace() {
            Some(namespace) => object_key(&namespace, &object.name_any()),
            None => object.name_any(),
        }
    }
    fn apply(state: &mut ClusterState, object: &Self) -> Result<(), ConvertError>;
    fn remove(state: &mut ClusterState, key: &str);
    fn keys(state: &ClusterState) -> Vec<String>;
    fn is_provisionable(_state: &ClusterState, _key: &str) -> bool {
        false
    }
    /// The resourceVersion of the cached copy, for kinds the loops write to.
    fn cached_version(_state: &ClusterState, _key: &str) -> Option<String> {
        None
    }
    /// Whether `object` is being deleted and the cached copy was not (its pods must move).
    fn starts_deleting(_state: &ClusterState, _object: &Self) -> bool {
        false
    }
    /// `metadata.generation` of the cached copy, for [`Cached::RULES`] kinds.
    fn cached_generation(_state: &ClusterState, _key: &str) -> Option<i64> {
        None
    }
}

/// Whether `incoming` is an older resourceVersion than `cached`. Versions are opaque to
/// clients, but every API server writes integers; anything else is taken as newer.
fn is_older(incoming: Option<&str>, cached: Option<&str>) -> bool {
    match (
        incoming.and_then(|v| v.parse::<u64>().ok()),
        cached.and_then(|v| v.parse::<u64>().ok()),
    ) {
        (Some(incoming), Some(cached)) => incoming < cached,
        _ => false,
    }
}

fn split_key(key: &str) -> (&str, &str) {
    key.split_once('/').unwrap_or(("", key))
}

impl Cached for Pod {
    const KIND: &'static str = "Pod";
    fn apply(state: &mut ClusterState, object: &Self) -> Result<(), ConvertError> {
        state.apply_pod(object)
    }
    fn remove(state: &mut ClusterState, key: &str) {
        let (namespace, name) = split_key(key);
        state.delete_pod(namespace, name);
    }
    fn keys(state: &ClusterState) -> Vec<String> {
        state
            .pods()
            .map(|e| object_key(&e.pod.namespace, &e.pod.name))
            .collect()
    }
    fn is_provisionable(state: &ClusterState, key: &str) -> bool {
        let (namespace, name) = split_key(key);
        state.pod(namespace, name).is_some_and(|e| e.provisionable)
    }
}

impl Cached for Node {
    const KIND: &'static str = "Node";
    const CAPACITY_ON_DELETE: bool = true;
    fn apply(state: &mut ClusterState, object: &Self) -> Result<(), ConvertError> {
        state.apply_node(object)
    }
    fn remove(state: &mut ClusterState, key: &str) {
        state.delete_node(key);
    }
    fn keys(state: &ClusterState) -> Vec<String> {
        state.nodes().map(|e| e.core.name.clone()).collect()
    }
    fn cached_version(state: &ClusterState, key: &str) -> Option<String> {
        state.node(key)?.node.metadata.resource_version.clone()
    }
    fn starts_deleting(state: &ClusterState, object: &Self) -> bool {
        object.metadata.deletion_timestamp.is_some()
            && state
                .node(&object.name_any())
                .is_some_and(|cached| !cached.deleting)
    }
}

impl Cached for Machine {
    const KIND: &'static str = "Machine";
    const CAPACITY_ON_DELETE: bool = true;
    fn apply(state: &mut ClusterState, object: &Self) -> Result<(), ConvertError> {
        state.apply_machine(object)
    }
    fn remove(state: &mut ClusterState, key: &str) {
        state.delete_machine(key);
    }
    fn keys(state: &ClusterState) -> Vec<String> {
        state.machines().map(|e| e.machine.name_any()).collect()
    }
    fn cached_version(state: &ClusterState, key: &str) -> Option<String> {
        state
            .machine(key)?
            .machine
            .metadata
            .resource_version
            .clone()
    }
}

impl Cached for Provisioner {
    const KIND: &'static str = "Provisioner";
    const RULES: bool = true;
    fn apply(state: &mut ClusterState, object: &Self) -> Result<(), ConvertError> {
        state.apply_provisioner(object)
    }
    fn remove(state: &mut ClusterState, key: &str) {
        state.delete_provisioner(key);
    }
    fn keys(state: &ClusterState) -> Vec<String> {
        state
            .provisioners()
            .map(|e| e.provisioner.name_any())
            .collect()
    }
    fn cached_version(state: &ClusterState, key: &str) -> Option<String> {
        state
            .provisioner(key)?
            .provisioner
            .metadata
            .resource_version
            .clone()
    }
    fn cached_generation(state: &ClusterState, key: &str) -> Option<i64> {
        state.provisioner(key)?.provisioner.metadata.generation
    }
}

impl Cached for AwsNodeTemplate {
    const KIND: &'static str = "AWSNodeTemplate";
    const RULES: bool = true;
    fn apply(state: &mut ClusterState, object: &Self) -> Result<(), ConvertError> {
        state.apply_node_template(object);
        Ok(())
    }
    fn remove(state: &mut ClusterState, key: &str) {
        state.delete_node_template(key);
    }
    fn keys(state: &ClusterState) -> Vec<String> {
        state.node_template_names()
    }
    fn cached_generation(state: &ClusterState, key: &str) -> Option<i64> {
        state.node_template(key)?.metadata.generation
    }
}

impl Cached for DaemonSet {
    const KIND: &'static str = "DaemonSet";
    fn apply(state: &mut ClusterState, object: &Self) -> Result<(), ConvertError> {
        state.apply_daemonset(object)
    }
    fn remove(state: &mut ClusterState, key: &str) {
        let (namespace, name) = split_key(key);
        state.delete_daemonset(namespace, name);
    }
    fn keys(state: &ClusterState) -> Vec<String> {
        state
            .daemonsets()
            .map(|d| object_key(&d.namespace, &d.name))
            .collect()
    }
}

impl Cached for PodDisruptionBudget {
    const KIND: &'static str = "PodDisruptionBudget";
    fn apply(state: &mut ClusterState, object: &Self) -> Result<(), ConvertError> {
        state.apply_pdb(object);
        Ok(())
    }
    fn remove(state: &mut ClusterState, key: &str) {
        let (namespace, name) = split_key(key);
        state.delete_pdb(namespace, name);
    }
    fn keys(state: &ClusterState) -> Vec<String> {
        state
            .pdbs()
            .map(|p| object_key(&p.namespace().unwrap_or_default(), &p.name_any()))
            .collect()
    }
}

/// Watches `K` cluster-wide into `shared` until `shutdown`. Errors (a lost connection, 410 Gone)
/// are logged and the watch resumes with backoff, relisting when it must.
pub async fn watch_kind<K: Cached>(
    client: Client,
    shared: Arc<SharedState>,
    shutdown: impl Future<Output = ()> + Send,
) {
    let api: Api<K> = Api::all(client);
    let stream = watcher::watcher(api, watcher::Config::default()).default_backoff();
    let mut stream = std::pin::pin!(stream);
    let mut shutdown = std::pin::pin!(shutdown);
    // Keys listed since the relist began; `None` outside a relist.
    let mut relisted: Option<BTreeSet<String>> = None;
    loop {
        let event = tokio::select! {
            () = &mut shutdown => return,
            event = stream.next() => event,
        };
        let Some(event) = event else { return };
        match event {
            Ok(Event::Init) => relisted = Some(BTreeSet::new()),
            Ok(Event::InitApply(object)) => {
                if let Some(keys) = &mut relisted {
                    keys.insert(K::key(&object));
                }
                let mut state = shared.read();
                shared.apply_locked(&mut state, &object);
            }
            Ok(Event::InitDone) => {
                let listed = relisted.take().unwrap_or_default();
                let mut state = shared.read();
                for key in K::keys(&state) {
                    if !listed.contains(&key) {
                        shared.remove_locked::<K>(&mut state, &key);
                    }
                }
                drop(state);
                shared.mark_synced(K::KIND);
            }
            Ok(Event::Apply(object)) => {
                let mut state = shared.read();
                shared.apply_locked(&mut state, &object);
            }
            Ok(Event::Delete(object)) => {
                let mut state = shared.read();
                shared.remove_locked::<K>(&mut state, &K::key(&object));
            }
            Err(error) => {
                tracing::warn!(kind = K::KIND, %error, "watch failed; retrying");
            }
        }
    }
}

/// Starts a watcher for every kind in [`WATCHED_KINDS`]; they stop when `shutdown` changes.
pub fn spawn_watchers(
    client: &Client,
    shared: &Arc<SharedState>,
    shutdown: &watch::Receiver<bool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    fn spawn<K: Cached>(
        client: &Client,
        shared: &Arc<SharedState>,
        shutdown: &watch::Receiver<bool>,
    ) -> tokio::task::JoinHandle<()> {
        let mut stop = shutdown.clone();
        tokio::spawn(watch_kind::<K>(
            client.clone(),
            shared.clone(),
            async move {
                let _ = stop.wait_for(|stopped| *stopped).await;
            },
        ))
    }
    vec![
        spawn::<Pod>(client, shared, shutdown),
        spawn::<Node>(client, shared, shutdown),
        spawn::<Machine>(client, shared, shutdown),
        spawn::<Provisioner>(client, shared, shutdown),
        spawn::<AwsNodeTemplate>(client, shared, shutdown),
        spawn::<DaemonSet>(client, shared, shutdown),
        spawn::<PodDisruptionBudget>(client, shared, shutdown),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_older_resource_version_never_replaces_a_newer_one() {
        assert!(is_older(Some("9"), Some("10")));
        assert!(!is_older(Some("10"), Some("10")));
        assert!(!is_older(Some("11"), Some("10")));
        assert!(!is_older(Some("abc"), Some("10")), "opaque versions apply");
        assert!(!is_older(None, Some("10")));
        assert!(!is_older(Some("1"), None));
    }

    #[test]
    fn a_machine_deleted_before_its_node_came_leaves_no_early_binding_behind() {
        let shared = SharedState::new();
        let machine: Machine = serde_json::from_value(serde_json::json!({
            "apiVersion": "karpenter.sh/v1alpha5", "kind": "Machine",
            "metadata": {"name": "default-abcde", "resourceVersion": "5"},
            "spec": {}
        }))
        .expect("a machine");
        shared.apply(&machine);
        shared.plan_early_binding("default-abcde", vec!["default/web-1".into()]);
        shared.plan_early_binding("default-fghij", vec!["default/web-2".into()]);
        shared.remove(&machine);
        assert!(
            shared.take_early_binding("default-abcde").is_empty(),
            "the deleted machine's plan went with it"
        );
        assert_eq!(
            shared.take_early_binding("default-fghij"),
            ["default/web-2"],
            "other machines keep theirs"
        );
    }
}
