//! The object store: every object as JSON under one global, monotonic resourceVersion, a bounded
//! history of changes for watches and consistent paged lists, and a broadcast of new changes.
//!
//! One `std::sync::Mutex` guards the state; it is held only for in-memory work, never across an
//! await, and changes are broadcast while it is held so every watcher sees them in version order.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::ops::Bound;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;
use tokio::sync::broadcast;

use super::meta;
use super::resources::{Registry, ResourceKey, ResourceType};
use super::selectors::{FieldSelector, LabelSelector};
use super::status::ApiError;
use crate::cloudprovider::Clock;

/// `(namespace, name)`; the namespace is `""` for cluster-scoped objects. Ordered as etcd keys.
pub type ObjectKey = (String, String);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Added => "ADDED",
            Self::Modified => "MODIFIED",
            Self::Deleted => "DELETED",
        }
    }
}

/// One committed change, as kept in the history and sent to watchers.
#[derive(Debug)]
pub struct Change {
    pub event: EventType,
    pub resource: ResourceKey,
    pub key: ObjectKey,
    pub resource_version: u64,
    /// The object after the change (for deletions, its last state at the deletion's version).
    pub object: Value,
    /// The object before the change; `None` for additions.
    pub old: Option<Value>,
}

impl Change {
    /// What a watcher with this filter sees: objects entering the filter are ADDED, leaving it
    /// DELETED, as the real server's watch cache reports selector transitions.
    pub fn event_for(&self, resource: &ResourceKey, filter: &Filter) -> Option<EventType> {
        if &self.resource != resource {
            return None;
        }
        let now = self.event != EventType::Deleted && filter.matches(&self.object);
        let before = self.old.as_ref().is_some_and(|old| filter.matches(old));
        match (before, now) {
            (false, true) => Some(EventType::Added),
            (true, true) => Some(EventType::Modified),
            (true, false) => Some(EventType::Deleted),
            (false, false) => None,
        }
    }
}

/// Which objects a list or watch wants.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub namespace: Option<String>,
    pub labels: LabelSelector,
    pub fields: FieldSelector,
}

impl Filter {
    pub fn matches(&self, object: &Value) -> bool {
        self.namespace
            .as_deref()
            .is_none_or(|namespace| meta::namespace(object).unwrap_or("") == namespace)
            && self.labels.matches(object)
            && self.fields.matches(object)
    }
}

/// How pods bound to a node finish a graceful deletion.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PodTermination {
    /// Keep `deletionTimestamp` until a kubelet deletes the pod with grace period 0
    /// ([`super::ApiServer::finish_pod_deletion`]), as a real cluster does.
    #[default]
    AwaitKubelet,
    /// Remove the pod at once, as if its kubelet had stopped it immediately.
    Immediate,
}

/// The store's knobs.
#[derive(Debug, Clone)]
pub struct StoreSettings {
    pub history: usize,
    pub watch_buffer: usize,
    pub pod_termination: PodTermination,
    pub auto_create_namespaces: bool,
    pub clock: Arc<dyn Clock>,
}

/// One page of a list.
#[derive(Debug)]
pub struct ListPage {
    pub items: Vec<Value>,
    pub resource_version: u64,
    pub continue_token: Option<String>,
    pub remaining: Option<usize>,
}

/// Where a watch starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatchFrom {
    /// `resourceVersion` unset or "0": every current object as ADDED, then changes.
    Current,
    /// Changes after this version.
    Version(u64),
}

/// A started watch: its first events, the version they bring the watcher to, and new changes.
pub struct WatchStart {
    pub initial: Vec<(EventType, Value)>,
    pub resource_version: u64,
    pub receiver: broadcast::Receiver<Arc<Change>>,
}

