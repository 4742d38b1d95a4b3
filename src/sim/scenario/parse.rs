//! Reading a scenario file. Every file it names is read and every object checked here, so that a
//! bad scenario stops before the cluster starts, with an error naming file, step and reason.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use kube::api::ApiResource;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};

use super::{Action, ApplyObject, Count, DEFAULT_UNTIL_TIMEOUT, Scenario, Step, Until};
use crate::plan::{CatalogSource, ClusterInput};
use crate::settings::parse_duration;
use crate::sim::apiserver::resources::{Registry, ResourceType};

/// A scenario that cannot be run: which file, which step (1-based) and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.render())]
pub struct ScenarioError {
    pub file: PathBuf,
    /// The step's number and action (`3`, `scale`), when the error is in a step.
    pub step: Option<(usize, String)>,
    pub reason: String,
}

impl ScenarioError {
    /// The process exit code for a bad scenario.
    pub const EXIT_CODE: u8 = 2;

    fn render(&self) -> String {
        match &self.step {
            Some((number, action)) => format!(
                "{}: step {number} ({action}): {}",
                self.file.display(),
                self.reason
            ),
            None => format!("{}: {}", self.file.display(), self.reason),
        }
    }
}

/// The top level of a scenario file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScenarioDocument {
    #[serde(default)]
    region: Option<String>,
    #[serde(default)]
    prices: Option<String>,
    #[serde(default)]
    nodes: Option<String>,
    /// Karpenter's settings by name (see [`crate::settings::named`]).
    #[serde(default)]
    settings: Option<serde_json::Map<String, Value>>,
    #[serde(default)]
    steps: Option<Vec<Value>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScaleSpec {
    deployment: String,
    #[serde(default = "default_namespace")]
    namespace: String,
    replicas: i32,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DeleteSpec {
    kind: String,
    #[serde(default)]
    namespace: Option<String>,
    name: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct UntilSpec {
    #[serde(default)]
    pods_running: Option<usize>,
    #[serde(default)]
    nodes: Option<usize>,
    #[serde(default)]
    managed_nodes: Option<usize>,
    #[serde(default)]
    pending_pods: Option<usize>,
    #[serde(default)]
    timeout: Option<Value>,
}

fn default_namespace() -> String {
    "default".to_string()
}

const ACTIONS: &str = "apply, scale, delete, wait or until";

impl Scenario {
    /// Reads and checks the scenario at `path`.
    pub fn load(path: &Path) -> Result<Scenario, ScenarioError> {
        Scenario::load_with_prices(path, None)
    }

    /// Reads the scenario at `path`, taking prices from `prices` (a path from the working
    /// directory, as `simulate --prices` gives it) instead of the scenario's own `prices:`.
    pub fn load_with_prices(path: &Path, prices: Option<&Path>) -> Result<Scenario, ScenarioError> {
        let text = std::fs::read_to_string(path).map_err(|error| ScenarioError {
            file: path.to_path_buf(),
            step: None,
            reason: format!("cannot read: {error}"),
        })?;
        Scenario::parse_with_prices(path, &text, prices)
    }

    /// Parses `text` as the scenario at `path` (which names it in errors and anchors its
    /// relative paths).
    pub fn parse(path: &Path, text: &str) -> Result<Scenario, ScenarioError> {
        Scenario::parse_with_prices(path, text, None)
    }

    fn parse_with_prices(
        path: &Path,
        text: &str,
        prices: Option<&Path>,
    ) -> Result<Scenario, ScenarioError> {
        let whole = |reason: String| ScenarioError {
            file: path.to_path_buf(),
            step: None,
            reason,
        };
        let value: Value = serde_saphyr::from_str(text)
            .map_err(|error| whole(format!("not valid YAML: {error}")))?;
        if !value.is_object() {
            return Err(whole(
                "a scenario is a mapping with steps (and optionally region, prices, nodes)".into(),
            ));
        }
        let document: ScenarioDocument = typed(value).map_err(whole)?;
        let base = path.parent().unwrap_or(Path::new("")).to_path_buf();
        let prices = match prices {
            Some(file) => Some(file.to_path_buf()),
            None => document.prices.as_deref().map(|p| base.join(p)),
        };
        let offerings = CatalogSource {
            prices: prices.clone(),
            region: document.region.clone(),
            ..CatalogSource::default()
        }
        .load()
        .map_err(|error| whole(format!("prices/region: {error}")))?;
        let nodes = match &document.nodes {
            Some(file) => read_nodes(&base.join(file)).map_err(|e| whole(format!("nodes: {e}")))?,
            None => Vec::new(),
        };
        let settings = named_settings(document.settings.unwrap_or_default())
            .map_err(|e| whole(format!("settings: {e}")))?;
        let registry = Registry::new(&crate::apis::crds::crds());
        let mut steps = Vec::new();
        for (index, step) in document.steps.unwrap_or_default().iter().enumerate() {
            steps.push(parse_step(&base, &registry, index + 1, step).map_err(
                |(action, reason)| ScenarioError {
                    file: path.to_path_buf(),
                    step: Some((index + 1, action)),
                    reason,
                },
            )?);
        }
        Ok(Scenario {
            file: path.to_path_buf(),
            region: offerings.region.clone(),
            prices,
            offerings,
            nodes,
            settings,
            steps,
        })
    }
}

/// The `settings:` block as text values (`true`, `3`, `2s`), checked as the controller would
/// take them, so a bad value stops the scenario before anything runs.
fn named_settings(block: Map<String, Value>) -> Result<BTreeMap<String, String>, String> {
    let mut named = BTreeMap::new();
    for (name, value) in block {
        let text = match value {
            Value::String(text) => text,
            Value::Bool(_) | Value::Number(_) => value.to_string(),
            // aws.tags: a JSON object, as the ConfigMap holds it.
            Value::Object(_) => value.to_string(),
            other => return Err(format!("{name}: {other} is not a setting's value")),
        };
        named.insert(name, text);
    }
    crate::settings::named::resolve(&named, "scenario")?;
    Ok(named)
}

/// One step; errors carry the action's name (or `?`) and the reason.
fn parse_step(
    base: &Path,
    registry: &Registry,
    number: usize,
    step: &Value,
) -> Result<Step, (String, String)> {
    let unnamed = |reason: String| ("?".to_string(), reason);
    let Some(fields) = step.as_object() else {
        return Err(unnamed(format!(
            "a step is a mapping with one key, {ACTIONS}"
        )));
    };
    let (key, body) = match fields.iter().collect::<Vec<_>>().as_slice() {
        [(key, body)] => ((*key).clone(), *body),
        [] => return Err(unnamed(format!("empty step: expected {ACTIONS}"))),
        many => {
            let keys: Vec<&str> = many.iter().map(|(k, _)| k.as_str()).collect();
            return Err(unnamed(format!(
                "a step has exactly one action, got {}",
                keys.join(", ")
            )));
        }
    };
    let in_step = |reason: String| (key.clone(), reason);
    let (label, action) = match key.as_str() {
        "apply" => apply(base, registry, body).map_err(in_step)?,
        "scale" => scale(body).map_err(in_step)?,
        "delete" => delete(registry, body).map_err(in_step)?,
        "wait" => {
            let duration = duration(body).map_err(in_step)?;
            (format!("wait {}", text_of(body)), Action::Wait(duration))
        }
        "until" => until(body).map_err(in_step)?,
        other => {
            return Err(in_step(format!(
                "unknown step {other:?}: expected {ACTIONS}"
            )));
        }
    };
    Ok(Step {
        number,
        label,
        action,
    })
}

fn apply(base: &Path, registry: &Registry, body: &Value) -> Result<(String, Action), String> {
    let items: Vec<&Value> = match body {
        Value::Array(items) if items.is_empty() => return Err("apply lists nothing".into()),
        Value::Array(items) => items.iter().collect(),
        other => vec![other],
    };
    let mut labels = Vec::new();
    let mut objects = Vec::new();
    for item in items {
        match item {
            Value::String(file) => {
                let path = base.join(file);
                let text = std::fs::read_to_string(&path)
                    .map_err(|error| format!("cannot read {}: {error}", path.display()))?;
                let documents: Vec<Value> = crate::yaml::from_multiple(&text)
                    .map_err(|error| format!("{}: not valid YAML: {error}", path.display()))?;
                let before = objects.len();
                for (index, document) in documents.into_iter().enumerate() {
                    let origin = format!("{}, document {}", path.display(), index + 1);
                    collect_objects(registry, &origin, document, &mut objects)?;
                }
                if objects.len() == before {
                    return Err(format!("{} holds no objects", path.display()));
                }
                labels.push(file.clone());
            }
            Value::Object(_) => {
                let before = objects.len();
                collect_objects(registry, "inline object", item.clone(), &mut objects)?;
                labels.extend(objects[before..].iter().map(ApplyObject::describe));
            }
            _ => {
                return Err(
                    "apply takes a file name, an object, or a list of file names and objects"
                        .into(),
                );
            }
        }
    }
    Ok((
        format!("apply {}", labels.join(", ")),
        Action::Apply(objects),
    ))
}

/// Adds `object` (or a `kind: List`'s items) after checking the server serves its kind.
fn collect_objects(
    registry: &Registry,
    origin: &str,
    object: Value,
    into: &mut Vec<ApplyObject>,
) -> Result<(), String> {
    if object.is_null() {
        return Ok(());
    }
    let field = |name: &str| object.get(name).and_then(Value::as_str).map(str::to_string);
    let (Some(api_version), Some(kind)) = (field("apiVersion"), field("kind")) else {
        return Err(format!(
            "{origin}: a Kubernetes object needs apiVersion and kind"
        ));
    };
    if kind == "List" {
        let items = match object.get("items") {
            Some(Value::Array(items)) => items.clone(),
            None | Some(Value::Null) => Vec::new(),
            Some(_) => return Err(format!("{origin}: List items must be a list")),
        };
        for item in items {
            collect_objects(registry, origin, item, into)?;
        }
        return Ok(());
    }
    let rt = registry
        .by_kind(&api_version, &kind)
        .ok_or_else(|| format!("{origin}: the simulator serves no {api_version} {kind}"))?;
    let named = object["metadata"]["name"]
        .as_str()
        .is_some_and(|name| !name.is_empty());
    if !named {
        return Err(format!("{origin}: {kind} needs metadata.name"));
    }
    into.push(ApplyObject {
        origin: origin.to_string(),
        resource: api_resource(rt),
        namespaced: rt.namespaced,
        object,
    });
    Ok(())
}

fn scale(body: &Value) -> Result<(String, Action), String> {
    let spec: ScaleSpec = typed(body.clone())?;
    if spec.replicas < 0 {
        return Err(format!(
            "replicas must not be negative, got {}",
            spec.replicas
        ));
    }
    Ok((
        format!(
            "scale {}/{} to {}",
            spec.namespace, spec.deployment, spec.replicas
        ),
        Action::Scale {
            namespace: spec.namespace,
            deployment: spec.deployment,
            replicas: spec.replicas,
        },
    ))
}

fn delete(registry: &Registry, body: &Value) -> Result<(String, Action), String> {
    let spec: DeleteSpec = typed(body.clone())?;
    let rt = resource_named(registry, &spec.kind)
        .ok_or_else(|| format!("the simulator serves no kind {:?}", spec.kind))?;
    let namespace = rt
        .namespaced
        .then(|| spec.namespace.unwrap_or_else(default_namespace));
    let label = match &namespace {
        Some(namespace) => format!("delete {} {namespace}/{}", rt.kind, spec.name),
        None => format!("delete {} {}", rt.kind, spec.name),
    };
    Ok((
        label,
        Action::Delete {
            resource: api_resource(rt),
            namespace,
            name: spec.name,
        },
    ))
}

/// A kind as kubectl takes it: `Deployment`, `deployment`, `deployments` or `deploy`.
fn resource_named<'a>(registry: &'a Registry, name: &str) -> Option<&'a ResourceType> {
    let lower = name.to_ascii_lowercase();
    registry.all().iter().find(|rt| {
        rt.kind.eq_ignore_ascii_case(name)
            || rt.plural == lower
            || rt.singular == lower
            || rt.short_names.contains(&lower)
    })
}

