//! docs/iam-policy.json against the code: every AWS operation the controller calls (found in the
//! source, not listed by hand) is allowed, the calls it makes are allowed for the resources it
//! touches, and what belongs to another cluster is not.

use std::collections::{BTreeMap, BTreeSet};

use nodewright::cloudprovider::aws::ami::{Accelerator, Arch, ImageVariant, ssm_parameter};
use nodewright::cloudprovider::aws::launch_template::cluster_tags;
use nodewright::cloudprovider::types::AmiFamily;
use serde_json::Value;

use crate::repo;

const CLUSTER: &str = "my-cluster";
const REGION: &str = "us-west-2";
const ACCOUNT: &str = "111122223333";

/// The variables the README exports before `envsubst < docs/iam-policy.json`.
const PLACEHOLDERS: [(&str, &str); 4] = [
    ("AWS_PARTITION", "aws"),
    ("AWS_REGION", REGION),
    ("AWS_ACCOUNT_ID", ACCOUNT),
    ("CLUSTER_NAME", CLUSTER),
];

#[derive(Debug)]
struct Statement {
    sid: String,
    actions: Vec<String>,
    resources: Vec<String>,
    /// (operator, key, values)
    conditions: Vec<(String, String, Vec<String>)>,
}

fn strings(value: &Value) -> Vec<String> {
    match value {
        Value::String(s) => vec![s.clone()],
        Value::Array(items) => items
            .iter()
            .map(|v| v.as_str().expect("a string").to_string())
            .collect(),
        other => panic!("expected a string or a list of strings, got {other}"),
    }
}

fn policy_text() -> String {
    std::fs::read_to_string(repo("docs/iam-policy.json")).expect("docs/iam-policy.json")
}

/// The policy with the README's variables substituted, as IAM would receive it.
fn policy() -> Vec<Statement> {
    let mut text = policy_text();
    for (name, value) in PLACEHOLDERS {
        text = text.replace(&format!("${{{name}}}"), value);
    }
    assert!(
        !text.contains("${"),
        "the policy uses a variable the README does not export"
    );
    let document: Value = serde_json::from_str(&text).expect("the policy is JSON");
    assert_eq!(document["Version"], "2012-10-17");
    document["Statement"]
        .as_array()
        .expect("statements")
        .iter()
        .map(|s| {
            assert_eq!(s["Effect"], "Allow", "only Allow statements: {s}");
            for field in ["NotAction", "NotResource", "Principal"] {
                assert!(s.get(field).is_none(), "{field} in {s}");
            }
            let conditions = s
                .get("Condition")
                .and_then(Value::as_object)
                .into_iter()
                .flatten()
                .flat_map(|(operator, keys)| {
                    keys.as_object()
                        .expect("condition keys")
                        .iter()
                        .map(|(key, values)| (operator.clone(), key.clone(), strings(values)))
                })
                .collect();
            Statement {
                sid: s["Sid"].as_str().unwrap_or_default().to_string(),
                actions: strings(&s["Action"]),
                resources: strings(&s["Resource"]),
                conditions,
            }
        })
        .collect()
}

/// IAM's wildcard match: `*` any run of characters, `?` one.
fn glob(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let mut matched = vec![vec![false; t.len() + 1]; p.len() + 1];
    matched[0][0] = true;
    for i in 1..=p.len() {
        matched[i][0] = matched[i - 1][0] && p[i - 1] == '*';
        for j in 1..=t.len() {
            matched[i][j] = match p[i - 1] {
                '*' => matched[i - 1][j] || matched[i][j - 1],
                '?' => matched[i - 1][j - 1],
                c => matched[i - 1][j - 1] && c == t[j - 1],
            };
        }
    }
    matched[p.len()][t.len()]
}

/// One call as IAM evaluates it: the action, one resource, and the request context.
struct Call {
    action: String,
    resource: String,
    context: BTreeMap<String, Vec<String>>,
}

fn call(action: &str, resource: &str) -> Call {
    Call {
        action: action.to_string(),
        resource: resource.to_string(),
        context: BTreeMap::from([("aws:RequestedRegion".to_string(), vec![REGION.to_string()])]),
    }
}

impl Call {
    fn with(mut self, key: &str, value: &str) -> Call {
        self.context
            .entry(key.to_string())
            .or_default()
            .push(value.to_string());
        self
    }