pub struct State {
    pub(super) resource_version: u64,
    pub(super) objects: HashMap<ResourceKey, BTreeMap<ObjectKey, Value>>,
    history: VecDeque<Arc<Change>>,
    /// Every change after this version is still in `history`.
    compacted: u64,
    pub(super) counter: u64,
    /// owner uid → the objects whose ownerReferences name it.
    dependents: HashMap<String, BTreeSet<(ResourceKey, ObjectKey)>>,
    changes: broadcast::Sender<Arc<Change>>,
    history_limit: usize,
    /// Namespaces where a write may have changed a PodDisruptionBudget's figures.
    pub(super) budgets_touched: BTreeSet<String>,
}

pub struct Store {
    state: Mutex<State>,
    pub registry: Registry,
    pub settings: StoreSettings,
}

impl Store {
    pub fn new(registry: Registry, settings: StoreSettings) -> Self {
        let (changes, _) = broadcast::channel(settings.watch_buffer.max(1));
        let state = State {
            resource_version: 0,
            objects: HashMap::new(),
            history: VecDeque::new(),
            compacted: 0,
            counter: 0,
            dependents: HashMap::new(),
            changes,
            history_limit: settings.history.max(1),
            budgets_touched: BTreeSet::new(),
        };
        Self {
            state: Mutex::new(state),
            registry,
            settings,
        }
    }

    /// The state, even if a panicking thread poisoned the lock (the data stays consistent because
    /// every write completes before it is committed).
    pub fn lock(&self) -> MutexGuard<'_, State> {
        crate::sync::lock(&self.state)
    }

    pub fn now(&self) -> SystemTime {
        self.settings.clock.now()
    }

    pub fn resource_version(&self) -> u64 {
        self.lock().resource_version
    }

    pub fn get(&self, rt: &ResourceType, namespace: &str, name: &str) -> Result<Value, ApiError> {
        self.lock().get(rt, namespace, name).cloned()
    }

    /// A list, at the current version or (for `continue` and `resourceVersionMatch=Exact`) at an
    /// earlier one rebuilt from the history.
    pub fn list(
        &self,
        rt: &ResourceType,
        filter: &Filter,
        limit: Option<usize>,
        continue_token: Option<&str>,
        exact_version: Option<u64>,
    ) -> Result<ListPage, ApiError> {
        let state = self.lock();
        let (version, after) = match continue_token {
            Some(token) => {
                let (version, after) = decode_continue(token)?;
                (version, Some(after))
            }
            None => (exact_version.unwrap_or(state.resource_version), None),
        };
        let snapshot = state.snapshot(&rt.key(), version)?;
        // Keys sort by namespace, then name: start after the cursor or at the namespace.
        let start = match (after, &filter.namespace) {
            (Some(after), _) => Bound::Excluded(after),
            (None, Some(namespace)) => Bound::Included((namespace.clone(), String::new())),
            (None, None) => Bound::Unbounded,
        };
        let matching: Vec<(&ObjectKey, &Value)> = snapshot
            .range((start, Bound::Unbounded))
            .take_while(|(key, _)| {
                filter
                    .namespace
                    .as_ref()
                    .is_none_or(|namespace| &key.0 == namespace)
            })
            .filter(|(_, object)| filter.matches(object))
            .collect();
        let taken = match limit {
            Some(limit) if limit > 0 => limit.min(matching.len()),
            _ => matching.len(),
        };
        let items = matching[..taken]
            .iter()
            .map(|(_, object)| (*object).clone())
            .collect();
        let remaining = matching.len() - taken;
        let continue_token = match taken.checked_sub(1) {
            Some(last) if remaining > 0 => Some(encode_continue(version, matching[last].0)),
            _ => None,
        };
        let remaining = continue_token.as_ref().map(|_| remaining);
        Ok(ListPage {
            items,
            resource_version: version,
            continue_token,
            remaining,
        })
    }

    /// Starts a watch without a gap: the first events and the subscription are taken under one
    /// lock. A version older than the history is `410 Gone`, so the client relists.
    pub fn watch(
        &self,
        rt: &ResourceType,
        filter: &Filter,
        from: WatchFrom,
    ) -> Result<WatchStart, ApiError> {
        let state = self.lock();
        let key = rt.key();
        let initial = match from {
            WatchFrom::Current => state
                .objects
                .get(&key)
                .into_iter()
                .flat_map(|objects| objects.values())
                .filter(|object| filter.matches(object))
                .map(|object| (EventType::Added, object.clone()))
                .collect(),
            WatchFrom::Version(version) => {
                if version < state.compacted {
                    return Err(too_old(version));
                }
                state
                    .history
                    .iter()
                    .filter(|change| change.resource_version > version)
                    .filter_map(|change| {
                        change
                            .event_for(&key, filter)
                            .map(|event| (event, change.object.clone()))
                    })
                    .collect()
            }
        };
        Ok(WatchStart {
            initial,
            resource_version: state.resource_version,
            receiver: state.changes.subscribe(),
        })
    }
}