fn until(body: &Value) -> Result<(String, Action), String> {
    let spec: UntilSpec = typed(body.clone())?;
    let conditions: Vec<(Count, usize)> = [
        (Count::PodsRunning, spec.pods_running),
        (Count::Nodes, spec.nodes),
        (Count::ManagedNodes, spec.managed_nodes),
        (Count::PendingPods, spec.pending_pods),
    ]
    .into_iter()
    .filter_map(|(count, wanted)| wanted.map(|n| (count, n)))
    .collect();
    if conditions.is_empty() {
        return Err(
            "until needs at least one of podsRunning, nodes, managedNodes, pendingPods".into(),
        );
    }
    let timeout = match &spec.timeout {
        Some(value) => duration(value).map_err(|e| format!("timeout: {e}"))?,
        None => DEFAULT_UNTIL_TIMEOUT,
    };
    let wanted: Vec<String> = conditions
        .iter()
        .map(|(count, n)| format!("{}={n}", count.key()))
        .collect();
    Ok((
        format!("until {}", wanted.join(", ")),
        Action::Until(Until {
            conditions,
            timeout,
        }),
    ))
}

/// A duration written as text (`90s`, `5m`, `1m30s`).
fn duration(value: &Value) -> Result<Duration, String> {
    match value {
        Value::String(text) => parse_duration(text),
        other => Err(format!(
            "{other} is not a duration: write it with a unit, e.g. 90s or 5m"
        )),
    }
}