    /// `aws:RequestTag/…` (tags in the request) or `aws:ResourceTag/…` (tags the resource has).
    fn tagged(self, prefix: &str, tags: &BTreeMap<String, String>) -> Call {
        tags.iter().fold(self, |call, (key, value)| {
            call.with(&format!("{prefix}/{key}"), value)
        })
    }
}

fn condition_holds(operator: &str, key: &str, values: &[String], call: &Call) -> bool {
    let Some(present) = call.context.get(key) else {
        return false;
    };
    match operator {
        "StringEquals" => present.iter().any(|p| values.contains(p)),
        "StringLike" => present.iter().any(|p| values.iter().any(|v| glob(v, p))),
        other => panic!("the test does not evaluate condition operator {other}"),
    }
}

fn allows(policy: &[Statement], call: &Call) -> bool {
    policy.iter().any(|statement| {
        statement
            .actions
            .iter()
            .any(|a| a.eq_ignore_ascii_case(&call.action))
            && statement.resources.iter().any(|r| glob(r, &call.resource))
            && statement
                .conditions
                .iter()
                .all(|(op, key, values)| condition_holds(op, key, values, call))
    })
}

fn camel(snake: &str) -> String {
    snake
        .split('_')
        .map(|word| {
            let mut chars = word.chars();
            chars
                .next()
                .map(|first| first.to_ascii_uppercase().to_string() + chars.as_str())
                .unwrap_or_default()
        })
        .collect()
}

fn rust_sources(dir: &std::path::Path, into: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("source directory").flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_sources(&path, into);
        } else if path.extension().is_some_and(|e| e == "rs") {
            into.push(path);
        }
    }
}

/// Every `service:Operation` the source calls through an AWS SDK client: fields typed
/// `aws_sdk_<service>::Client` and the operation called on them (`self.ec2.create_fleet()`).
fn operations_in_the_code() -> BTreeSet<String> {
    let mut files = Vec::new();
    rust_sources(&repo("src"), &mut files);
    let mut operations = BTreeSet::new();
    for file in files {
        let text = std::fs::read_to_string(&file).expect("readable source");
        let code: String = text
            .split("#[cfg(test)]")
            .next()
            .unwrap_or_default()
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect();
        let mut clients = BTreeMap::new();
        for (at, _) in code.match_indices(":aws_sdk_") {
            let field: String = code[..at]
                .chars()
                .rev()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect::<String>()
                .chars()
                .rev()
                .collect();
            let rest = &code[at + ":aws_sdk_".len()..];
            let service: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric())
                .collect();
            if !field.is_empty() && rest[service.len()..].starts_with("::Client") {
                clients.insert(field, service);
            }
        }
        for (field, service) in &clients {
            let call = format!("self.{field}.");
            for (at, _) in code.match_indices(&call) {
                let rest = &code[at + call.len()..];
                let method: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                    .collect();
                if rest[method.len()..].starts_with("()") && !method.is_empty() {
                    operations.insert(format!("{service}:{}", camel(&method)));
                }
            }
        }
    }
    operations
}

#[test]
fn the_policy_has_no_wildcard_action_and_only_known_variables() {
    let text = policy_text();
    let mut variables = BTreeSet::new();
    for (at, _) in text.match_indices("${") {
        let name: String = text[at + 2..].chars().take_while(|c| *c != '}').collect();
        variables.insert(name);
    }
    let known: BTreeSet<String> = PLACEHOLDERS.iter().map(|(n, _)| n.to_string()).collect();
    assert_eq!(variables, known, "the README exports exactly these");
    // envsubst with a list replaces only those, so the README's list must be the policy's.
    let listed: Vec<String> = PLACEHOLDERS
        .iter()
        .map(|(n, _)| format!("${{{n}}}"))
        .collect();
    let readme = std::fs::read_to_string(repo("README.md")).expect("README.md");
    let command = format!("envsubst '{}' < docs/iam-policy.json", listed.join(" "));
    assert!(readme.contains(&command), "the README runs `{command}`");
    for statement in policy() {
        for action in &statement.actions {
            assert!(
                !action.contains('*'),
                "{}: wildcard action {action}",
                statement.sid
            );
            assert!(action.contains(':'), "{}: {action}", statement.sid);
        }
    }
}

