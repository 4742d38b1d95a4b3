//! The malformed-manifest table of `tests/apis.rs` and helpers that read the generated schemas.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use nodewright::apis::{cel, crds, schema};
use serde_json::{Value, json};

pub type Crd = CustomResourceDefinition;

#[derive(Debug, Clone, Copy)]
pub enum Kind {
    Provisioner,
    AwsNodeTemplate,
    Machine,
}

pub fn kind_of(file: &str) -> Kind {
    if file.starts_with("provisioner-") {
        Kind::Provisioner
    } else if file.starts_with("awsnodetemplate-") {
        Kind::AwsNodeTemplate
    } else if file.starts_with("machine-") {
        Kind::Machine
    } else {
        panic!("{file}: fixture names start with the kind")
    }
}

pub fn schema_of(crd: &Crd) -> Value {
    let validation = crd.spec.versions[0].schema.as_ref().expect("a schema");
    serde_json::to_value(&validation.open_api_v3_schema).expect("schema as JSON")
}

pub fn crd_schema(kind: Kind) -> Value {
    let name = match kind {
        Kind::Provisioner => "Provisioner",
        Kind::AwsNodeTemplate => "AWSNodeTemplate",
        Kind::Machine => "Machine",
    };
    let crd = crds::crds()
        .into_iter()
        .find(|crd| crd.spec.names.kind == name)
        .expect("CRD");
    schema_of(&crd)
}

/// How the API server refuses the same mistake.
pub enum SchemaCheck {
    /// A CEL rule whose message is the problem's own message, on the schema node at `at`.
    SameRule { at: &'static [&'static str] },
    /// A CEL rule with this message on the schema node at `at`.
    Rule {
        at: &'static [&'static str],
        message: &'static str,
    },
    /// An OpenAPI keyword with this value on the schema node at `at`.
    OpenApi {
        at: &'static [&'static str],
        keyword: &'static str,
        value: Value,
    },
}

/// The schema node at `at`: `items` steps into a list, `*` into a map's values, anything else
/// into a property.
fn node<'a>(root: &'a Value, at: &[&str]) -> &'a Value {
    at.iter().fold(root, |node, step| match *step {
        "items" => &node["items"],
        "*" => &node["additionalProperties"],
        property => &node["properties"][property],
    })
}

fn rule_messages(node: &Value) -> Vec<&str> {
    node["x-kubernetes-validations"]
        .as_array()
        .map(|rules| {
            rules
                .iter()
                .filter_map(|rule| rule["message"].as_str())
                .collect()
        })
        .unwrap_or_default()
}

impl SchemaCheck {
    pub fn assert_holds(&self, root: &Value, file: &str, problem: &str) {
        match self {
            SchemaCheck::SameRule { at } => {
                let messages = rule_messages(node(root, at));
                assert!(
                    messages.contains(&problem),
                    "{file}: no CEL rule {problem:?} at {at:?}, only {messages:?}"
                );
            }
            SchemaCheck::Rule { at, message } => {
                let messages = rule_messages(node(root, at));
                assert!(
                    messages.contains(message),
                    "{file}: no CEL rule {message:?} at {at:?}, only {messages:?}"
                );
            }
            SchemaCheck::OpenApi { at, keyword, value } => {
                let found = &node(root, at)[*keyword];
                let same = match (found.as_f64(), value.as_f64()) {
                    (Some(found), Some(expected)) => found == expected,
                    _ => found == value,
                };
                assert!(
                    same,
                    "{file}: {keyword} at {at:?} is {found}, expected {value}"
                );
            }
        }
    }
}

pub struct Case {
    pub file: &'static str,
    pub path: &'static str,
    pub message: &'static str,
    pub schema: Option<SchemaCheck>,
}

fn case(
    file: &'static str,
    path: &'static str,
    message: &'static str,
    schema: Option<SchemaCheck>,
) -> Case {
    Case {
        file,
        path,
        message,
        schema,
    }
}

fn same(at: &'static [&'static str]) -> Option<SchemaCheck> {
    Some(SchemaCheck::SameRule { at })
}

fn rule(at: &'static [&'static str], message: &'static str) -> Option<SchemaCheck> {
    Some(SchemaCheck::Rule { at, message })
}

