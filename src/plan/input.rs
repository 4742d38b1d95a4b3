//! Reading `plan` input: multi-document YAML files or `kind: List` (what `kubectl get -o yaml`
//! prints), sorted by kind into typed objects, with errors that name file, document and field.

use std::path::{Path, PathBuf};

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{Node, Pod};
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::apis::{AwsNodeTemplate, Provisioner, ValidationErrors};
use crate::convert::{self, ConvertError};

/// Everything a plan is computed from.
#[derive(Debug, Default)]
pub struct ClusterInput {
    pub provisioners: Vec<Provisioner>,
    pub node_templates: Vec<AwsNodeTemplate>,
    pub pods: Vec<Pod>,
    pub nodes: Vec<Node>,
    pub daemonsets: Vec<DaemonSet>,
}

/// Where a document came from: its file and its position in that file (1-based).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub file: PathBuf,
    pub document: usize,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}, document {}", self.file.display(), self.document)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("{}: {error}", path.display())]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{}: not valid YAML: {message}", path.display())]
    Yaml { path: PathBuf, message: String },
    #[error("{at}: a Kubernetes object needs apiVersion and kind")]
    NotAnObject { at: String },
    #[error(
        "{at}: unsupported kind {kind} (plan reads Provisioner, AWSNodeTemplate, Pod, Node, DaemonSet and List)"
    )]
    UnknownKind { at: String, kind: String },
    /// `object` is `Kind name`; `field` a path such as `spec.containers[0].resources`.
    #[error("{at}: {object}: field {field}: {message}")]
    Field {
        at: String,
        object: String,
        field: String,
        message: String,
    },
    #[error("{at}: {object} is invalid:\n{problems}")]
    Invalid {
        at: String,
        object: String,
        problems: String,
    },
}

impl ClusterInput {
    /// Read every file in order and add its objects.
    pub fn read_files(paths: &[PathBuf]) -> Result<ClusterInput, InputError> {
        let mut input = ClusterInput::default();
        for path in paths {
            let text = std::fs::read_to_string(path).map_err(|error| InputError::Read {
                path: path.clone(),
                error,
            })?;
            input.add_yaml(path, &text)?;
        }
        Ok(input)
    }

    /// Add the objects of one multi-document YAML text; `path` names it in errors.
    pub fn add_yaml(&mut self, path: &Path, text: &str) -> Result<(), InputError> {
        let documents: Vec<Value> =
            crate::yaml::from_multiple(text).map_err(|err| InputError::Yaml {
                path: path.to_path_buf(),
                message: err.to_string(),
            })?;
        for (index, document) in documents.into_iter().enumerate() {
            let origin = Origin {
                file: path.to_path_buf(),
                document: index + 1,
            };
            self.add_object(&origin, document)?;
        }
        Ok(())
    }

    fn add_object(&mut self, origin: &Origin, object: Value) -> Result<(), InputError> {
        if object.is_null() {
            return Ok(());
        }
        let kind = match object.get("kind").and_then(Value::as_str) {
            Some(kind) if object.get("apiVersion").is_some() => kind.to_string(),
            _ => {
                return Err(InputError::NotAnObject {
                    at: origin.to_string(),
                });
            }
        };
        match kind.as_str() {
            "List" => {
                let items = match object.get("items") {
                    Some(Value::Array(items)) => items.clone(),
                    None | Some(Value::Null) => Vec::new(),
                    Some(_) => {
                        return Err(field_error(origin, &kind, "", "items", "must be a list"));
                    }
                };
                for item in items {
                    self.add_object(origin, item)?;
                }
            }
            "Provisioner" => {
                let provisioner: Provisioner = typed(origin, &kind, object)?;
                provisioner
                    .validate()
                    .map_err(|errors| invalid(origin, &kind, &provisioner.metadata, errors))?;
                convert::provisioner::provisioner(&provisioner)
                    .map_err(|e| converted(origin, &kind, e))?;
                self.provisioners.push(provisioner);
            }
            "AWSNodeTemplate" => {
                let template: AwsNodeTemplate = typed(origin, &kind, object)?;
                template
                    .validate()
                    .map_err(|errors| invalid(origin, &kind, &template.metadata, errors))?;
                self.node_templates.push(template);
            }
            // Converting once here puts file and document on errors the core's inputs would
            // otherwise raise later without them.
            "Pod" => {
                let pod = typed(origin, &kind, object)?;
                convert::pod::pod(&pod).map_err(|e| converted(origin, &kind, e))?;
                self.pods.push(pod);
            }
            "Node" => {
                let node = typed(origin, &kind, object)?;
                convert::node::existing_node(&node, Vec::new())
                    .map_err(|e| converted(origin, &kind, e))?;
                self.nodes.push(node);
            }
            "DaemonSet" => {
                let daemonset = typed(origin, &kind, object)?;
                convert::pod::daemonset(&daemonset).map_err(|e| converted(origin, &kind, e))?;
                self.daemonsets.push(daemonset);
            }
            _ => {
                return Err(InputError::UnknownKind {
                    at: origin.to_string(),
                    kind,
                });
            }
        }
        Ok(())
    }
}

/// Deserialize one object, naming the field that did not fit.
fn typed<T: DeserializeOwned>(origin: &Origin, kind: &str, object: Value) -> Result<T, InputError> {
    let name = object_name(&object);
    serde_path_to_error::deserialize(object).map_err(|err| {
        let field = err.path().to_string();
        field_error(origin, kind, &name, &field, &err.into_inner().to_string())
    })
}

fn converted(origin: &Origin, kind: &str, error: ConvertError) -> InputError {
    let name = error
        .object
        .split_once(' ')
        .map_or(error.object.as_str(), |(_, name)| name);
    field_error(origin, kind, name, &error.field, &error.message)
}

fn object_name(object: &Value) -> String {
    let metadata = object.get("metadata");
    let name = metadata
        .and_then(|m| m.get("name"))
        .and_then(Value::as_str)
        .unwrap_or("<unnamed>");
    match metadata
        .and_then(|m| m.get("namespace"))
        .and_then(Value::as_str)
    {
        Some(namespace) => format!("{namespace}/{name}"),
        None => name.to_string(),
    }
}

fn field_error(origin: &Origin, kind: &str, name: &str, field: &str, message: &str) -> InputError {
    InputError::Field {
        at: origin.to_string(),
        object: format!("{kind} {name}"),
        field: field.to_string(),
        message: message.to_string(),
    }
}

fn invalid(
    origin: &Origin,
    kind: &str,
    metadata: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    errors: ValidationErrors,
) -> InputError {
    InputError::Invalid {
        at: origin.to_string(),
        object: format!("{kind} {}", metadata.name.as_deref().unwrap_or_default()),
        problems: errors
            .0
            .iter()
            .map(|p| format!("  - {p}"))
            .collect::<Vec<_>>()
            .join("\n"),
    }
}
