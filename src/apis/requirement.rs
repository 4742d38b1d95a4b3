//! Node selector requirements (`key`, `operator`, `values`) as provisioners and machines carry
//! them, with the CEL rules that tie the number of values to the operator.

use kube::KubeSchema;
use serde::{Deserialize, Serialize};

use super::string_enum::string_enum;

string_enum! {
    /// How a requirement relates its key to its values.
    pub enum Operator {
        In => "In",
        NotIn => "NotIn",
        Exists => "Exists",
        DoesNotExist => "DoesNotExist",
        Gt => "Gt",
        Lt => "Lt",
    }
}

/// A label key, an operator and values: the shape of `core/v1` `NodeSelectorRequirement`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[x_kube(validation = crate::apis::cel::REQUIREMENT_VALUES_REQUIRED.to_rule())]
#[x_kube(validation = crate::apis::cel::REQUIREMENT_SINGLE_INTEGER.to_rule())]
#[x_kube(validation = crate::apis::cel::REQUIREMENT_NO_VALUES.to_rule())]
pub struct NodeSelectorRequirement {
    /// The label key the requirement applies to.
    #[x_kube(validation = crate::apis::cel::label_key_unrestricted())]
    #[schemars(length(max = crate::apis::schema::QUALIFIED_NAME_MAX_LENGTH), regex(pattern = crate::apis::schema::QUALIFIED_NAME_PATTERN))]
    pub key: String,
    /// In, NotIn, Exists, DoesNotExist, Gt or Lt.
    pub operator: Operator,
    /// In and NotIn need at least one value; Gt and Lt exactly one integer; Exists and
    /// DoesNotExist none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "crate::apis::schema::label_values")]
    pub values: Vec<String>,
}

impl NodeSelectorRequirement {
    pub fn new(
        key: impl Into<String>,
        operator: Operator,
        values: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        Self {
            key: key.into(),
            operator,
            values: values.into_iter().map(Into::into).collect(),
        }
    }
}