fn openapi(
    at: &'static [&'static str],
    keyword: &'static str,
    value: Value,
) -> Option<SchemaCheck> {
    Some(SchemaCheck::OpenApi { at, keyword, value })
}

const REQUIREMENT: &[&str] = &["spec", "requirements", "items"];
const KUBELET: &[&str] = &["spec", "kubeletConfiguration"];

/// Each fixture under `tests/fixtures/apis/invalid`, the one problem `validate()` must report
/// and how the CRD refuses it (`None`: only `validate()` can tell).
pub fn malformed_cases() -> Vec<Case> {
    let operators = json!(["In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt"]);
    vec![
        case(
            "provisioner-provider-and-provider-ref",
            "spec",
            cel::PROVIDER_EXCLUSIVE.message,
            same(&["spec"]),
        ),
        case(
            "provisioner-without-provider",
            "spec",
            cel::PROVIDER_REQUIRED.message,
            same(&["spec"]),
        ),
        case(
            "provisioner-ttl-after-empty-with-consolidation",
            "spec.ttlSecondsAfterEmpty",
            cel::TTL_AFTER_EMPTY_EXCLUSIVE.message,
            same(&["spec"]),
        ),
        case(
            "provisioner-negative-ttl-after-empty",
            "spec.ttlSecondsAfterEmpty",
            "-5 must not be negative",
            openapi(&["spec", "ttlSecondsAfterEmpty"], "minimum", json!(0)),
        ),
        case(
            "provisioner-negative-ttl-until-expired",
            "spec.ttlSecondsUntilExpired",
            "-1 must not be negative",
            openapi(&["spec", "ttlSecondsUntilExpired"], "minimum", json!(0)),
        ),
        case(
            "provisioner-weight-zero",
            "spec.weight",
            "0 is out of range: must be between 1 and 100",
            openapi(&["spec", "weight"], "minimum", json!(1)),
        ),
        case(
            "provisioner-weight-too-high",
            "spec.weight",
            "101 is out of range: must be between 1 and 100",
            openapi(&["spec", "weight"], "maximum", json!(100)),
        ),
        case(
            "provisioner-unknown-operator",
            "spec.requirements[0].operator",
            r#"unsupported value "Includes": must be one of In, NotIn, Exists, DoesNotExist, Gt, Lt"#,
            openapi(
                &["spec", "requirements", "items", "operator"],
                "enum",
                operators,
            ),
        ),
        case(
            "provisioner-in-without-values",
            "spec.requirements[1].values",
            cel::REQUIREMENT_VALUES_REQUIRED.message,
            same(REQUIREMENT),
        ),
        case(
            "provisioner-not-in-empty-values",
            "spec.requirements[0].values",
            cel::REQUIREMENT_VALUES_REQUIRED.message,
            same(REQUIREMENT),
        ),
        case(
            "provisioner-gt-two-values",
            "spec.requirements[0].values",
            cel::REQUIREMENT_SINGLE_INTEGER.message,
            same(REQUIREMENT),
        ),
        case(
            "provisioner-lt-not-integer",
            "spec.requirements[0].values",
            cel::REQUIREMENT_SINGLE_INTEGER.message,
            same(REQUIREMENT),
        ),
        case(
            "provisioner-exists-with-values",
            "spec.requirements[0].values",
            cel::REQUIREMENT_NO_VALUES.message,
            same(REQUIREMENT),
        ),
        case(
            "provisioner-requirement-restricted-domain",
            "spec.requirements[0].key",
            r#""kubernetes.io/custom" is restricted: label domain "kubernetes.io" is restricted"#,
            rule(
                &["spec", "requirements", "items", "key"],
                cel::RESTRICTED_LABEL_MESSAGE,
            ),
        ),
        case(
            "provisioner-requirement-on-provisioner-name",
            "spec.requirements[0].key",
            cel::PROVISIONER_NAME_RESTRICTED_MESSAGE,
            same(&["spec", "requirements"]),
        ),
        case(
            "provisioner-label-restricted-domain",
            "spec.labels[karpenter.sh/custom]",
            r#""karpenter.sh/custom" is restricted: label domain "karpenter.sh" is restricted"#,
            rule(&["spec", "labels"], cel::RESTRICTED_LABEL_MESSAGE),
        ),
        case(
            "provisioner-label-bad-value",
            "spec.labels[team]",
            r#"invalid value "has spaces": label value must consist of alphanumeric characters"#,
            openapi(
                &["spec", "labels", "*"],
                "pattern",
                json!(schema::LABEL_VALUE_PATTERN),
            ),
        ),
        case(
            "provisioner-label-bad-key",
            "spec.labels[-team]",
            r#"invalid key "-team": name must consist of alphanumeric characters"#,
            None,
        ),
        case(
            "provisioner-taint-bad-effect",
            "spec.taints[0].effect",
            r#"unsupported value "NoScheduleEver": must be one of NoSchedule, PreferNoSchedule, NoExecute"#,
            openapi(
                &["spec", "taints", "items", "effect"],
                "enum",
                json!(schema::TAINT_EFFECTS),
            ),
        ),
        case(
            "provisioner-duplicate-taint",
            "spec.startupTaints[0]",
            "duplicate taint example.com/dedicated:NoSchedule",
            None,
        ),
        case(
            "provisioner-kubelet-unknown-eviction-signal",
            "spec.kubeletConfiguration.evictionHard[memory.free]",
            r#"unsupported value "memory.free": must be one of memory.available,"#,
            rule(
                &["spec", "kubeletConfiguration", "evictionHard"],
                cel::EVICTION_SIGNAL_MESSAGE,
            ),
        ),
        case(
            "provisioner-kubelet-eviction-over-100-percent",
            "spec.kubeletConfiguration.evictionHard[memory.available]",
            r#"invalid value "150%": must be a percentage from 0% to 100% or a non-negative quantity"#,
            openapi(
                &["spec", "kubeletConfiguration", "evictionHard", "*"],
                "pattern",
                json!(schema::EVICTION_THRESHOLD_PATTERN),
            ),
        ),
        case(
            "provisioner-kubelet-soft-eviction-without-grace-period",
            "spec.kubeletConfiguration.evictionSoft[memory.available]",
            cel::EVICTION_SOFT_NEEDS_GRACE_PERIOD.message,
            same(KUBELET),
        ),
        case(
            "provisioner-kubelet-grace-period-not-a-duration",
            "spec.kubeletConfiguration.evictionSoftGracePeriod[memory.available]",
            r#"invalid value "one minute": must be a duration"#,
            openapi(
                &[
                    "spec",
                    "kubeletConfiguration",
                    "evictionSoftGracePeriod",
                    "*",
                ],
                "pattern",
                json!(schema::DURATION_PATTERN),
            ),
        ),
        case(
            "provisioner-kubelet-image-gc-inverted",
            "spec.kubeletConfiguration.imageGCHighThresholdPercent",
            cel::IMAGE_GC_THRESHOLDS.message,
            same(KUBELET),
        ),
        case(
            "provisioner-kubelet-reserved-unknown-resource",
            "spec.kubeletConfiguration.systemReserved[nvidia.com/gpu]",
            r#"unsupported value "nvidia.com/gpu": must be one of cpu, memory, ephemeral-storage, pid"#,
            rule(
                &["spec", "kubeletConfiguration", "systemReserved"],
                cel::RESERVABLE_RESOURCE_MESSAGE,
            ),
        ),
        case(
            "provisioner-kubelet-cluster-dns-not-ip",
            "spec.kubeletConfiguration.clusterDNS[0]",
            r#"invalid value "kube-dns.kube-system": must be an IP address"#,
            None,
        ),
        case(
            "provisioner-limit-not-a-quantity",
            "spec.limits.resources[cpu]",
            r#""lots" is not a resource quantity"#,
            openapi(
                &["spec", "limits", "resources", "*"],
                "pattern",
                json!(schema::QUANTITY_PATTERN),
            ),
        ),
        case(
            "provisioner-limit-negative",
            "spec.limits.resources[memory]",
            "-1Gi must not be negative",
            openapi(
                &["spec", "limits", "resources", "*"],
                "pattern",
                json!(schema::QUANTITY_PATTERN),
            ),
        ),
        case(
            "provisioner-provider-without-subnet-selector",
            "spec.provider.subnetSelector",
            cel::SUBNET_SELECTOR_REQUIRED.message,
            same(&["spec", "provider"]),
        ),
        case(
            "provisioner-provider-unknown-ami-family",
            "spec.provider.amiFamily",
            r#"unsupported value "Windows2016": must be one of AL2, Bottlerocket, Ubuntu, Windows2019, Windows2022, Custom"#,
            openapi(
                &["spec", "provider", "amiFamily"],
                "enum",
                json!([
                    "AL2",
                    "Bottlerocket",
                    "Ubuntu",
                    "Windows2019",
                    "Windows2022",
                    "Custom"
                ]),
            ),
        ),
        case(
            "provisioner-provider-ref-without-name",
            "spec.providerRef.name",
            "required value",
            openapi(&["spec", "providerRef", "name"], "minLength", json!(1)),
        ),
        case(
            "provisioner-name-too-long",
            "metadata.name",
            cel::PROVISIONER_NAME_LENGTH.message,
            same(&[]),
        ),
        case(
            "awsnodetemplate-launch-template-with-security-groups",
            "spec",
            "launchTemplate and securityGroupSelector are mutually exclusive",
            rule(&["spec"], cel::LAUNCH_TEMPLATE_EXCLUSIVE.message),
        ),
        case(
            "awsnodetemplate-custom-without-ami-selector",
            "spec.amiSelector",
            cel::CUSTOM_AMI_FAMILY_NEEDS_SELECTOR.message,
            same(&["spec"]),
        ),
        case(
            "awsnodetemplate-malformed-subnet-ids",
            "spec.subnetSelector[aws-ids]",
            cel::SUBNET_IDS.message,
            same(&["spec", "subnetSelector"]),
        ),
        case(
            "awsnodetemplate-restricted-tag",
            "spec.tags[kubernetes.io/cluster/my-cluster]",
            cel::RESTRICTED_TAG_MESSAGE,
            same(&["spec", "tags"]),
        ),
        case(
            "awsnodetemplate-hop-limit-too-high",
            "spec.metadataOptions.httpPutResponseHopLimit",
            "65 is out of range: must be between 1 and 64",
            openapi(
                &["spec", "metadataOptions", "httpPutResponseHopLimit"],
                "maximum",
                json!(64),
            ),
        ),
        case(
            "awsnodetemplate-volume-too-small",
            "spec.blockDeviceMappings[0].ebs.volumeSize",
            "500M is out of range: must be between 1G and 64T",
            None,
        ),
        case(
            "awsnodetemplate-volume-without-size-or-snapshot",
            "spec.blockDeviceMappings[0].ebs",
            cel::VOLUME_SIZE_OR_SNAPSHOT.message,
            same(&["spec", "blockDeviceMappings", "items", "ebs"]),
        ),
        case(
            "awsnodetemplate-user-data-with-launch-template",
            "spec",
            cel::USER_DATA_VS_LAUNCH_TEMPLATE.message,
            same(&["spec"]),
        ),
        case(
            "awsnodetemplate-empty-security-group-selector",
            "spec.securityGroupSelector",
            "must not be empty",
            openapi(
                &["spec", "securityGroupSelector"],
                "minProperties",
                json!(1),
            ),
        ),
        case(
            "machine-gt-not-integer",
            "spec.requirements[0].values",
            cel::REQUIREMENT_SINGLE_INTEGER.message,
            same(REQUIREMENT),
        ),
    ]
}

