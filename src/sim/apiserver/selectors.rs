//! Label selectors (`a=b`, `a==b`, `a!=b`, `a in (x,y)`, `a notin (x)`, `a`, `!a`, `a>1`, `a<1`)
//! and field selectors (`f=v`, `f==v`, `f!=v` over the fields each kind supports), parsed from
//! query strings and matched against stored JSON objects.

use serde_json::Value;

use super::status::ApiError;

/// One parsed label requirement.
#[derive(Debug, Clone, PartialEq)]
enum LabelRequirement {
    Equals(String, String),
    NotEquals(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    NotExists(String),
    GreaterThan(String, i64),
    LessThan(String, i64),
}

/// A parsed label selector; the empty selector matches everything.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LabelSelector(Vec<LabelRequirement>);

impl LabelSelector {
    pub fn parse(text: &str) -> Result<Self, ApiError> {
        split_top_level(text)
            .into_iter()
            .map(|term| term.trim().to_string())
            .filter(|term| !term.is_empty())
            .map(|term| parse_requirement(&term))
            .collect::<Result<Vec<_>, _>>()
            .map(Self)
    }

    /// From a `metav1.LabelSelector` object (matchLabels and matchExpressions), as PDBs and
    /// deployments carry them. `None` when the object is malformed.
    pub fn from_object(selector: &Value) -> Option<Self> {
        let mut requirements = Vec::new();
        if let Some(labels) = selector.get("matchLabels") {
            for (key, value) in labels.as_object()? {
                requirements.push(LabelRequirement::Equals(
                    key.clone(),
                    value.as_str()?.to_string(),
                ));
            }
        }
        for expression in selector
            .get("matchExpressions")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let key = expression.get("key")?.as_str()?.to_string();
            let values: Vec<String> = expression
                .get("values")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|value| value.as_str().map(str::to_string))
                .collect();
            requirements.push(match expression.get("operator")?.as_str()? {
                "In" => LabelRequirement::In(key, values),
                "NotIn" => LabelRequirement::NotIn(key, values),
                "Exists" => LabelRequirement::Exists(key),
                "DoesNotExist" => LabelRequirement::NotExists(key),
                _ => return None,
            });
        }
        Some(Self(requirements))
    }

    /// Whether an object's `metadata.labels` satisfy every requirement.
    pub fn matches(&self, object: &Value) -> bool {
        let labels = object.pointer("/metadata/labels");
        let label = |key: &str| labels.and_then(|labels| labels.get(key)?.as_str());
        self.0.iter().all(|requirement| match requirement {
            LabelRequirement::Equals(key, value) => label(key) == Some(value.as_str()),
            LabelRequirement::NotEquals(key, value) => label(key) != Some(value.as_str()),
            LabelRequirement::In(key, values) => {
                label(key).is_some_and(|found| values.iter().any(|value| value == found))
            }
            LabelRequirement::NotIn(key, values) => {
                label(key).is_none_or(|found| values.iter().all(|value| value != found))
            }
            LabelRequirement::Exists(key) => label(key).is_some(),
            LabelRequirement::NotExists(key) => label(key).is_none(),
            LabelRequirement::GreaterThan(key, bound) => label(key)
                .and_then(|found| found.parse::<i64>().ok())
                .is_some_and(|found| found > *bound),
            LabelRequirement::LessThan(key, bound) => label(key)
                .and_then(|found| found.parse::<i64>().ok())
                .is_some_and(|found| found < *bound),
        })
    }

    /// `app=web,tier=front` for a Scale's `status.selector`.
    pub fn to_query(&self) -> String {
        self.0
            .iter()
            .map(|requirement| match requirement {
                LabelRequirement::Equals(key, value) => format!("{key}={value}"),
                LabelRequirement::NotEquals(key, value) => format!("{key}!={value}"),
                LabelRequirement::In(key, values) => format!("{key} in ({})", values.join(",")),
                LabelRequirement::NotIn(key, values) => {
                    format!("{key} notin ({})", values.join(","))
                }
                LabelRequirement::Exists(key) => key.clone(),
                LabelRequirement::NotExists(key) => format!("!{key}"),
                LabelRequirement::GreaterThan(key, bound) => format!("{key}>{bound}"),
                LabelRequirement::LessThan(key, bound) => format!("{key}<{bound}"),
            })
            .collect::<Vec<_>>()
            .join(",")
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Splits on commas outside parentheses: `a in (x,y),b` is two terms.
fn split_top_level(text: &str) -> Vec<&str> {
    let mut terms = Vec::new();
    let mut depth = 0usize;
    let mut start = 0;
    for (index, character) in text.char_indices() {
        match character {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                terms.push(&text[start..index]);
                start = index + 1;
            }
            _ => {}
        }
    }
    terms.push(&text[start..]);
    terms
}

