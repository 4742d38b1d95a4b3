//! Deletes with the real server's rules: preconditions, grace periods, finalizers and
//! deletionTimestamp, garbage collection of dependents through ownerReferences, and namespaces
//! that finish once empty.

use std::time::Duration;

use serde_json::{Value, json};

use super::{Writer, key_of, namespaces_key};
use crate::sim::apiserver::kinds::DEFAULT_POD_GRACE_SECONDS;
use crate::sim::apiserver::meta;
use crate::sim::apiserver::resources::ResourceType;
use crate::sim::apiserver::status::ApiError;
use crate::sim::apiserver::store::{ObjectKey, PodTermination};
use crate::sim::apiserver::target;

/// What happens to dependents (objects whose ownerReferences name the deleted object).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Propagation {
    #[default]
    Background,
    Foreground,
    Orphan,
}

#[derive(Debug, Clone, Default)]
pub struct DeleteOptions {
    pub grace_period_seconds: Option<i64>,
    pub propagation: Propagation,
    pub precondition_uid: Option<String>,
    pub precondition_resource_version: Option<String>,
}

/// The outcome of a delete.
#[derive(Debug)]
pub enum Deleted {
    /// Gone; its last state.
    Removed(Value),
    /// Still there, marked with deletionTimestamp (finalizers or a pod's grace period hold it).
    Pending(Value),
}