/// Every message of a cross-field CEL rule `validate()` can report.
pub fn cel_messages() -> Vec<&'static str> {
    let rules = [
        cel::PROVIDER_EXCLUSIVE,
        cel::PROVIDER_REQUIRED,
        cel::TTL_AFTER_EMPTY_EXCLUSIVE,
        cel::PROVISIONER_NAME_LENGTH,
        cel::REQUIREMENT_VALUES_REQUIRED,
        cel::REQUIREMENT_SINGLE_INTEGER,
        cel::REQUIREMENT_NO_VALUES,
        cel::IMAGE_GC_THRESHOLDS,
        cel::EVICTION_SOFT_NEEDS_GRACE_PERIOD,
        cel::GRACE_PERIOD_NEEDS_EVICTION_SOFT,
        cel::SUBNET_SELECTOR_REQUIRED,
        cel::SECURITY_GROUP_SELECTOR_REQUIRED,
        cel::LAUNCH_TEMPLATE_EXCLUSIVE,
        cel::SELECTOR_KEYS_NOT_EMPTY,
        cel::SUBNET_IDS,
        cel::SECURITY_GROUP_IDS,
        cel::AMI_IDS,
        cel::TAG_KEYS_NOT_EMPTY,
        cel::DEVICE_NAME_REQUIRED,
        cel::VOLUME_SIZE_OR_SNAPSHOT,
        cel::USER_DATA_VS_LAUNCH_TEMPLATE,
        cel::AMI_SELECTOR_VS_LAUNCH_TEMPLATE,
        cel::CUSTOM_AMI_FAMILY_NEEDS_SELECTOR,
    ];
    let mut messages: Vec<&str> = rules.iter().map(|rule| rule.message).collect();
    messages.extend([
        cel::PROVISIONER_NAME_RESTRICTED_MESSAGE,
        cel::RESTRICTED_LABEL_MESSAGE,
        cel::EVICTION_SIGNAL_MESSAGE,
        cel::RESERVABLE_RESOURCE_MESSAGE,
        cel::RESTRICTED_TAG_MESSAGE,
    ]);
    messages
}

