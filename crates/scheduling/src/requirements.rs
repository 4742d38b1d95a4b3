//! The requirements algebra over node label keys.
//!
//! A [`NodeSelectorRequirement`] (`key`, `operator`, `values`) is what users write; a
//! [`ValueSet`] is what it means: which values of one key are allowed, and whether the key may
//! be absent. [`Requirements`] maps keys to value sets and is closed under intersection, so
//! "pod ∩ provisioner ∩ instance type" is one operation and compatibility is "no key became
//! empty".

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::labels;

/// How a requirement relates its key to its values (the Kubernetes node selector operators).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Operator {
    In,
    NotIn,
    Exists,
    DoesNotExist,
    Gt,
    Lt,
}

/// One `key operator values` clause: the shape of `core/v1` `NodeSelectorRequirement`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeSelectorRequirement {
    pub key: String,
    pub operator: Operator,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
}

impl NodeSelectorRequirement {
    pub fn new<I, S>(key: impl Into<String>, operator: Operator, values: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        NodeSelectorRequirement {
            key: key.into(),
            operator,
            values: values.into_iter().map(Into::into).collect(),
        }
    }
}

impl fmt::Display for NodeSelectorRequirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {:?}", self.key, self.operator)?;
        match self.operator {
            Operator::Exists | Operator::DoesNotExist => Ok(()),
            Operator::Gt | Operator::Lt => write!(f, " {}", self.values.join(",")),
            Operator::In | Operator::NotIn => write!(f, " [{}]", self.values.join(", ")),
        }
    }
}

/// The values one label key may take on a node, and whether the key may be missing.
///
/// Present values are a finite set or the complement of one, optionally bounded by integer
/// limits (`Gt`, `Lt`: the value must then parse as an integer strictly within them).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ValueSet {
    absent_allowed: bool,
    complement: bool,
    values: BTreeSet<String>,
    greater_than: Option<i64>,
    less_than: Option<i64>,
}

impl Default for ValueSet {
    fn default() -> Self {
        ValueSet::any()
    }
}

impl ValueSet {
    /// No constraint: any value, or none.
    pub fn any() -> ValueSet {
        ValueSet {
            absent_allowed: true,
            complement: true,
            values: BTreeSet::new(),
            greater_than: None,
            less_than: None,
        }
    }

    /// Nothing at all: not even absence.
    pub fn none() -> ValueSet {
        ValueSet {
            absent_allowed: false,
            complement: false,
            values: BTreeSet::new(),
            greater_than: None,
            less_than: None,
        }
    }