pub fn too_old(version: u64) -> ApiError {
    ApiError::gone(format!("too old resource version: {version}"))
}

fn encode_continue(version: u64, last: &ObjectKey) -> String {
    URL_SAFE_NO_PAD.encode(format!("{version}/{}/{}", last.0, last.1))
}

fn decode_continue(token: &str) -> Result<(u64, ObjectKey), ApiError> {
    let bad = || ApiError::bad_request(format!("invalid continue token {token:?}"));
    let bytes = URL_SAFE_NO_PAD.decode(token).map_err(|_| bad())?;
    let text = String::from_utf8(bytes).map_err(|_| bad())?;
    let mut parts = text.splitn(3, '/');
    let version = parts.next().and_then(|v| v.parse().ok()).ok_or_else(bad)?;
    let namespace = parts.next().ok_or_else(bad)?.to_string();
    let name = parts.next().ok_or_else(bad)?.to_string();
    Ok((version, (namespace, name)))
}

impl State {
    /// A copy to try writes on (dry runs): same objects, a broadcast nobody hears.
    pub fn scratch_copy(&self) -> Self {
        Self {
            resource_version: self.resource_version,
            objects: self.objects.clone(),
            history: self.history.clone(),
            compacted: self.compacted,
            counter: self.counter,
            dependents: self.dependents.clone(),
            changes: broadcast::channel(1).0,
            history_limit: self.history_limit,
            budgets_touched: BTreeSet::new(),
        }
    }

    pub fn get(&self, rt: &ResourceType, namespace: &str, name: &str) -> Result<&Value, ApiError> {
        self.objects
            .get(&rt.key())
            .and_then(|objects| objects.get(&(namespace.to_string(), name.to_string())))
            .ok_or_else(|| ApiError::not_found(super::target(rt, name)))
    }

    pub fn exists(&self, resource: &ResourceKey, key: &ObjectKey) -> bool {
        self.objects
            .get(resource)
            .is_some_and(|objects| objects.contains_key(key))
    }

    pub fn object(&self, resource: &ResourceKey, key: &ObjectKey) -> Option<&Value> {
        self.objects.get(resource)?.get(key)
    }

