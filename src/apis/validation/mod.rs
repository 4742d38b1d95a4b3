//! `validate()` for every kind: each problem of an object, with the path of the field at fault.
//!
//! The CRDs refuse most bad specs at `kubectl apply` time (OpenAPI constraints and CEL rules).
//! This is the second layer: `plan` reads manifests that never met an API server, and objects
//! stored under an older CRD may have slipped past rules added since. It mirrors the CRD rules —
//! cross-field ones with the very same message ([`Problem::Rule`]) — and adds what a CRD cannot
//! say: label and key syntax in detail, quantity values and ranges, kubelet percentages and
//! durations, duplicate taints.

mod fields;
mod kinds;
pub mod syntax;

use std::fmt;

/// Where a problem lies, written as the API server writes it: `spec.requirements[2].values`,
/// `spec.labels[team]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FieldPath(String);

impl FieldPath {
    pub fn root(name: &str) -> Self {
        Self(name.to_owned())
    }

    /// A field of this object.
    pub fn child(&self, name: &str) -> Self {
        Self(format!("{}.{name}", self.0))
    }

    /// An element of this list.
    pub fn index(&self, index: usize) -> Self {
        Self(format!("{}[{index}]", self.0))
    }

    /// An entry of this map.
    pub fn key(&self, key: &str) -> Self {
        Self(format!("{}[{key}]", self.0))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What is wrong with one field.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Problem {
    /// A rule the CRD also states as a CEL rule, with this very message.
    #[error("{0}")]
    Rule(&'static str),
    #[error("required value")]
    Required,
    #[error("must not be empty")]
    Empty,
    #[error("must have at most {max} entries, has {len}")]
    TooMany { len: usize, max: usize },
    #[error("unsupported value {value:?}: must be one of {}", .supported.join(", "))]
    Unsupported {
        value: String,
        supported: &'static [&'static str],
    },
    #[error("{value} is out of range: must be between {min} and {max}")]
    OutOfRange { value: i64, min: i64, max: i64 },
    #[error("{value} is out of range: must be between {min} and {max}")]
    QuantityOutOfRange {
        value: String,
        min: &'static str,
        max: &'static str,
    },
    #[error("{value} must not be negative")]
    Negative { value: String },
    #[error("invalid key {key:?}: {reason}")]
    InvalidKey { key: String, reason: String },
    #[error("invalid value {value:?}: {reason}")]
    InvalidValue { value: String, reason: String },
    #[error("{key:?} is restricted: {reason}")]
    RestrictedLabel { key: String, reason: String },
    #[error("{value:?} is not a resource quantity")]
    InvalidQuantity { value: String },
    #[error("{first} and {second} are mutually exclusive")]
    MutuallyExclusive {
        first: &'static str,
        second: &'static str,
    },
    #[error(
        "duplicate taint {key}:{effect}: each key and effect may appear once across taints and startupTaints"
    )]
    DuplicateTaint { key: String, effect: String },
}

/// One problem and the field it lies in.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{path}: {problem}")]
pub struct FieldError {
    pub path: FieldPath,
    pub problem: Problem,
}

/// Every problem found in one object, in the order of its fields.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{} invalid field(s): {}", .0.len(), join(.0))]
pub struct ValidationErrors(pub Vec<FieldError>);

fn join(errors: &[FieldError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

impl ValidationErrors {
    pub fn errors(&self) -> &[FieldError] {
        &self.0
    }

    /// The problems reported at exactly `path`.
    pub fn at<'a>(&'a self, path: &'a str) -> impl Iterator<Item = &'a Problem> + 'a {
        self.0
            .iter()
            .filter(move |error| error.path.as_str() == path)
            .map(|error| &error.problem)
    }
}

/// Collects problems while a validator walks an object.
#[derive(Debug, Default)]
struct Report(Vec<FieldError>);

impl Report {
    fn add(&mut self, path: FieldPath, problem: Problem) {
        self.0.push(FieldError { path, problem });
    }

    fn into_result(self) -> Result<(), ValidationErrors> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(ValidationErrors(self.0))
        }
    }
}
