//! Events: events.k8s.io/v1 and core/v1 are two views of one kind in Kubernetes. Controllers
//! record through events.k8s.io (kube-rs' `Recorder`) while `kubectl describe` reads core/v1,
//! so each events.k8s.io write is mirrored into the core/v1 Event of the same name.

use serde_json::{Map, Value, json};

use super::meta;
use super::resources::{ResourceKey, ResourceType};
use super::store::ObjectKey;
use super::write::Writer;

fn core_events() -> ResourceKey {
    (String::new(), "events".into())
}

/// The core/v1 form of an events.k8s.io/v1 Event (field names as the API's conversion maps
/// them).
pub fn to_core(event: &Value) -> Value {
    let mut core = Map::new();
    core.insert("apiVersion".into(), json!("v1"));
    core.insert("kind".into(), json!("Event"));
    let mut metadata = meta::metadata(event).cloned().unwrap_or_default();
    metadata.remove("resourceVersion");
    core.insert("metadata".into(), Value::Object(metadata));
    let renamed = [
        ("regarding", "involvedObject"),
        ("note", "message"),
        ("reason", "reason"),
        ("type", "type"),
        ("action", "action"),
        ("related", "related"),
        ("reportingController", "reportingComponent"),
        ("reportingInstance", "reportingInstance"),
        ("eventTime", "eventTime"),
        ("series", "series"),
        ("deprecatedFirstTimestamp", "firstTimestamp"),
        ("deprecatedLastTimestamp", "lastTimestamp"),
        ("deprecatedCount", "count"),
    ];
    for (from, to) in renamed {
        if let Some(value) = event.get(from).filter(|value| !value.is_null()) {
            core.insert(to.into(), value.clone());
        }
    }
    let component = event
        .pointer("/deprecatedSource/component")
        .or_else(|| event.get("reportingController"))
        .cloned();
    let host = event.pointer("/deprecatedSource/host").cloned();
    let mut source = Map::new();
    if let Some(component) = component {
        source.insert("component".into(), component);
    }
    if let Some(host) = host {
        source.insert("host".into(), host);
    }
    core.insert("source".into(), Value::Object(source));
    Value::Object(core)
}

impl Writer<'_> {
    /// Keeps the core/v1 view of an events.k8s.io Event in step: written with it (`Some`),
    /// removed with it (`None`).
    pub(super) fn mirror_event(
        &mut self,
        rt: &ResourceType,
        key: &ObjectKey,
        event: Option<&Value>,
    ) {
        if !rt.is("events.k8s.io", "events") {
            return;
        }
        match event {
            Some(event) => {
                self.state.put(core_events(), key.clone(), to_core(event));
            }
            None => {
                self.state.remove(&core_events(), key);
            }
        }
    }
}