fn text_of(value: &Value) -> String {
    value
        .as_str()
        .map_or_else(|| value.to_string(), str::to_string)
}

/// Deserializes `value`, naming the field that did not fit.
fn typed<T: DeserializeOwned>(value: Value) -> Result<T, String> {
    serde_path_to_error::deserialize(value).map_err(|error| {
        let path = error.path().to_string();
        let inner = error.into_inner().to_string();
        if path == "." {
            inner
        } else {
            format!("{path}: {inner}")
        }
    })
}

fn api_resource(rt: &ResourceType) -> ApiResource {
    ApiResource {
        group: rt.group.clone(),
        version: rt.version.clone(),
        api_version: rt.api_version(),
        kind: rt.kind.clone(),
        plural: rt.plural.clone(),
    }
}

/// The Node objects of a nodes file, made Ready (with allocatable defaulting to capacity).
fn read_nodes(path: &Path) -> Result<Vec<Value>, String> {
    let input = ClusterInput::read_files(&[path.to_path_buf()]).map_err(|e| e.to_string())?;
    let others = input.pods.len()
        + input.provisioners.len()
        + input.node_templates.len()
        + input.daemonsets.len();
    if others > 0 {
        return Err(format!(
            "{} may hold only Node objects (apply the rest in a step)",
            path.display()
        ));
    }
    input
        .nodes
        .iter()
        .map(|node| ready_node(path, node))
        .collect()
}