    /// Exactly these values (`In`).
    pub fn of<I, S>(values: I) -> ValueSet
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        ValueSet {
            absent_allowed: false,
            complement: false,
            values: values.into_iter().map(Into::into).collect(),
            greater_than: None,
            less_than: None,
        }
    }

    /// Exactly one value.
    pub fn one(value: impl Into<String>) -> ValueSet {
        ValueSet::of([value.into()])
    }

    /// What `operator values` allows. Unparsable `Gt`/`Lt` values allow nothing, as in
    /// Kubernetes.
    pub fn from_operator(operator: Operator, values: &[String]) -> ValueSet {
        let bound = || values.first().and_then(|v| v.trim().parse::<i64>().ok());
        match operator {
            Operator::In => ValueSet::of(values.iter().cloned()),
            Operator::NotIn => ValueSet {
                values: values.iter().cloned().collect(),
                ..ValueSet::any()
            },
            Operator::Exists => ValueSet {
                absent_allowed: false,
                ..ValueSet::any()
            },
            Operator::DoesNotExist => ValueSet {
                absent_allowed: true,
                ..ValueSet::none()
            },
            Operator::Gt => match bound() {
                Some(n) => ValueSet {
                    absent_allowed: false,
                    greater_than: Some(n),
                    ..ValueSet::any()
                },
                None => ValueSet::none(),
            },
            Operator::Lt => match bound() {
                Some(n) => ValueSet {
                    absent_allowed: false,
                    less_than: Some(n),
                    ..ValueSet::any()
                },
                None => ValueSet::none(),
            },
        }
    }

    /// Whether a node whose label is `value` (`None`: label missing) is allowed.
    pub fn allows(&self, value: Option<&str>) -> bool {
        match value {
            None => self.absent_allowed,
            Some(value) => self.allows_present(value),
        }
    }

    fn allows_present(&self, value: &str) -> bool {
        if self.values.contains(value) == self.complement {
            return false;
        }
        if self.greater_than.is_none() && self.less_than.is_none() {
            return true;
        }
        match value.trim().parse::<i64>() {
            Ok(n) => {
                self.greater_than.is_none_or(|g| n > g) && self.less_than.is_none_or(|l| n < l)
            }
            Err(_) => false,
        }
    }

    /// Whether a missing label is allowed.
    pub fn allows_absent(&self) -> bool {
        self.absent_allowed
    }

    /// Whether a value nobody listed (a fresh hostname, say) would be allowed.
    pub fn allows_unlisted(&self) -> bool {
        self.complement && self.greater_than.is_none() && self.less_than.is_none()
    }

    /// True when no present value is allowed.
    pub fn no_present_value(&self) -> bool {
        if self.complement {
            match (self.greater_than, self.less_than) {
                // Integers strictly between g and l; every integer has many spellings ("7",
                // "+7", "07"), so exclusions can never use them all up.
                (Some(g), Some(l)) => l.saturating_sub(g) <= 1,
                _ => false,
            }
        } else {
            self.values.is_empty()
        }
    }

    /// True when nothing is allowed, not even absence.
    pub fn is_empty(&self) -> bool {
        !self.absent_allowed && self.no_present_value()
    }

    /// The allowed present values when they are finitely many, sorted.
    pub fn finite_values(&self) -> Option<&BTreeSet<String>> {
        (!self.complement).then_some(&self.values)
    }

    /// True when this allows every value and absence.
    pub fn is_any(&self) -> bool {
        *self == ValueSet::any()
    }

    /// The values allowed by both.
    pub fn intersect(&self, other: &ValueSet) -> ValueSet {
        let (complement, values) = match (self.complement, other.complement) {
            (true, true) => (true, self.values.union(&other.values).cloned().collect()),
            (false, false) => (
                false,
                self.values.intersection(&other.values).cloned().collect(),
            ),
            (false, true) => (
                false,
                self.values.difference(&other.values).cloned().collect(),
            ),
            (true, false) => (
                false,
                other.values.difference(&self.values).cloned().collect(),
            ),
        };
        let greater_than = max_option(self.greater_than, other.greater_than);
        let less_than = min_option(self.less_than, other.less_than);
        ValueSet {
            absent_allowed: self.absent_allowed && other.absent_allowed,
            complement,
            values,
            greater_than,
            less_than,
        }
        .normalized()
    }

    /// Drops what the bounds already decide, so that equal sets compare equal.
    fn normalized(mut self) -> ValueSet {
        if self.greater_than.is_none() && self.less_than.is_none() {
            return self;
        }
        let within = |v: &String| match v.trim().parse::<i64>() {
            Ok(n) => {
                self.greater_than.is_none_or(|g| n > g) && self.less_than.is_none_or(|l| n < l)
            }
            Err(_) => false,
        };
        let values: BTreeSet<String> = self.values.iter().filter(|v| within(v)).cloned().collect();
        self.values = values;
        if !self.complement {
            self.greater_than = None;
            self.less_than = None;
        }
        self
    }

    /// The set as node selector requirements on `key` (several when it needs more than one
    /// operator, none when it allows everything).
    pub fn to_node_selector(&self, key: &str) -> Vec<NodeSelectorRequirement> {
        let values = || self.values.iter().cloned().collect::<Vec<_>>();
        let mut out = Vec::new();
        if !self.complement {
            if self.absent_allowed && self.values.is_empty() {
                out.push(NodeSelectorRequirement::new(
                    key,
                    Operator::DoesNotExist,
                    values(),
                ));
            } else {
                out.push(NodeSelectorRequirement::new(key, Operator::In, values()));
            }
            return out;
        }
        let bounded = self.greater_than.is_some() || self.less_than.is_some();
        if !self.absent_allowed && !bounded {
            out.push(NodeSelectorRequirement::new(
                key,
                Operator::Exists,
                Vec::<String>::new(),
            ));
        }
        if !self.values.is_empty() {
            out.push(NodeSelectorRequirement::new(key, Operator::NotIn, values()));
        }
        if let Some(g) = self.greater_than {
            out.push(NodeSelectorRequirement::new(
                key,
                Operator::Gt,
                [g.to_string()],
            ));
        }
        if let Some(l) = self.less_than {
            out.push(NodeSelectorRequirement::new(
                key,
                Operator::Lt,
                [l.to_string()],
            ));
        }
        out
    }
}

impl fmt::Display for ValueSet {
    /// `In [a, b]`, `NotIn [x]`, `Exists`, `DoesNotExist`, `Gt 4 and Lt 8`, `any`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts = self.to_node_selector("");
        if parts.is_empty() {
            return f.write_str("any");
        }
        let text: Vec<String> = parts
            .iter()
            .map(|r| r.to_string().trim_start().to_string())
            .collect();
        f.write_str(&text.join(" and "))
    }
}