#[test]
fn every_aws_operation_the_code_calls_is_allowed() {
    let in_code = operations_in_the_code();
    // The scan must see the calls we know of, or it is not reading the code.
    for known in [
        "ec2:CreateFleet",
        "ec2:TerminateInstances",
        "ssm:GetParameter",
        "pricing:GetProducts",
    ] {
        assert!(in_code.contains(known), "{known} not found in {in_code:?}");
    }
    // Every Ec2Api method is one SDK call of the same name.
    let trait_text = std::fs::read_to_string(repo("src/cloudprovider/aws/ec2.rs")).expect("ec2.rs");
    let trait_body = trait_text
        .split("pub trait Ec2Api")
        .nth(1)
        .and_then(|rest| rest.split("\n}").next())
        .expect("the Ec2Api trait");
    for (at, _) in trait_body.match_indices("fn ") {
        let name: String = trait_body[at + 3..]
            .chars()
            .take_while(|c| c.is_ascii_lowercase() || *c == '_')
            .collect();
        let operation = camel(&name);
        assert!(
            in_code
                .iter()
                .any(|op| op.ends_with(&format!(":{operation}"))),
            "Ec2Api::{name} has no SDK call {operation} in {in_code:?}"
        );
    }
    let policy = policy();
    let allowed: BTreeSet<String> = policy
        .iter()
        .flat_map(|s| s.actions.iter().cloned())
        .collect();
    // Called on the controller's behalf: CreateFleet launches through RunInstances with the
    // node role, and tags what it creates; the interruption queue's calls.
    let implied = [
        "ec2:RunInstances",
        "ec2:CreateTags",
        "iam:PassRole",
        "sqs:GetQueueUrl",
        "sqs:ReceiveMessage",
        "sqs:DeleteMessage",
        "sqs:GetQueueAttributes",
    ];
    let missing: Vec<&str> = in_code
        .iter()
        .map(String::as_str)
        .chain(implied)
        .filter(|op| !allowed.contains(*op))
        .collect();
    assert!(
        missing.is_empty(),
        "docs/iam-policy.json does not allow {missing:?}"
    );
    let ours: BTreeSet<&str> = in_code.iter().map(String::as_str).chain(implied).collect();
    let unused: Vec<&String> = allowed
        .iter()
        .filter(|a| !ours.contains(a.as_str()))
        .collect();
    assert!(unused.is_empty(), "allowed but never called: {unused:?}");
}

fn ec2_arn(resource: &str) -> String {
    format!("arn:aws:ec2:{REGION}:{ACCOUNT}:{resource}")
}

#[test]
fn launching_is_allowed_only_with_this_clusters_tags() {
    let policy = policy();
    let ours = cluster_tags(CLUSTER);
    let theirs = cluster_tags("another-cluster");
    let image = format!("arn:aws:ec2:{REGION}::image/ami-0123456789abcdef0");
    let existing = [
        image.as_str(),
        &ec2_arn("subnet/subnet-0123"),
        &ec2_arn("security-group/sg-0123"),
        &ec2_arn("launch-template/lt-0123"),
    ]
    .map(str::to_string);
    let created = [
        "fleet/fleet-0123",
        "instance/i-0123",
        "volume/vol-0123",
        "network-interface/eni-0123",
        "spot-instances-request/sir-0123",
    ]
    .map(ec2_arn);
    for action in ["ec2:CreateFleet", "ec2:RunInstances"] {
        for resource in existing.iter().chain(&created) {
            assert!(
                allows(
                    &policy,
                    &call(action, resource).tagged("aws:RequestTag", &ours)
                ),
                "{action} on {resource}"
            );
        }
        // IAM allows a call only if every resource in it is allowed: a launch tagged for
        // another cluster is refused on the instance, its volumes, interfaces and fleet.
        for resource in created
            .iter()
            .filter(|r| !r.contains("spot-instances-request"))
        {
            assert!(
                !allows(
                    &policy,
                    &call(action, resource).tagged("aws:RequestTag", &theirs)
                ),
                "{action} creates {resource} without this cluster's tag"
            );
        }
    }
    for (resource, creator) in [
        ("instance/i-0123", "CreateFleet"),
        ("volume/vol-0123", "CreateFleet"),
        ("fleet/fleet-0123", "CreateFleet"),
        ("launch-template/lt-0123", "CreateLaunchTemplate"),
    ] {
        let tag_on_create = call("ec2:CreateTags", &ec2_arn(resource))
            .tagged("aws:RequestTag", &ours)
            .with("ec2:CreateAction", creator);
        assert!(allows(&policy, &tag_on_create), "tags on {resource}");
        let retag = call("ec2:CreateTags", &ec2_arn(resource)).tagged("aws:RequestTag", &ours);
        assert!(
            !allows(&policy, &retag),
            "tagging an existing {resource} is not needed"
        );
    }
    assert!(allows(
        &policy,
        &call(
            "ec2:CreateLaunchTemplate",
            &ec2_arn("launch-template/lt-0123")
        )
        .tagged("aws:RequestTag", &ours)
    ));
    let node_role = format!("arn:aws:iam::{ACCOUNT}:role/KarpenterNodeRole-{CLUSTER}");
    assert!(allows(
        &policy,
        &call("iam:PassRole", &node_role).with("iam:PassedToService", "ec2.amazonaws.com")
    ));
    assert!(!allows(
        &policy,
        &call("iam:PassRole", &node_role).with("iam:PassedToService", "lambda.amazonaws.com")
    ));
    assert!(!allows(
        &policy,
        &call(
            "iam:PassRole",
            &format!("arn:aws:iam::{ACCOUNT}:role/AdministratorAccess")
        )
        .with("iam:PassedToService", "ec2.amazonaws.com")
    ));
}