fn ready_node(path: &Path, node: &Node) -> Result<Value, String> {
    let mut object = serde_json::to_value(node)
        .map_err(|error| format!("{}: a node does not serialize: {error}", path.display()))?;
    let name = object["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    if name.is_empty() {
        return Err(format!("{}: a node needs metadata.name", path.display()));
    }
    let status = object
        .as_object_mut()
        .map(|o| o.entry("status").or_insert_with(|| json!({})))
        .and_then(Value::as_object_mut)
        .ok_or_else(|| format!("{}: node {name}: status must be a mapping", path.display()))?;
    let capacity = status.get("capacity").filter(|c| !c.is_null()).cloned();
    let allocatable = status.get("allocatable").filter(|a| !a.is_null()).cloned();
    match (capacity, allocatable) {
        (None, None) => {
            return Err(format!(
                "{}: node {name} has neither status.capacity nor status.allocatable, so no pod could run on it",
                path.display()
            ));
        }
        (Some(capacity), None) => {
            status.insert("allocatable".into(), capacity);
        }
        (None, Some(allocatable)) => {
            status.insert("capacity".into(), allocatable);
        }
        (Some(_), Some(_)) => {}
    }
    set_ready(status);
    Ok(object)
}

/// Replaces (or adds) the Ready condition with Ready=True.
fn set_ready(status: &mut Map<String, Value>) {
    let ready = json!({"type": "Ready", "status": "True", "reason": "KubeletReady",
        "message": "pre-existing node of the scenario"});
    let mut conditions: Vec<Value> = status
        .get("conditions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    conditions.retain(|c| c["type"] != "Ready");
    conditions.push(ready);
    status.insert("conditions".into(), Value::Array(conditions));
}
