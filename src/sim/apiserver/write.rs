//! Writes with the real server's rules: create (names, namespaces, defaults), update (optimistic
//! concurrency, spec/status split, generation, finalizers), delete (grace periods, finalizers,
//! deletionTimestamp) and garbage collection of dependents through ownerReferences.

use std::time::{Duration, SystemTime};

use serde_json::{Value, json};

use super::kinds::{self, DEFAULT_POD_GRACE_SECONDS};
use super::meta;
use super::resources::{Registry, ResourceKey, ResourceType};
use super::status::ApiError;
use super::store::{ObjectKey, PodTermination, State, Store, StoreSettings};
use super::target;

/// Which part of an object a write may change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// Everything but `.status` (for kinds with a status subresource).
    Main,
    /// Only `.status` (the `/status` subresource).
    Status,
}

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

/// The store's state with what writes need: the resource table, the knobs and the time.
pub struct Writer<'a> {
    pub state: &'a mut State,
    pub registry: &'a Registry,
    settings: &'a StoreSettings,
    now: SystemTime,
}

impl Store {
    /// Runs writes under one lock, so a read-check-write (eviction, patch) is atomic.
    pub fn write<R>(&self, action: impl FnOnce(&mut Writer<'_>) -> R) -> R {
        let now = self.now();
        let mut state = self.lock();
        let mut writer = Writer {
            state: &mut state,
            registry: &self.registry,
            settings: &self.settings,
            now,
        };
        let result = action(&mut writer);
        let touched = std::mem::take(&mut writer.state.budgets_touched);
        if !touched.is_empty() {
            writer.refresh_budget_status(&touched);
            // The status writes touch their own namespaces; nothing more to recompute.
            writer.state.budgets_touched.clear();
        }
        result
    }

    /// Like [`Store::write`], or on a throw-away copy of the state when `dry_run` (the
    /// `dryRun=All` parameter): the answer is the same, nothing is stored, no watcher hears.
    pub fn write_or_try<R>(&self, dry_run: bool, action: impl FnOnce(&mut Writer<'_>) -> R) -> R {
        if !dry_run {
            return self.write(action);
        }
        let now = self.now();
        let mut scratch = self.lock().scratch_copy();
        let mut writer = Writer {
            state: &mut scratch,
            registry: &self.registry,
            settings: &self.settings,
            now,
        };
        action(&mut writer)
    }
}

fn key_of(namespace: &str, name: &str) -> ObjectKey {
    (namespace.to_string(), name.to_string())
}

fn namespaces_key() -> ResourceKey {
    (String::new(), "namespaces".into())
}

impl Writer<'_> {
    pub fn now(&self) -> SystemTime {
        self.now
    }

    /// Fills in or checks apiVersion and kind, and the namespace against the URL's.
    fn check_body(rt: &ResourceType, namespace: &str, body: &mut Value) -> Result<(), ApiError> {
        let root = body
            .as_object_mut()
            .ok_or_else(|| ApiError::bad_request("the request body must be a JSON object"))?;
        for (field, expected) in [("apiVersion", rt.api_version()), ("kind", rt.kind.clone())] {
            match root.get(field).and_then(Value::as_str) {
                None => {
                    root.insert(field.into(), Value::String(expected));
                }
                Some(found) if found == expected => {}
                Some(found) => {
                    return Err(ApiError::bad_request(format!(
                        "the {field} in the data ({found}) does not match the expected {field} ({expected})"
                    )));
                }
            }
        }
        match meta::namespace(body) {
            Some(found) if rt.namespaced && found != namespace => {
                Err(ApiError::bad_request(format!(
                    "the namespace of the provided object ({found}) does not match the namespace sent on the request ({namespace})"
                )))
            }
            _ => {
                if rt.namespaced {
                    meta::set(body, "namespace", json!(namespace));
                } else {
                    meta::remove(body, "namespace");
                }
                Ok(())
            }
        }
    }

    pub fn create(
        &mut self,
        rt: &ResourceType,
        namespace: &str,
        mut body: Value,
    ) -> Result<Value, ApiError> {
        Self::check_body(rt, namespace, &mut body)?;
        if rt.namespaced {
            self.require_namespace(namespace)?;
        }
        let name = match (meta::name(&body), meta::metadata(&body)) {
            (Some(name), _) => name.to_string(),
            (None, Some(meta)) if meta.get("generateName").and_then(Value::as_str).is_some() => {
                let prefix = meta
                    .get("generateName")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                self.generate_name(rt, namespace, &prefix)
            }
            _ => {
                return Err(ApiError::invalid(
                    &rt.kind,
                    "",
                    vec![(
                        "metadata.name".into(),
                        "Required value: name or generateName is required".into(),
                    )],
                ));
            }
        };
        if let Some(problem) = meta::name_problem(&name, rt.is("", "namespaces")) {
            return Err(ApiError::invalid(
                &rt.kind,
                &name,
                vec![("metadata.name".into(), problem)],
            ));
        }
        let key = key_of(namespace, &name);
        if self.state.exists(&rt.key(), &key) {
            return Err(ApiError::already_exists(target(rt, &name)));
        }
        self.state.counter += 1;
        let uid = meta::uid_for(self.state.counter);
        meta::set(&mut body, "name", json!(name));
        meta::set(&mut body, "uid", json!(uid));
        meta::set(
            &mut body,
            "creationTimestamp",
            json!(meta::format_time(self.now)),
        );
        meta::set(&mut body, "generation", json!(1));
        for system in [
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "selfLink",
        ] {
            meta::remove(&mut body, system);
        }
        kinds::decodes(rt, &body).map_err(|why| undecodable(rt, &why))?;
        kinds::prepare_create(rt, &mut body);
        let causes = kinds::validate(rt, &body);
        if !causes.is_empty() {
            return Err(ApiError::invalid(&rt.kind, &name, causes));
        }
        let stored = self.state.put(rt.key(), key.clone(), body);
        self.mirror_event(rt, &key, Some(&stored));
        Ok(stored)
    }

    fn require_namespace(&mut self, namespace: &str) -> Result<(), ApiError> {
        let key = key_of("", namespace);
        match self.state.object(&namespaces_key(), &key) {
            Some(found) if meta::is_deleting(found) => Err(ApiError::forbidden(format!(
                "unable to create new content in namespace {namespace} because it is being terminated"
            ))),
            Some(_) => Ok(()),
            None if self.settings.auto_create_namespaces => {
                let rt = self
                    .registry
                    .by_key("", "namespaces")
                    .cloned()
                    .ok_or_else(|| ApiError::internal("namespaces are not served"))?;
                let body = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}});
                self.create(&rt, "", body).map(|_| ())
            }
            None => Err(ApiError::not_found(super::status::Target {
                group: "",
                plural: "namespaces",
                name: namespace,
            })),
        }
    }

    fn generate_name(&mut self, rt: &ResourceType, namespace: &str, prefix: &str) -> String {
        loop {
            self.state.counter += 1;
            let name = format!("{prefix}{}", meta::generated_suffix(self.state.counter));
            if !self.state.exists(&rt.key(), &key_of(namespace, &name)) {
                return name;
            }
        }
    }

    /// A replace (PUT) of the main resource or its status. A resourceVersion in the body is a
    /// precondition: a stale one is `409 Conflict`.
    pub fn update(
        &mut self,
        rt: &ResourceType,
        namespace: &str,
        name: &str,
        mut body: Value,
        part: Part,
    ) -> Result<Value, ApiError> {
        Self::check_body(rt, namespace, &mut body)?;
        if let Some(found) = meta::name(&body)
            && found != name
        {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({found}) does not match the name on the URL ({name})"
            )));
        }
        let old = self.state.get(rt, namespace, name)?.clone();
        if let Some(version) = meta::resource_version(&body)
            && Some(version) != meta::resource_version(&old)
        {
            return Err(ApiError::conflict(
                target(rt, name),
                "the object has been modified; please apply your changes to the latest version and try again",
            ));
        }
        let mut new = match part {
            Part::Main => {
                if rt.status {
                    copy_field(&old, &mut body, "status");
                }
                body
            }
            Part::Status => {
                let mut new = old.clone();
                copy_field(&body, &mut new, "status");
                new
            }
        };
        for system in [
            "name",
            "namespace",
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "generation",
            "resourceVersion",
        ] {
            match meta::metadata(&old).and_then(|meta| meta.get(system)) {
                Some(value) => meta::set(&mut new, system, value.clone()),
                None => meta::remove(&mut new, system),
            }
        }
        if meta::is_deleting(&old) {
            let before = meta::finalizers(&old);
            if meta::finalizers(&new)
                .iter()
                .any(|finalizer| !before.contains(finalizer))
            {
                return Err(ApiError::invalid(
                    &rt.kind,
                    name,
                    vec![(
                        "metadata.finalizers".into(),
                        "Forbidden: no new finalizers can be added if the object is being deleted"
                            .into(),
                    )],
                ));
            }
        }
        let spec_changed = without_meta_and_status(&old) != without_meta_and_status(&new);
        if spec_changed {
            let generation = old.pointer("/metadata/generation").and_then(Value::as_i64);
            meta::set(&mut new, "generation", json!(generation.unwrap_or(0) + 1));
        }
        kinds::decodes(rt, &new).map_err(|why| undecodable(rt, &why))?;
        let mut causes = kinds::validate_update(rt, &old, &new);
        if spec_changed {
            causes.extend(kinds::validate(rt, &new));
        }
        if !causes.is_empty() {
            return Err(ApiError::invalid(&rt.kind, name, causes));
        }
        if new == old {
            return Ok(old);
        }
        let key = key_of(namespace, name);
        if self.may_remove(rt, &new) {
            return self
                .remove(rt, &key)
                .ok_or_else(|| ApiError::not_found(target(rt, name)));
        }
        let stored = self.state.put(rt.key(), key.clone(), new);
        self.mirror_event(rt, &key, Some(&stored));
        Ok(stored)
    }

    /// Reads the current object, lets `change` compute the new body, and writes it as an update
    /// (patches, scale and binding go through here, atomically).
    pub fn modify(
        &mut self,
        rt: &ResourceType,
        namespace: &str,
        name: &str,
        part: Part,
        change: impl FnOnce(&Value) -> Result<Value, ApiError>,
    ) -> Result<Value, ApiError> {
        let current = self.state.get(rt, namespace, name)?.clone();
        let mut body = change(&current)?;
        if meta::resource_version(&body).is_none() {
            meta::set(
                &mut body,
                "resourceVersion",
                json!(meta::resource_version(&current)),
            );
        }
        self.update(rt, namespace, name, body, part)
    }

    /// A deletion whose grace period is over and whose finalizers are gone removes the object.
    fn may_remove(&self, rt: &ResourceType, object: &Value) -> bool {
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
    fn remove(&mut self, rt: &ResourceType, key: &ObjectKey) -> Option<Value> {
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

fn undecodable(rt: &ResourceType, why: &str) -> ApiError {
    ApiError::bad_request(format!(
        "the object is not a valid {} {}: {why}",
        rt.api_version(),
        rt.kind
    ))
}

/// Copies `from[field]` onto `to[field]`, removing it from `to` when `from` lacks it.
fn copy_field(from: &Value, to: &mut Value, field: &str) {
    if let Some(target) = to.as_object_mut() {
        match from.get(field) {
            Some(value) => {
                target.insert(field.to_string(), value.clone());
            }
            None => {
                target.remove(field);
            }
        }
    }
}

/// The object without metadata and status: what `metadata.generation` tracks.
fn without_meta_and_status(object: &Value) -> Value {
    let mut copy = object.clone();
    if let Some(map) = copy.as_object_mut() {
        map.remove("metadata");
        map.remove("status");
    }
    copy
}
