//! PATCH bodies: JSON patch (RFC 6902, through the `json-patch` crate), JSON merge patch
//! (RFC 7386) and the strategic merge patch kubectl and kube-rs send for built-in kinds: maps
//! merge, lists with a merge key (containers by name, conditions by type, …) merge item by item,
//! finalizers merge as a set, other lists are replaced; `$patch`, `$retainKeys`,
//! `$deleteFromPrimitiveList` and `$setElementOrder` directives are understood.

use serde_json::{Map, Value};

use super::status::ApiError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchKind {
    Json,
    Merge,
    Strategic,
    /// Server-side apply, simplified: the applied object is merged into the live one (or
    /// created); field ownership is not tracked.
    Apply,
}

impl PatchKind {
    pub fn from_content_type(content_type: &str) -> Result<Self, ApiError> {
        let media = content_type
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        match media.as_str() {
            "application/json-patch+json" => Ok(Self::Json),
            "application/merge-patch+json" => Ok(Self::Merge),
            "application/strategic-merge-patch+json" => Ok(Self::Strategic),
            "application/apply-patch+yaml" | "application/apply-patch+cbor" => Ok(Self::Apply),
            _ => Err(ApiError::unsupported_media_type(content_type)),
        }
    }
}

/// Parses a PATCH body: JSON for every kind, YAML (a superset) for apply.
pub fn parse_body(kind: PatchKind, body: &[u8]) -> Result<Value, ApiError> {
    match serde_json::from_slice(body) {
        Ok(value) => Ok(value),
        Err(json_error) if kind == PatchKind::Apply => {
            let text = std::str::from_utf8(body)
                .map_err(|_| ApiError::bad_request("the apply body is not UTF-8"))?;
            serde_saphyr::from_str::<Value>(text).map_err(|yaml_error| {
                ApiError::bad_request(format!(
                    "error decoding YAML: {yaml_error} (as JSON: {json_error})"
                ))
            })
        }
        Err(error) => Err(ApiError::bad_request(format!(
            "error decoding patch: {error}"
        ))),
    }
}

/// The object after applying a patch of this kind to `current`.
pub fn apply(
    kind: PatchKind,
    current: &Value,
    patch: &Value,
    strategic: bool,
) -> Result<Value, ApiError> {
    let mut result = current.clone();
    match kind {
        PatchKind::Json => {
            let operations: json_patch::Patch = serde_json::from_value(patch.clone())
                .map_err(|error| ApiError::bad_request(format!("invalid JSON patch: {error}")))?;
            for operation in operations.iter() {
                // As the real server (evanphx/json-patch) does, testing a missing path for
                // null passes: kube's finalizer helper relies on it for the first finalizer.
                if let json_patch::PatchOperation::Test(test) = operation
                    && test.value.is_null()
                    && result.pointer(test.path.as_str()).is_none()
                {
                    continue;
                }
                json_patch::patch(&mut result, std::slice::from_ref(operation)).map_err(
                    |error| {
                        ApiError::invalid("Patch", "", vec![("patch".into(), error.to_string())])
                    },
                )?;
            }
        }
        PatchKind::Merge => merge_patch(&mut result, patch),
        PatchKind::Strategic | PatchKind::Apply if strategic => {
            strategic_merge(&mut result, patch)?
        }
        PatchKind::Apply => merge_patch(&mut result, patch),
        PatchKind::Strategic => {
            return Err(ApiError::unsupported_media_type(
                "application/strategic-merge-patch+json (not supported for custom resources)",
            ));
        }
    }
    if !result.is_object() {
        return Err(ApiError::bad_request(
            "the patched object is not a JSON object",
        ));
    }
    Ok(result)
}

/// RFC 7386: objects merge recursively, `null` deletes, anything else replaces.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    if let Value::Object(map) = target {
        for (key, value) in patch {
            if value.is_null() {
                map.remove(key);
            } else {
                merge_patch(map.entry(key.clone()).or_insert(Value::Null), value);
            }
        }
    }
}