pub fn collect_rule_messages(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                if key == "x-kubernetes-validations" {
                    out.extend(rule_messages(value).into_iter().map(str::to_owned));
                } else {
                    collect_rule_messages(child, out);
                }
            }
        }
        Value::Array(items) => items
            .iter()
            .for_each(|item| collect_rule_messages(item, out)),
        _ => {}
    }
}

/// Kubernetes' structural schema rules: every node says its type (or is int-or-string, or keeps
/// unknown fields); no `$ref`; properties and additionalProperties never together; arrays say
/// their items; `anyOf`/`allOf`/`oneOf`/`not` branches carry no type, default or nullable.
pub fn check_structural(schema: &Value, path: &str, problems: &mut Vec<String>) {
    let Some(node) = schema.as_object() else {
        problems.push(format!("{path}: not an object"));
        return;
    };
    if node.contains_key("$ref") || node.contains_key("definitions") || node.contains_key("$defs") {
        problems.push(format!("{path}: uses a reference"));
    }
    let flag = |key: &str| node.get(key).and_then(Value::as_bool).unwrap_or(false);
    let open = flag("x-kubernetes-int-or-string") || flag("x-kubernetes-preserve-unknown-fields");
    match node.get("type").and_then(Value::as_str) {
        None if !open => problems.push(format!("{path}: no type")),
        Some("array") if !node.contains_key("items") => {
            problems.push(format!("{path}: array without items"))
        }
        _ => {}
    }
    if node.contains_key("properties") && node.contains_key("additionalProperties") {
        problems.push(format!("{path}: both properties and additionalProperties"));
    }
    for combinator in ["anyOf", "allOf", "oneOf", "not"] {
        let branches = match node.get(combinator) {
            Some(Value::Array(branches)) => branches.clone(),
            Some(branch) => vec![branch.clone()],
            None => continue,
        };
        for branch in branches {
            for forbidden in [
                "type",
                "default",
                "nullable",
                "additionalProperties",
                "description",
            ] {
                if branch.get(forbidden).is_some()
                    && !(flag("x-kubernetes-int-or-string") && forbidden == "type")
                {
                    problems.push(format!("{path}.{combinator}: sets {forbidden}"));
                }
            }
        }
    }
    if let Some(Value::Object(properties)) = node.get("properties") {
        for (name, child) in properties {
            check_structural(child, &format!("{path}.{name}"), problems);
        }
    }
    if let Some(items) = node.get("items") {
        check_structural(items, &format!("{path}[]"), problems);
    }
    if let Some(values) = node
        .get("additionalProperties")
        .filter(|values| values.is_object())
    {
        check_structural(values, &format!("{path}{{}}"), problems);
    }
}
