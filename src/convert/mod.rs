//! Kubernetes objects into the scheduling core's inputs. Pure functions: the `plan` command
//! and the controllers' state cache share them.

pub mod node;
pub mod pod;
pub mod provisioner;

/// An object field the core could not read, e.g. an unparseable quantity.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{object}: {field}: {message}")]
pub struct ConvertError {
    pub object: String,
    pub field: String,
    pub message: String,
}

impl ConvertError {
    pub fn new(object: &str, field: &str, message: impl Into<String>) -> ConvertError {
        ConvertError {
            object: object.to_string(),
            field: field.to_string(),
            message: message.into(),
        }
    }

    /// The same error seen from an enclosing object (a daemonset's pod template).
    pub fn within(self, outer: &str) -> ConvertError {
        ConvertError {
            object: outer.to_string(),
            field: format!("spec.template.{}", self.field),
            message: self.message,
        }
    }
}

#[cfg(test)]
mod tests;
