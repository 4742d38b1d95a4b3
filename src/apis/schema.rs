//! Hand-written OpenAPI pieces of the CRD schemas: syntax patterns and the schemas of label maps,
//! quantity maps and taint lists, where the derived schema would be too loose or too verbose.
//!
//! Every pattern here has a Rust twin in [`super::validation::syntax`]; the tests hold them to the
//! same verdicts, so the API server and `validate()` agree.

use schemars::{Schema, SchemaGenerator, json_schema};

/// A label value: empty, or at most 63 alphanumerics, `-`, `_`, `.` starting and ending alphanumeric.
pub const LABEL_VALUE_PATTERN: &str = r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$";
/// Longest label value Kubernetes accepts.
pub const LABEL_VALUE_MAX_LENGTH: usize = 63;
/// A qualified name (label key, taint key): an optional DNS-1123 subdomain prefix and `/`, then a
/// name of at most 63 characters.
pub const QUALIFIED_NAME_PATTERN: &str = r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9]$";
/// Longest qualified name: a 253-character prefix, `/` and a 63-character name.
pub const QUALIFIED_NAME_MAX_LENGTH: usize = 317;
/// A resource quantity that is not negative (`100m`, `1.5Gi`, `2e3`, `+1`).
pub const QUANTITY_PATTERN: &str = r"^\+?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$";
/// An eviction threshold: a percentage from 0 to 100, or a quantity.
pub const EVICTION_THRESHOLD_PATTERN: &str = r"^((([0-9]{1,2}(\.[0-9]+)?)|(100(\.0+)?))%|\+?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?)$";
/// A Go duration as the kubelet reads it (`90s`, `1m30s`, `1.5h`).
pub const DURATION_PATTERN: &str = r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$";
/// Valid taint effects.
pub const TAINT_EFFECTS: &[&str] = &["NoSchedule", "PreferNoSchedule", "NoExecute"];
/// Bound on provisioner labels and requirements, so that the API server can budget the CEL rules
/// that walk them (the same bounds Karpenter later adopted).
pub const MAX_LABELS: usize = 100;
pub const MAX_REQUIREMENTS: usize = 100;

/// Resource name → non-negative quantity (`cpu: 1000`, `memory: 1000Gi`).
pub fn quantity_map(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "object",
        "additionalProperties": {
            "x-kubernetes-int-or-string": true,
            "pattern": QUANTITY_PATTERN,
        },
    })
}

/// A single non-negative quantity.
pub fn quantity(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "x-kubernetes-int-or-string": true,
        "pattern": QUANTITY_PATTERN,
    })
}

/// Label key → label value, as put on nodes.
pub fn label_map(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "object",
        "maxProperties": MAX_LABELS,
        "additionalProperties": {
            "type": "string",
            "maxLength": LABEL_VALUE_MAX_LENGTH,
            "pattern": LABEL_VALUE_PATTERN,
        },
    })
}

/// Tag key → tag value used to discover subnets, security groups or AMIs; a selector must name at
/// least one tag, and neither keys nor values may be empty.
pub fn selector_map(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "object",
        "minProperties": 1,
        "additionalProperties": {
            "type": "string",
            "minLength": 1,
        },
    })
}

/// Requirement values: label values.
pub fn label_values(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "array",
        "items": {
            "type": "string",
            "maxLength": LABEL_VALUE_MAX_LENGTH,
            "pattern": LABEL_VALUE_PATTERN,
        },
    })
}

/// Eviction signal → threshold.
pub fn eviction_thresholds(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "object",
        "additionalProperties": {
            "type": "string",
            "pattern": EVICTION_THRESHOLD_PATTERN,
        },
    })
}

/// Eviction signal → grace period.
pub fn durations(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "object",
        "additionalProperties": {
            "type": "string",
            "pattern": DURATION_PATTERN,
        },
    })
}

/// A list of `core/v1` taints with the key, value and effect syntax the kubelet insists on, so a
/// bad taint is refused at apply time instead of leaving a node that never registers.
pub fn taints(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "array",
        "items": {
            "type": "object",
            "required": ["key", "effect"],
            "properties": {
                "key": {
                    "description": "The taint key to be applied to a node.",
                    "type": "string",
                    "maxLength": QUALIFIED_NAME_MAX_LENGTH,
                    "pattern": QUALIFIED_NAME_PATTERN,
                },
                "value": {
                    "description": "The taint value corresponding to the taint key.",
                    "type": "string",
                    "maxLength": LABEL_VALUE_MAX_LENGTH,
                    "pattern": LABEL_VALUE_PATTERN,
                },
                "effect": {
                    "description": "The effect of the taint on pods that do not tolerate it.",
                    "type": "string",
                    "enum": TAINT_EFFECTS,
                },
                "timeAdded": {
                    "description": "When the taint was added; only written for NoExecute taints.",
                    "type": "string",
                    "format": "date-time",
                },
            },
        },
    })
}

/// For an optional enum field: the API server takes `nullable: true` to allow null, so `null` need
/// not (and should not) appear among the enum values schemars lists.
pub fn optional_enum(schema: &mut Schema) {
    if let Some(values) = schema
        .get_mut("enum")
        .and_then(|values| values.as_array_mut())
    {
        values.retain(|value| !value.is_null());
    }
}
