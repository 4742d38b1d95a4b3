//! Reading and writing `metadata` on objects kept as JSON, and the rules for names and times.

use std::time::SystemTime;

use k8s_openapi::jiff::Timestamp;
use serde_json::{Map, Value};

/// RFC 3339 in seconds, UTC, as Kubernetes writes `metav1.Time`.
pub fn format_time(time: SystemTime) -> String {
    Timestamp::try_from(time)
        .ok()
        .and_then(|stamp| k8s_openapi::jiff::fmt::strtime::format("%Y-%m-%dT%H:%M:%SZ", stamp).ok())
        .unwrap_or_else(|| "1970-01-01T00:00:00Z".to_string())
}

pub fn metadata(object: &Value) -> Option<&Map<String, Value>> {
    object.get("metadata")?.as_object()
}

/// `metadata` as a mutable map, created when absent. `None` only when the object is not a map.
pub fn metadata_mut(object: &mut Value) -> Option<&mut Map<String, Value>> {
    let root = object.as_object_mut()?;
    let entry = root
        .entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()));
    if !entry.is_object() {
        *entry = Value::Object(Map::new());
    }
    entry.as_object_mut()
}

fn field<'a>(object: &'a Value, name: &str) -> Option<&'a str> {
    metadata(object)?.get(name)?.as_str()
}

pub fn name(object: &Value) -> Option<&str> {
    field(object, "name").filter(|name| !name.is_empty())
}

pub fn namespace(object: &Value) -> Option<&str> {
    field(object, "namespace").filter(|namespace| !namespace.is_empty())
}

pub fn uid(object: &Value) -> Option<&str> {
    field(object, "uid")
}

pub fn resource_version(object: &Value) -> Option<&str> {
    field(object, "resourceVersion").filter(|version| !version.is_empty())
}

pub fn is_deleting(object: &Value) -> bool {
    field(object, "deletionTimestamp").is_some()
}

pub fn finalizers(object: &Value) -> Vec<String> {
    metadata(object)
        .and_then(|meta| meta.get("finalizers"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|finalizer| finalizer.as_str().map(str::to_string))
        .collect()
}

/// The uids this object's `ownerReferences` point at.
pub fn owner_uids(object: &Value) -> Vec<String> {
    metadata(object)
        .and_then(|meta| meta.get("ownerReferences"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|owner| owner.get("uid")?.as_str().map(str::to_string))
        .collect()
}

pub fn set(object: &mut Value, key: &str, value: Value) {
    if let Some(meta) = metadata_mut(object) {
        meta.insert(key.to_string(), value);
    }
}

pub fn remove(object: &mut Value, key: &str) {
    if let Some(meta) = metadata_mut(object) {
        meta.remove(key);
    }
}

/// A DNS-1123 subdomain (most kinds) or label (namespaces): what the real server accepts.
pub fn name_problem(name: &str, label_only: bool) -> Option<String> {
    let limit = if label_only { 63 } else { 253 };
    let allowed = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-';
    let segments_ok = name.split('.').all(|segment| {
        !segment.is_empty()
            && segment.chars().all(allowed)
            && !segment.starts_with('-')
            && !segment.ends_with('-')
    });
    let ok = name.len() <= limit && segments_ok && !(label_only && name.contains('.'));
    (!ok).then(|| {
        let form = if label_only {
            "a lowercase RFC 1123 label"
        } else {
            "a lowercase RFC 1123 subdomain"
        };
        format!(
            "Invalid value: {name:?}: must be {form}: lowercase alphanumerics, '-' (and '.' between labels), starting and ending with an alphanumeric, at most {limit} characters"
        )
    })
}

/// The five-character suffix for `generateName`, from the alphabet the real server uses.
pub fn generated_suffix(mut seed: u64) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    // A multiplicative hash spreads consecutive seeds across the alphabet.
    seed = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(17);
    (0..5)
        .map(|_| {
            let index = (seed % ALPHABET.len() as u64) as usize;
            seed /= ALPHABET.len() as u64;
            char::from(ALPHABET[index])
        })
        .collect()
}

/// A version-4-shaped uid from a counter: unique within the server and repeatable across runs.
pub fn uid_for(counter: u64) -> String {
    let mixed = counter.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    format!(
        "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
        (mixed >> 32) as u32,
        (mixed >> 16) as u16,
        (mixed & 0xfff) as u16,
        (counter >> 48) as u16 & 0xfff,
        counter & 0xffff_ffff_ffff
    )
}
