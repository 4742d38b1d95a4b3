//! Server-side printing: `meta.k8s.io/v1` Tables for `kubectl get`, with the columns kubectl
//! users know for pods, nodes and deployments, and the CRDs' `additionalPrinterColumns`.

use std::time::SystemTime;

use axum::http::{HeaderMap, header};
use serde_json::{Value, json};

use super::meta;
use super::resources::{PrinterColumn, ResourceType};
use super::store::Store;

/// Whether the client asked for a Table (`Accept: application/json;as=Table;…`).
pub fn wanted(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|accept| accept.contains("as=Table"))
}

struct Column {
    name: String,
    type_: &'static str,
    priority: i32,
    cell: Box<dyn Fn(&Value) -> Value>,
}

fn column(
    name: &str,
    type_: &'static str,
    priority: i32,
    cell: impl Fn(&Value) -> Value + 'static,
) -> Column {
    Column {
        name: name.into(),
        type_,
        priority,
        cell: Box::new(cell),
    }
}

/// A Table of these objects; `list` carries the list's resourceVersion and continue token.
pub fn table(
    store: &Store,
    rt: &ResourceType,
    objects: &[Value],
    list: Option<(u64, Option<String>)>,
) -> Value {
    let now = store.now();
    let columns = columns(rt, now);
    let definitions: Vec<Value> = columns
        .iter()
        .map(|column| {
            let format = if column.name == "Name" { "name" } else { "" };
            json!({"name": column.name, "type": column.type_, "format": format,
                "description": "", "priority": column.priority})
        })
        .collect();
    let rows: Vec<Value> = objects
        .iter()
        .map(|object| {
            let cells: Vec<Value> = columns.iter().map(|column| (column.cell)(object)).collect();
            let metadata = meta::metadata(object).cloned().unwrap_or_default();
            json!({"cells": cells, "object": {"kind": "PartialObjectMetadata",
                "apiVersion": "meta.k8s.io/v1", "metadata": metadata}})
        })
        .collect();
    let mut metadata = json!({});
    if let Some((version, token)) = list {
        metadata["resourceVersion"] = json!(version.to_string());
        if let Some(token) = token {
            metadata["continue"] = json!(token);
        }
    }
    json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": metadata,
        "columnDefinitions": definitions, "rows": rows})
}

/// An int-or-string field as kubectl prints it, `N/A` when unset.
fn text_or_na(object: &Value, pointer: &str) -> Value {
    match object.pointer(pointer) {
        Some(Value::Number(number)) => json!(number.to_string()),
        Some(Value::String(text)) => json!(text),
        _ => json!("N/A"),
    }
}

fn text(object: &Value, pointer: &str) -> Value {
    object.pointer(pointer).cloned().unwrap_or(json!("<none>"))
}

fn columns(rt: &ResourceType, now: SystemTime) -> Vec<Column> {
    let name = column("Name", "string", 0, |object| {
        json!(meta::name(object).unwrap_or_default())
    });
    let age = move |name: &str| {
        column(name, "string", 0, move |object| {
            age_of(object.pointer("/metadata/creationTimestamp"), now)
        })
    };
    match (rt.group.as_str(), rt.plural.as_str()) {
        ("", "pods") => vec![
            name,
            column("Ready", "string", 0, pod_ready),
            column("Status", "string", 0, pod_status),
            column("Restarts", "integer", 0, |pod| {
                let restarts: i64 = statuses(pod)
                    .filter_map(|status| status.get("restartCount")?.as_i64())
                    .sum();
                json!(restarts)
            }),
            age("Age"),
            column("IP", "string", 1, |pod| text(pod, "/status/podIP")),
            column("Node", "string", 1, |pod| text(pod, "/spec/nodeName")),
        ],
        ("", "nodes") => vec![
            name,
            column("Status", "string", 0, node_status),
            column("Roles", "string", 0, |_| json!("<none>")),
            age("Age"),
            column("Version", "string", 0, |node| {
                text(node, "/status/nodeInfo/kubeletVersion")
            }),
        ],
        ("", "events") => vec![
            column("Last Seen", "string", 0, move |event| {
                let seen = ["/lastTimestamp", "/series/lastObservedTime", "/eventTime"]
                    .iter()
                    .find_map(|pointer| event.pointer(pointer).filter(|value| value.is_string()));
                age_of(seen, now)
            }),
            column("Type", "string", 0, |event| text(event, "/type")),
            column("Reason", "string", 0, |event| text(event, "/reason")),
            column("Object", "string", 0, |event| {
                let field = |name: &str| {
                    event
                        .pointer(&format!("/involvedObject/{name}"))
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string()
                };
                json!(format!(
                    "{}/{}",
                    field("kind").to_lowercase(),
                    field("name")
                ))
            }),
            column("Message", "string", 0, |event| text(event, "/message")),
            Column {
                priority: 1,
                ..name
            },
        ],
        ("apps", "deployments") => vec![
            name,
            column("Ready", "string", 0, |deployment| {
                let ready = deployment
                    .pointer("/status/readyReplicas")
                    .and_then(Value::as_i64);
                let wanted = deployment.pointer("/spec/replicas").and_then(Value::as_i64);
                json!(format!("{}/{}", ready.unwrap_or(0), wanted.unwrap_or(0)))
            }),
            column("Up-to-date", "integer", 0, |deployment| {
                json!(
                    deployment
                        .pointer("/status/updatedReplicas")
                        .and_then(Value::as_i64)
                        .unwrap_or(0)
                )
            }),
            column("Available", "integer", 0, |deployment| {
                json!(
                    deployment
                        .pointer("/status/availableReplicas")
                        .and_then(Value::as_i64)
                        .unwrap_or(0)
                )
            }),
            age("Age"),
        ],
        ("policy", "poddisruptionbudgets") => vec![
            name,
            column("Min Available", "string", 0, |pdb| {
                text_or_na(pdb, "/spec/minAvailable")
            }),
            column("Max Unavailable", "string", 0, |pdb| {
                text_or_na(pdb, "/spec/maxUnavailable")
            }),
            column("Allowed Disruptions", "integer", 0, |pdb| {
                json!(
                    pdb.pointer("/status/disruptionsAllowed")
                        .and_then(Value::as_i64)
                        .unwrap_or(0)
                )
            }),
            age("Age"),
        ],
        _ if !rt.printer_columns.is_empty() => {
            let mut columns = vec![name];
            columns.extend(rt.printer_columns.iter().cloned().map(|printer| {
                let PrinterColumn {
                    name,
                    json_path,
                    type_,
                    priority,
                } = printer;
                let is_date = type_ == "date";
                let type_ = match type_.as_str() {
                    "integer" => "integer",
                    "number" => "number",
                    "boolean" => "boolean",
                    _ => "string",
                };
                column(&name, type_, priority, move |object| {
                    let found = json_path_first(object, &json_path);
                    match found {
                        Some(value) if is_date => age_of(Some(&value), now),
                        Some(value) => value,
                        None => Value::Null,
                    }
                })
            }));
            columns
        }
        _ => vec![name, age("Age")],
    }
}

