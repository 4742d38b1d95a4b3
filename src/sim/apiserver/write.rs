//! Writes with the real server's rules: create (names, namespaces, defaults) and update
//! (optimistic concurrency, spec/status split, generation, finalizers); deletes are in
//! [`delete`].

mod delete;

pub use delete::{DeleteOptions, Deleted, Propagation};

use std::time::SystemTime;

use serde_json::{Value, json};

use super::kinds;
use super::meta;
use super::resources::{Registry, ResourceKey, ResourceType};
use super::status::ApiError;
use super::store::{ObjectKey, State, Store, StoreSettings};
use super::target;

/// Which part of an object a write may change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// Everything but `.status` (for kinds with a status subresource).
    Main,
    /// Only `.status` (the `/status` subresource).
    Status,
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