fn parse_requirement(term: &str) -> Result<LabelRequirement, ApiError> {
    let bad = |why: &str| {
        ApiError::bad_request(format!(
            "unable to parse requirement: {why} in label selector {term:?}"
        ))
    };
    if let Some(key) = term.strip_prefix('!') {
        return Ok(LabelRequirement::NotExists(valid_key(key.trim(), &bad)?));
    }
    for (operator, is_in) in [(" notin ", false), (" in ", true)] {
        if let Some((key, set)) = term.split_once(operator) {
            let key = valid_key(key.trim(), &bad)?;
            let set = set.trim();
            let inner = set
                .strip_prefix('(')
                .and_then(|rest| rest.strip_suffix(')'))
                .ok_or_else(|| bad("a set must be in parentheses"))?;
            let values = inner
                .split(',')
                .map(|value| valid_value(value.trim(), &bad))
                .collect::<Result<Vec<_>, _>>()?;
            return Ok(if is_in {
                LabelRequirement::In(key, values)
            } else {
                LabelRequirement::NotIn(key, values)
            });
        }
    }
    for operator in ["!=", "==", "=", ">", "<"] {
        if let Some((key, value)) = term.split_once(operator) {
            let key = valid_key(key.trim(), &bad)?;
            let value = value.trim();
            return Ok(match operator {
                "!=" => LabelRequirement::NotEquals(key, valid_value(value, &bad)?),
                ">" | "<" => {
                    let bound = value
                        .parse::<i64>()
                        .map_err(|_| bad("a bound must be an integer"))?;
                    if operator == ">" {
                        LabelRequirement::GreaterThan(key, bound)
                    } else {
                        LabelRequirement::LessThan(key, bound)
                    }
                }
                _ => LabelRequirement::Equals(key, valid_value(value, &bad)?),
            });
        }
    }
    Ok(LabelRequirement::Exists(valid_key(term, &bad)?))
}

/// A label key: optional DNS prefix and `/`, then a name of alphanumerics, `-`, `_`, `.`.
fn valid_key(key: &str, bad: &dyn Fn(&str) -> ApiError) -> Result<String, ApiError> {
    let name = key.rsplit_once('/').map_or(key, |(_, name)| name);
    let ok = !name.is_empty()
        && name.len() <= 63
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c));
    if ok {
        Ok(key.to_string())
    } else {
        Err(bad(&format!("invalid label key {key:?}")))
    }
}

fn valid_value(value: &str, bad: &dyn Fn(&str) -> ApiError) -> Result<String, ApiError> {
    let ok = value.len() <= 63
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    if ok {
        Ok(value.to_string())
    } else {
        Err(bad(&format!("invalid label value {value:?}")))
    }
}

/// One parsed field requirement: a JSON path, whether it must equal, and the value.
#[derive(Debug, Clone, PartialEq)]
struct FieldRequirement {
    path: Vec<String>,
    equal: bool,
    value: String,
}

/// A parsed field selector; the empty selector matches everything.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FieldSelector(Vec<FieldRequirement>);

impl FieldSelector {
    /// Parses a selector for one kind, refusing fields the real server does not index for it.
    pub fn parse(text: &str, group: &str, plural: &str) -> Result<Self, ApiError> {
        let mut requirements = Vec::new();
        for term in text
            .split(',')
            .map(str::trim)
            .filter(|term| !term.is_empty())
        {
            let (field, equal, value) = if let Some((field, value)) = term.split_once("!=") {
                (field, false, value)
            } else if let Some((field, value)) = term.split_once("==") {
                (field, true, value)
            } else if let Some((field, value)) = term.split_once('=') {
                (field, true, value)
            } else {
                return Err(ApiError::bad_request(format!(
                    "invalid selector: '{text}'; can't understand '{term}'"
                )));
            };
            let field = field.trim();
            let path = supported_field(group, plural, field).ok_or_else(|| {
                ApiError::bad_request(format!("field label not supported: {field} (for {plural})"))
            })?;
            requirements.push(FieldRequirement {
                path,
                equal,
                value: value.trim().to_string(),
            });
        }
        Ok(Self(requirements))
    }

    /// Whether the object satisfies every requirement (a missing field reads as "").
    pub fn matches(&self, object: &Value) -> bool {
        self.0.iter().all(|requirement| {
            let found = requirement
                .path
                .iter()
                .try_fold(object, |value, step| value.get(step))
                .map(|value| match value {
                    Value::String(text) => text.clone(),
                    Value::Null => String::new(),
                    other => other.to_string(),
                })
                .unwrap_or_default();
            (found == requirement.value) == requirement.equal
        })
    }

    /// Whether the selector has no requirements (it matches everything).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The JSON path of a field label the real server supports for a kind.
fn supported_field(group: &str, plural: &str, field: &str) -> Option<Vec<String>> {
    let path = |field: &str| Some(field.split('.').map(str::to_string).collect());
    if matches!(field, "metadata.name" | "metadata.namespace") {
        return path(field);
    }
    let supported: &[&str] = match (group, plural) {
        ("", "pods") => &[
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "spec.hostNetwork",
            "status.phase",
            "status.podIP",
            "status.nominatedNodeName",
        ],
        ("", "nodes") => &["spec.unschedulable"],
        ("", "namespaces") => &["status.phase"],
        ("", "events") => &[
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "type",
        ],
        ("events.k8s.io", "events") => &[
            "regarding.kind",
            "regarding.namespace",
            "regarding.name",
            "regarding.uid",
            "reason",
            "reportingController",
            "type",
        ],
        _ => &[],
    };
    if supported.contains(&field) {
        return path(field);
    }
    if (group, plural, field) == ("", "events", "source") {
        return path("source.component");
    }
    None
}