    /// Objects of one resource in a namespace (all namespaces for `None`).
    pub fn objects_in<'a>(
        &'a self,
        resource: &ResourceKey,
        namespace: Option<&'a str>,
    ) -> Box<dyn Iterator<Item = (&'a ObjectKey, &'a Value)> + 'a> {
        let Some(objects) = self.objects.get(resource) else {
            return Box::new(std::iter::empty());
        };
        match namespace {
            // Keys sort by namespace first, so one namespace is one contiguous range.
            Some(namespace) => Box::new(
                objects
                    .range((namespace.to_string(), String::new())..)
                    .take_while(move |(key, _)| key.0 == namespace),
            ),
            None => Box::new(objects.iter()),
        }
    }

    /// The objects of one resource as they were at `version`, undoing later changes.
    fn snapshot(
        &self,
        resource: &ResourceKey,
        version: u64,
    ) -> Result<Cow<'_, BTreeMap<ObjectKey, Value>>, ApiError> {
        let current = match self.objects.get(resource) {
            Some(objects) => Cow::Borrowed(objects),
            None => Cow::Owned(BTreeMap::new()),
        };
        if version >= self.resource_version {
            return Ok(current);
        }
        if version < self.compacted {
            return Err(ApiError::gone(format!(
                "The provided continue parameter is too old to display a consistent list result (version {version} is compacted). You can start a new list without the continue parameter."
            )));
        }
        let mut objects = current.into_owned();
        for change in self.history.iter().rev() {
            if change.resource_version <= version {
                break;
            }
            if &change.resource != resource {
                continue;
            }
            match &change.old {
                Some(old) => objects.insert(change.key.clone(), old.clone()),
                None => objects.remove(&change.key),
            };
        }
        Ok(Cow::Owned(objects))
    }

    /// Writes an object under a new resourceVersion and tells watchers.
    pub fn put(&mut self, resource: ResourceKey, key: ObjectKey, mut object: Value) -> Value {
        self.resource_version += 1;
        let version = self.resource_version;
        meta::set(
            &mut object,
            "resourceVersion",
            Value::String(version.to_string()),
        );
        let old = self
            .objects
            .entry(resource.clone())
            .or_default()
            .insert(key.clone(), object.clone());
        if let Some(old) = &old {
            self.unindex(&resource, &key, old);
        }
        for owner in meta::owner_uids(&object) {
            self.dependents
                .entry(owner)
                .or_default()
                .insert((resource.clone(), key.clone()));
        }
        let event = if old.is_some() {
            EventType::Modified
        } else {
            EventType::Added
        };
        self.commit(Change {
            event,
            resource,
            key,
            resource_version: version,
            object: object.clone(),
            old,
        });
        object
    }

    /// Removes an object for good; returns its last state (at the deletion's version).
    pub fn remove(&mut self, resource: &ResourceKey, key: &ObjectKey) -> Option<Value> {
        let old = self.objects.get_mut(resource)?.remove(key)?;
        self.unindex(resource, key, &old);
        self.resource_version += 1;
        let version = self.resource_version;
        let mut last = old.clone();
        meta::set(
            &mut last,
            "resourceVersion",
            Value::String(version.to_string()),
        );
        self.commit(Change {
            event: EventType::Deleted,
            resource: resource.clone(),
            key: key.clone(),
            resource_version: version,
            object: last.clone(),
            old: Some(old),
        });
        Some(last)
    }

    /// The objects whose ownerReferences name this uid.
    pub fn dependents_of(&self, uid: &str) -> Vec<(ResourceKey, ObjectKey)> {
        self.dependents
            .get(uid)
            .map(|set| set.iter().cloned().collect())
            .unwrap_or_default()
    }

    fn unindex(&mut self, resource: &ResourceKey, key: &ObjectKey, old: &Value) {
        for owner in meta::owner_uids(old) {
            if let Some(set) = self.dependents.get_mut(&owner) {
                set.remove(&(resource.clone(), key.clone()));
                if set.is_empty() {
                    self.dependents.remove(&owner);
                }
            }
        }
    }

    fn commit(&mut self, change: Change) {
        if super::budgets::affects_budgets(&change.resource)
            && !self.budgets_touched.contains(&change.key.0)
        {
            self.budgets_touched.insert(change.key.0.clone());
        }
        let change = Arc::new(change);
        self.history.push_back(change.clone());
        while self.history.len() > self.history_limit {
            if let Some(dropped) = self.history.pop_front() {
                self.compacted = dropped.resource_version;
            }
        }
        // No receivers is fine: nobody is watching.
        let _ = self.changes.send(change);
    }
}