fn statuses(pod: &Value) -> impl Iterator<Item = &Value> {
    pod.pointer("/status/containerStatuses")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
}

fn pod_ready(pod: &Value) -> Value {
    let total = pod
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    let ready = statuses(pod)
        .filter(|status| status.get("ready").and_then(Value::as_bool) == Some(true))
        .count();
    json!(format!("{ready}/{total}"))
}

fn pod_status(pod: &Value) -> Value {
    if meta::is_deleting(pod) {
        return json!("Terminating");
    }
    let phase = pod
        .pointer("/status/phase")
        .and_then(Value::as_str)
        .unwrap_or("Pending");
    json!(phase)
}

fn node_status(node: &Value) -> Value {
    let ready = node
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .find(|condition| condition.get("type").and_then(Value::as_str) == Some("Ready"))
        .and_then(|condition| condition.get("status")?.as_str());
    let mut status = match ready {
        Some("True") => "Ready".to_string(),
        Some(_) => "NotReady".to_string(),
        None => "Unknown".to_string(),
    };
    if node.pointer("/spec/unschedulable").and_then(Value::as_bool) == Some(true) {
        status.push_str(",SchedulingDisabled");
    }
    json!(status)
}

/// kubectl's short age: `45s`, `3m20s`, `25m`, `5h10m`, `2d3h`, `40d`.
fn age_of(timestamp: Option<&Value>, now: SystemTime) -> Value {
    let Some(when) = timestamp
        .and_then(Value::as_str)
        .and_then(|text| text.parse::<k8s_openapi::jiff::Timestamp>().ok())
        .map(SystemTime::from)
    else {
        return json!("<unknown>");
    };
    let seconds = now.duration_since(when).map_or(0, |age| age.as_secs());
    let (minutes, hours, days) = (seconds / 60, seconds / 3600, seconds / 86_400);
    let text = if seconds < 120 {
        format!("{seconds}s")
    } else if minutes < 10 && !seconds.is_multiple_of(60) {
        format!("{minutes}m{}s", seconds % 60)
    } else if minutes < 180 {
        format!("{minutes}m")
    } else if hours < 8 && !minutes.is_multiple_of(60) {
        format!("{hours}h{}m", minutes % 60)
    } else if hours < 48 {
        format!("{hours}h")
    } else if hours < 192 && !hours.is_multiple_of(24) {
        format!("{days}d{}h", hours % 24)
    } else {
        format!("{days}d")
    };
    json!(text)
}

/// The first value a CRD printer column's JSONPath finds: dotted fields (`\.` escapes a dot in
/// a key) and `[?(@.field=="value")]` filters over lists.
fn json_path_first(object: &Value, path: &str) -> Option<Value> {
    let mut current: Vec<&Value> = vec![object];
    let mut chars = path.chars().peekable();
    while let Some(next) = chars.next() {
        match next {
            '.' => {
                let mut key = String::new();
                while let Some(&c) = chars.peek() {
                    if c == '.' || c == '[' {
                        break;
                    }
                    chars.next();
                    if c == '\\' {
                        key.extend(chars.next());
                    } else {
                        key.push(c);
                    }
                }
                current = current
                    .into_iter()
                    .flat_map(|value| match value {
                        Value::Array(items) => {
                            items.iter().filter_map(|item| item.get(&key)).collect()
                        }
                        other => other.get(&key).into_iter().collect::<Vec<_>>(),
                    })
                    .collect();
            }
            '[' => {
                let inner: String = chars.by_ref().take_while(|c| *c != ']').collect();
                let (field, wanted) = inner
                    .strip_prefix("?(@.")?
                    .strip_suffix(')')?
                    .split_once("==")?;
                let wanted = wanted.trim_matches(|c| c == '"' || c == '\'');
                current = current
                    .into_iter()
                    .filter_map(Value::as_array)
                    .flatten()
                    .filter(|item| item.get(field).and_then(Value::as_str) == Some(wanted))
                    .collect();
            }
            _ => return None,
        }
    }
    current.first().map(|value| (*value).clone())
}