fn max_option(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

fn min_option(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Value sets by (normalised) label key; keys not present are unconstrained. All clauses hold
/// together (AND).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Requirements {
    keys: BTreeMap<String, ValueSet>,
}

impl Requirements {
    /// No constraint.
    pub fn new() -> Requirements {
        Requirements::default()
    }

    /// The AND of node selector requirements (one `nodeSelectorTerm`'s `matchExpressions`).
    pub fn from_node_selector(requirements: &[NodeSelectorRequirement]) -> Requirements {
        let mut out = Requirements::new();
        for r in requirements {
            out.add(&r.key, &ValueSet::from_operator(r.operator, &r.values));
        }
        out
    }

    /// `key In [value]` for each label.
    pub fn from_labels(labels: &BTreeMap<String, String>) -> Requirements {
        let mut out = Requirements::new();
        for (key, value) in labels {
            out.add(key, &ValueSet::one(value.clone()));
        }
        out
    }

    /// Narrows `key` (normalised) to its intersection with `set`.
    pub fn add(&mut self, key: &str, set: &ValueSet) {
        let key = labels::normalize_key(key);
        match self.keys.get_mut(key) {
            Some(existing) => *existing = existing.intersect(set),
            None => {
                self.keys.insert(key.to_string(), set.clone());
            }
        }
    }

    /// Replaces whatever `key` allowed with `set`.
    pub fn set(&mut self, key: &str, set: ValueSet) {
        self.keys
            .insert(labels::normalize_key(key).to_string(), set);
    }

    /// The set for `key`, if constrained.
    pub fn get(&self, key: &str) -> Option<&ValueSet> {
        self.keys.get(labels::normalize_key(key))
    }

    /// The set for `key`, `ValueSet::any()` when unconstrained.
    pub fn get_or_any(&self, key: &str) -> ValueSet {
        self.get(key).cloned().unwrap_or_default()
    }

    /// Constrained keys and their sets, sorted by key.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &ValueSet)> {
        self.keys.iter().map(|(k, v)| (k.as_str(), v))
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Both at once.
    pub fn intersect(&self, other: &Requirements) -> Requirements {
        let mut out = self.clone();
        for (key, set) in &other.keys {
            out.add(key, set);
        }
        out
    }

    /// The first key on which the two cannot both hold, if any.
    pub fn conflict<'a>(&'a self, other: &'a Requirements) -> Option<&'a str> {
        other
            .keys
            .iter()
            .find(|(key, set)| match self.keys.get(*key) {
                Some(mine) => mine.intersect(set).is_empty(),
                None => set.is_empty(),
            })
            .map(|(key, _)| key.as_str())
            .or_else(|| {
                self.keys
                    .iter()
                    .find(|(key, set)| !other.keys.contains_key(*key) && set.is_empty())
                    .map(|(key, _)| key.as_str())
            })
    }

    /// True when some node could satisfy both.
    pub fn is_compatible(&self, other: &Requirements) -> bool {
        self.conflict(other).is_none()
    }

    /// True when no key is empty.
    pub fn is_satisfiable(&self) -> bool {
        self.keys.values().all(|set| !set.is_empty())
    }

    /// The first key whose set rejects the node's label (`labels` keyed by stable keys).
    pub fn first_mismatch(&self, labels: &BTreeMap<String, String>) -> Option<&str> {
        self.keys
            .iter()
            .find(|(key, set)| !set.allows(labels.get(*key).map(String::as_str)))
            .map(|(key, _)| key.as_str())
    }

    /// Whether a node with these labels (stable keys) satisfies every clause.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.first_mismatch(labels).is_none()
    }

    /// Back to node selector requirements, sorted by key.
    pub fn to_node_selector(&self) -> Vec<NodeSelectorRequirement> {
        self.keys
            .iter()
            .flat_map(|(key, set)| set.to_node_selector(key))
            .collect()
    }
}

impl fmt::Display for Requirements {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .to_node_selector()
            .iter()
            .map(ToString::to_string)
            .collect();
        f.write_str(&parts.join(", "))
    }
}

/// Label keys normalised to their stable spelling (beta aliases replaced; a stable key already
/// present wins).
pub fn normalize_labels(labels: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for (key, value) in labels {
        let stable = labels::normalize_key(key);
        if stable == key.as_str() || !labels.contains_key(stable) {
            out.insert(stable.to_string(), value.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests;