impl Writer<'_> {
    /// A deletion whose grace period is over and whose finalizers are gone removes the object.
    pub(super) fn may_remove(&self, rt: &ResourceType, object: &Value) -> bool {
        let grace_over = object
            .pointer("/metadata/deletionGracePeriodSeconds")
            .and_then(Value::as_i64)
            .is_none_or(|grace| grace == 0);
        meta::is_deleting(object)
            && meta::finalizers(object).is_empty()
            && (!rt.is("", "pods") || grace_over)
    }

    pub fn delete(
        &mut self,
        rt: &ResourceType,
        namespace: &str,
        name: &str,
        options: &DeleteOptions,
    ) -> Result<Deleted, ApiError> {
        let key = key_of(namespace, name);
        let object = self.state.get(rt, namespace, name)?.clone();
        let stale = |expected: &Option<String>, found: Option<&str>| {
            expected
                .as_deref()
                .is_some_and(|expected| Some(expected) != found)
        };
        if stale(&options.precondition_uid, meta::uid(&object))
            || stale(
                &options.precondition_resource_version,
                meta::resource_version(&object),
            )
        {
            return Err(ApiError::conflict(
                target(rt, name),
                "the precondition (uid or resourceVersion) does not match the object",
            ));
        }
        let uid = meta::uid(&object).unwrap_or_default().to_string();
        match options.propagation {
            Propagation::Orphan => self.orphan_dependents(&uid),
            Propagation::Foreground => self.delete_dependents(&uid),
            Propagation::Background => {}
        }
        let grace = if rt.is("", "pods") {
            self.pod_grace(&object, options.grace_period_seconds)
        } else {
            0
        };
        let mut marked = object.clone();
        if meta::is_deleting(&object) {
            let pending = object
                .pointer("/metadata/deletionGracePeriodSeconds")
                .and_then(Value::as_i64)
                .unwrap_or(0);
            if grace >= pending {
                return Ok(Deleted::Pending(object));
            }
            // A shorter grace period (a kubelet's final delete) moves the deadline forward.
            meta::set(&mut marked, "deletionGracePeriodSeconds", json!(grace));
        } else {
            let deadline = self.now + Duration::from_secs(grace.unsigned_abs());
            meta::set(
                &mut marked,
                "deletionTimestamp",
                json!(meta::format_time(deadline)),
            );
            meta::set(&mut marked, "deletionGracePeriodSeconds", json!(grace));
            if grace > 0 {
                let generation = object
                    .pointer("/metadata/generation")
                    .and_then(Value::as_i64);
                meta::set(
                    &mut marked,
                    "generation",
                    json!(generation.unwrap_or(0) + 1),
                );
            }
        }
        if rt.is("", "namespaces") {
            if let Some(status) = marked.get_mut("status").and_then(Value::as_object_mut) {
                status.insert("phase".into(), json!("Terminating"));
            }
            let marked = self.state.put(rt.key(), key.clone(), marked);
            self.delete_namespace_contents(name);
            self.finish_namespace(name);
            return Ok(match self.state.object(&rt.key(), &key) {
                Some(left) => Deleted::Pending(left.clone()),
                None => Deleted::Removed(marked),
            });
        }
        if self.may_remove(rt, &marked) {
            return self
                .remove(rt, &key)
                .map(Deleted::Removed)
                .ok_or_else(|| ApiError::not_found(target(rt, name)));
        }
        Ok(Deleted::Pending(self.state.put(rt.key(), key, marked)))
    }

    /// A pod's grace period: none for unbound or finished pods, else the request's or the spec's.
    fn pod_grace(&self, pod: &Value, requested: Option<i64>) -> i64 {
        let bound = pod
            .pointer("/spec/nodeName")
            .and_then(Value::as_str)
            .is_some_and(|node| !node.is_empty());
        let finished = matches!(
            pod.pointer("/status/phase").and_then(Value::as_str),
            Some("Succeeded" | "Failed")
        );
        if !bound || finished || self.settings.pod_termination == PodTermination::Immediate {
            return 0;
        }
        requested
            .or_else(|| {
                pod.pointer("/spec/terminationGracePeriodSeconds")
                    .and_then(Value::as_i64)
            })
            .unwrap_or(DEFAULT_POD_GRACE_SECONDS)
            .max(0)
    }

    /// Removes an object for good, then its dependents (background garbage collection) and,
    /// for the last object of a terminating namespace, the namespace.
    pub(super) fn remove(&mut self, rt: &ResourceType, key: &ObjectKey) -> Option<Value> {
        let last = self.state.remove(&rt.key(), key)?;
        self.mirror_event(rt, key, None);
        if let Some(uid) = meta::uid(&last) {
            self.delete_dependents(uid);
        }
        if rt.namespaced {
            self.finish_namespace(&key.0);
        }
        Some(last)
    }

    /// Deletes every object that names `uid` as an owner and has no other living owner.
    fn delete_dependents(&mut self, uid: &str) {
        for (resource, key) in self.state.dependents_of(uid) {
            let Some(rt) = self.registry.by_key(&resource.0, &resource.1).cloned() else {
                continue;
            };
            let other_owner_alive = self
                .state
                .object(&resource, &key)
                .map(meta::owner_uids)
                .into_iter()
                .flatten()
                .any(|owner| owner != uid && self.uid_exists(&owner));
            if !other_owner_alive {
                // Already gone or already terminating is fine: the collector moves on.
                let _ = self.delete(&rt, &key.0, &key.1, &DeleteOptions::default());
            }
        }
    }

    fn uid_exists(&self, uid: &str) -> bool {
        self.state
            .objects
            .values()
            .flat_map(|objects| objects.values())
            .any(|object| meta::uid(object) == Some(uid))
    }

    /// Drops the ownerReferences naming `uid`, so the dependents outlive their owner.
    fn orphan_dependents(&mut self, uid: &str) {
        for (resource, key) in self.state.dependents_of(uid) {
            let Some(mut object) = self.state.object(&resource, &key).cloned() else {
                continue;
            };
            if let Some(owners) = object
                .pointer_mut("/metadata/ownerReferences")
                .and_then(Value::as_array_mut)
            {
                owners.retain(|owner| owner.get("uid").and_then(Value::as_str) != Some(uid));
            }
            self.state.put(resource, key, object);
        }
    }

    fn delete_namespace_contents(&mut self, namespace: &str) {
        for resource in self.registry.namespaced_keys() {
            let Some(rt) = self.registry.by_key(&resource.0, &resource.1).cloned() else {
                continue;
            };
            let names: Vec<String> = self
                .state
                .objects_in(&resource, Some(namespace))
                .map(|(key, _)| key.1.clone())
                .collect();
            for name in names {
                let _ = self.delete(&rt, namespace, &name, &DeleteOptions::default());
            }
        }
    }

    /// Removes a terminating namespace once nothing is left in it.
    fn finish_namespace(&mut self, namespace: &str) -> Option<Value> {
        let key = key_of("", namespace);
        let terminating = self
            .state
            .object(&namespaces_key(), &key)
            .is_some_and(|found| meta::is_deleting(found) && meta::finalizers(found).is_empty());
        if !terminating {
            return None;
        }
        let empty = self.registry.namespaced_keys().iter().all(|resource| {
            self.state
                .objects_in(resource, Some(namespace))
                .next()
                .is_none()
        });
        if empty {
            self.state.remove(&namespaces_key(), &key)
        } else {
            None
        }
    }
}