/// How a list field merges in a strategic merge patch (the `patchStrategy`/`patchMergeKey` of
/// the Kubernetes types, by field name).
#[derive(Debug, Clone, Copy, PartialEq)]
enum ListStrategy {
    ByKey(&'static str),
    Set,
    Replace,
}

fn list_strategy(field: &str, items: &[Value]) -> ListStrategy {
    match field {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "env"
        | "volumes"
        | "imagePullSecrets"
        | "resourceClaims" => ListStrategy::ByKey("name"),
        "volumeMounts" => ListStrategy::ByKey("mountPath"),
        "volumeDevices" => ListStrategy::ByKey("devicePath"),
        "conditions" | "addresses" => ListStrategy::ByKey("type"),
        "ownerReferences" => ListStrategy::ByKey("uid"),
        "hostAliases" | "podIPs" | "hostIPs" => ListStrategy::ByKey("ip"),
        "topologySpreadConstraints" => ListStrategy::ByKey("topologyKey"),
        "ports" => {
            let container_ports = items.iter().any(|item| item.get("containerPort").is_some());
            ListStrategy::ByKey(if container_ports {
                "containerPort"
            } else {
                "port"
            })
        }
        "finalizers" => ListStrategy::Set,
        _ => ListStrategy::Replace,
    }
}

const DIRECTIVE: &str = "$patch";
const RETAIN_KEYS: &str = "$retainKeys";
const DELETE_FROM_PRIMITIVE: &str = "$deleteFromPrimitiveList/";
const SET_ELEMENT_ORDER: &str = "$setElementOrder/";

/// Applies a strategic merge patch to an object.
pub fn strategic_merge(target: &mut Value, patch: &Value) -> Result<(), ApiError> {
    let Value::Object(patch) = patch else {
        return Err(ApiError::bad_request(
            "a strategic merge patch must be an object",
        ));
    };
    match patch.get(DIRECTIVE).and_then(Value::as_str) {
        Some("replace") => {
            *target = strip_directives(&Value::Object(patch.clone()));
            return Ok(());
        }
        Some("delete") => {
            *target = Value::Object(Map::new());
            return Ok(());
        }
        Some(other) if other != "merge" => {
            return Err(ApiError::bad_request(format!(
                "unknown patch directive {other:?}"
            )));
        }
        _ => {}
    }
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let Value::Object(map) = target else {
        return Ok(());
    };
    for (key, value) in patch {
        if key == DIRECTIVE || key == RETAIN_KEYS || key.starts_with(SET_ELEMENT_ORDER) {
            continue;
        }
        if let Some(field) = key.strip_prefix(DELETE_FROM_PRIMITIVE) {
            let doomed: Vec<&Value> = value.as_array().into_iter().flatten().collect();
            if let Some(list) = map.get_mut(field).and_then(Value::as_array_mut) {
                list.retain(|item| !doomed.contains(&item));
            }
            continue;
        }
        match value {
            Value::Null => {
                map.remove(key);
            }
            Value::Object(inner) => {
                if inner.get(DIRECTIVE).and_then(Value::as_str) == Some("delete") {
                    map.remove(key);
                } else {
                    strategic_merge(map.entry(key.clone()).or_insert(Value::Null), value)?;
                }
            }
            Value::Array(items) => {
                let slot = map.entry(key.clone()).or_insert(Value::Array(Vec::new()));
                merge_list(slot, items, key)?;
            }
            scalar => {
                map.insert(key.clone(), scalar.clone());
            }
        }
    }
    if let Some(retained) = patch.get(RETAIN_KEYS).and_then(Value::as_array) {
        let keep: Vec<&str> = retained.iter().filter_map(Value::as_str).collect();
        map.retain(|key, _| keep.contains(&key.as_str()));
    }
    Ok(())
}

fn merge_list(target: &mut Value, patch: &[Value], field: &str) -> Result<(), ApiError> {
    let replace_all = patch
        .iter()
        .any(|item| item.get(DIRECTIVE).and_then(Value::as_str) == Some("replace"));
    let items: Vec<&Value> = patch
        .iter()
        .filter(|item| item.get(DIRECTIVE).and_then(Value::as_str) != Some("replace"))
        .collect();
    let strategy = list_strategy(field, patch);
    if replace_all || strategy == ListStrategy::Replace || !target.is_array() {
        *target = Value::Array(items.iter().map(|item| strip_directives(item)).collect());
        return Ok(());
    }
    let Value::Array(list) = target else {
        return Ok(());
    };
    match strategy {
        ListStrategy::Set => {
            for item in items {
                if !list.contains(item) {
                    list.push(item.clone());
                }
            }
        }
        ListStrategy::ByKey(merge_key) => {
            for item in items {
                let Some(wanted) = item.get(merge_key) else {
                    return Err(ApiError::bad_request(format!(
                        "map: {item} does not contain declared merge key: {merge_key}"
                    )));
                };
                let position = list
                    .iter()
                    .position(|existing| existing.get(merge_key) == Some(wanted));
                let delete = item.get(DIRECTIVE).and_then(Value::as_str) == Some("delete");
                match (position, delete) {
                    (Some(index), true) => {
                        list.remove(index);
                    }
                    (None, true) => {}
                    (Some(index), false) => strategic_merge(&mut list[index], item)?,
                    (None, false) => list.push(strip_directives(item)),
                }
            }
        }
        ListStrategy::Replace => {}
    }
    Ok(())
}

/// A patch fragment as plain data, without `$…` directive keys.
fn strip_directives(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(key, _)| !key.starts_with('$'))
                .map(|(key, value)| (key.clone(), strip_directives(value)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(strip_directives).collect()),
        other => other.clone(),
    }
}