#[test]
fn only_this_clusters_instances_and_templates_can_be_deleted() {
    let policy = policy();
    for (action, resource) in [
        ("ec2:TerminateInstances", "instance/i-0123"),
        ("ec2:DeleteLaunchTemplate", "launch-template/lt-0123"),
    ] {
        let arn = ec2_arn(resource);
        let mine = call(action, &arn).tagged("aws:ResourceTag", &cluster_tags(CLUSTER));
        let theirs = call(action, &arn).tagged("aws:ResourceTag", &cluster_tags("another"));
        assert!(
            allows(&policy, &mine),
            "{action} on this cluster's {resource}"
        );
        assert!(
            !allows(&policy, &theirs),
            "{action} on another cluster's {resource}"
        );
        assert!(
            !allows(&policy, &call(action, &arn)),
            "{action} on an untagged {resource}"
        );
    }
}

#[test]
fn reads_are_allowed_in_the_clusters_region_and_ami_parameters_only_under_aws_service() {
    let policy = policy();
    for operation in operations_in_the_code() {
        if operation.starts_with("ec2:Describe") {
            assert!(allows(&policy, &call(&operation, "*")), "{operation}");
            let elsewhere = Call {
                context: BTreeMap::from([(
                    "aws:RequestedRegion".to_string(),
                    vec!["eu-west-1".to_string()],
                )]),
                ..call(&operation, "*")
            };
            assert!(
                !allows(&policy, &elsewhere),
                "{operation} outside the region"
            );
        }
    }
    let variants = [
        ImageVariant {
            arch: Arch::Amd64,
            accelerator: Accelerator::None,
        },
        ImageVariant {
            arch: Arch::Arm64,
            accelerator: Accelerator::None,
        },
        ImageVariant {
            arch: Arch::Amd64,
            accelerator: Accelerator::Nvidia,
        },
    ];
    let mut checked = 0;
    for family in [AmiFamily::Al2, AmiFamily::Bottlerocket, AmiFamily::Ubuntu] {
        for variant in variants {
            let Some(name) = ssm_parameter(family, "1.28", variant) else {
                continue;
            };
            let arn = format!("arn:aws:ssm:{REGION}::parameter{name}");
            assert!(allows(&policy, &call("ssm:GetParameter", &arn)), "{arn}");
            checked += 1;
        }
    }
    assert!(checked >= 6, "the AMI parameters were checked");
    let secret = format!("arn:aws:ssm:{REGION}:{ACCOUNT}:parameter/prod/database-password");
    assert!(!allows(&policy, &call("ssm:GetParameter", &secret)));
    assert!(allows(&policy, &call("pricing:GetProducts", "*")));
    let queue = format!("arn:aws:sqs:{REGION}:{ACCOUNT}:{CLUSTER}");
    for action in [
        "sqs:GetQueueUrl",
        "sqs:ReceiveMessage",
        "sqs:DeleteMessage",
        "sqs:GetQueueAttributes",
    ] {
        assert!(allows(&policy, &call(action, &queue)), "{action}");
        let other = format!("arn:aws:sqs:{REGION}:{ACCOUNT}:payments");
        assert!(
            !allows(&policy, &call(action, &other)),
            "{action} elsewhere"
        );
    }
}
