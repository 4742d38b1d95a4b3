//! The Karpenter API as users meet it: tutorial manifests parse and validate, malformed
//! manifests are refused with the right field path (by `validate()`, and by a rule in the CRD
//! the API server enforces), round trips are lossless, and `crds/` is what the code generates.

use std::path::{Path, PathBuf};

use nodewright::apis::crds;
use nodewright::apis::{AwsNodeTemplate, Machine, Operator, Provisioner, ValidationErrors};
use nodewright_scheduling::labels;
use serde_json::Value;

#[path = "apis/support.rs"]
mod support;
use support::*;

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo(path)).unwrap_or_else(|err| panic!("reading {path}: {err}"))
}

#[test]
fn tutorial_provisioner_parses_and_validates() {
    let provisioner: Provisioner =
        serde_saphyr::from_str(&read("examples/tutorial/provisioner.yaml")).expect("parses");
    provisioner
        .validate()
        .expect("the tutorial provisioner is valid");

    let spec = &provisioner.spec;
    assert_eq!(provisioner.metadata.name.as_deref(), Some("default"));
    assert_eq!(spec.requirements.len(), 1);
    assert_eq!(spec.requirements[0].key, labels::CAPACITY_TYPE);
    assert_eq!(spec.requirements[0].operator, Operator::In);
    assert_eq!(spec.requirements[0].values, [labels::CAPACITY_TYPE_SPOT]);
    let limits = spec.limits.as_ref().expect("limits");
    assert_eq!(limits.resources["cpu"].0, "1000");
    let provider = spec.provider.as_ref().expect("inline provider");
    let subnets = provider
        .settings
        .subnet_selector
        .as_ref()
        .expect("subnet selector");
    assert_eq!(subnets["karpenter.sh/discovery"], "my-cluster");
    assert_eq!(
        provider.settings.instance_profile.as_deref(),
        Some("KarpenterNodeInstanceProfile-my-cluster")
    );
    assert_eq!(spec.ttl_seconds_after_empty, Some(30));
    assert!(spec.provider_ref.is_none());
}

#[test]
fn tutorial_provisioner_with_node_template_parses_and_validates() {
    let text = read("examples/tutorial/provisioner-with-template.yaml");
    let documents: Vec<Value> = serde_saphyr::from_multiple(&text).expect("parses");
    assert_eq!(documents.len(), 2);
    let provisioner: Provisioner =
        serde_json::from_value(documents[0].clone()).expect("a Provisioner");
    let template: AwsNodeTemplate =
        serde_json::from_value(documents[1].clone()).expect("an AWSNodeTemplate");
    provisioner.validate().expect("the provisioner is valid");
    template.validate().expect("the node template is valid");
    let reference = provisioner.spec.provider_ref.as_ref().expect("providerRef");
    assert_eq!(
        Some(reference.name.as_str()),
        template.metadata.name.as_deref()
    );
    assert!(provisioner.spec.provider.is_none());
    assert_eq!(template.spec.settings.subnet_selector, discovery_selector());
}

fn discovery_selector() -> Option<std::collections::BTreeMap<String, String>> {
    Some([("karpenter.sh/discovery".to_owned(), "my-cluster".to_owned())].into())
}

#[test]
fn manifests_setting_every_field_validate() {
    let provisioner: Provisioner = parse_fixture("valid/provisioner-every-field.yaml");
    provisioner.validate().expect("valid");
    let template: AwsNodeTemplate = parse_fixture("valid/awsnodetemplate-every-field.yaml");
    template.validate().expect("valid");
    let machine: Machine = parse_fixture("valid/machine-every-field.yaml");
    machine.validate().expect("valid");
}

#[test]
fn inline_provider_keeps_fields_it_does_not_model() {
    let yaml = r#"
apiVersion: karpenter.sh/v1alpha5
kind: Provisioner
metadata: {name: legacy}
spec:
  provider:
    apiVersion: extensions.karpenter.sh/v1alpha1
    kind: AWS
    subnetSelector: {karpenter.sh/discovery: my-cluster}
    securityGroupSelector: {karpenter.sh/discovery: my-cluster}
    launchTemplateVersion: "3"
    futureOption: {nested: [1, 2]}
"#;
    let provisioner: Provisioner = serde_saphyr::from_str(yaml).expect("parses");
    provisioner.validate().expect("valid");
    let provider = provisioner.spec.provider.as_ref().expect("provider");
    assert_eq!(provider.kind.as_deref(), Some("AWS"));
    assert_eq!(provider.unknown["launchTemplateVersion"], Value::from("3"));
    assert_eq!(
        provider.unknown["futureOption"]["nested"][1],
        Value::from(2)
    );
    assert!(
        !provider.unknown.contains_key("subnetSelector"),
        "modelled fields are not duplicated"
    );
    let again = serde_json::to_value(&provisioner).expect("serializes");
    assert_eq!(
        again["spec"]["provider"]["futureOption"]["nested"][0],
        Value::from(1)
    );
    assert_eq!(
        again["spec"]["provider"]["apiVersion"],
        Value::from("extensions.karpenter.sh/v1alpha1")
    );
}

#[test]
fn every_problem_is_reported_not_just_the_first() {
    let yaml = r#"
apiVersion: karpenter.sh/v1alpha5
kind: Provisioner
metadata: {name: default}
spec:
  weight: 0
  ttlSecondsUntilExpired: -1
  requirements:
    - {key: kubernetes.io/arch, operator: In}
    - {key: karpenter.k8s.aws/instance-cpu, operator: Gt, values: ["1", "2"]}
"#;
    let provisioner: Provisioner = serde_saphyr::from_str(yaml).expect("parses");
    let errors = provisioner.validate().expect_err("invalid");
    let paths: Vec<&str> = errors
        .errors()
        .iter()
        .map(|error| error.path.as_str())
        .collect();
    assert_eq!(
        paths,
        [
            "spec.requirements[0].values",
            "spec.requirements[1].values",
            "spec",
            "spec.ttlSecondsUntilExpired",
            "spec.weight",
        ]
    );
    let message = errors.to_string();
    assert!(message.starts_with("5 invalid field(s): "), "{message}");
    assert!(
        message.contains("spec.weight: 0 is out of range: must be between 1 and 100"),
        "{message}"
    );
}

// --- Malformed manifests ----------------------------------------------------------------------

#[test]
fn malformed_manifests_are_refused_with_their_field_path() {
    let cases = malformed_cases();
    assert!(cases.len() >= 20, "at least 20 malformed manifests");
    let mut covered = std::collections::BTreeSet::new();
    for case in &cases {
        covered.insert(case.file);
        let first_line = read(&format!("tests/fixtures/apis/invalid/{}.yaml", case.file));
        let rust_only = first_line
            .lines()
            .next()
            .is_some_and(|line| line.contains("validate() only"));
        assert_eq!(
            case.schema.is_none(),
            rust_only,
            "{}: mark fixtures the CRD cannot refuse",
            case.file
        );
        let errors = validate_fixture(case.file);
        let errors = errors.errors();
        assert_eq!(
            errors.len(),
            1,
            "{}: expected exactly one problem, got {errors:#?}",
            case.file
        );
        assert_eq!(errors[0].path.as_str(), case.path, "{}: path", case.file);
        let message = errors[0].problem.to_string();
        assert!(
            message.contains(case.message),
            "{}: {message:?} should contain {:?}",
            case.file,
            case.message
        );
        if let Some(check) = &case.schema {
            let crd = crd_schema(kind_of(case.file));
            check.assert_holds(&crd, case.file, &message);
        }
    }
    let on_disk: std::collections::BTreeSet<String> =
        std::fs::read_dir(repo("tests/fixtures/apis/invalid"))
            .expect("fixtures")
            .map(|entry| {
                entry
                    .expect("entry")
                    .file_name()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
    let listed: std::collections::BTreeSet<String> =
        covered.iter().map(|file| format!("{file}.yaml")).collect();
    assert_eq!(
        on_disk, listed,
        "every fixture under tests/fixtures/apis/invalid has a case"
    );
}

fn validate_fixture(file: &str) -> ValidationErrors {
    let path = format!("invalid/{file}.yaml");
    let result = match kind_of(file) {
        Kind::Provisioner => parse_fixture::<Provisioner>(&path).validate(),
        Kind::AwsNodeTemplate => parse_fixture::<AwsNodeTemplate>(&path).validate(),
        Kind::Machine => parse_fixture::<Machine>(&path).validate(),
    };
    result.expect_err(file)
}

fn parse_fixture<T: serde::de::DeserializeOwned>(path: &str) -> T {
    let text = read(&format!("tests/fixtures/apis/{path}"));
    serde_saphyr::from_str(&text).unwrap_or_else(|err| panic!("{path} should parse: {err}"))
}

// --- Serde round trips ------------------------------------------------------------------------

fn assert_round_trips<T>(path: &str)
where
    T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let text = read(path);
    let original: T = serde_saphyr::from_str(&text).unwrap_or_else(|err| panic!("{path}: {err}"));
    let yaml = serde_saphyr::to_string(&original).expect("serializes to YAML");
    let from_yaml: T = serde_saphyr::from_str(&yaml).expect("reparses from YAML");
    assert_eq!(from_yaml, original, "{path}: YAML round trip\n{yaml}");
    let json = serde_json::to_string(&original).expect("serializes to JSON");
    let from_json: T = serde_json::from_str(&json).expect("reparses from JSON");
    assert_eq!(from_json, original, "{path}: JSON round trip");
    let written: Value = serde_saphyr::from_str(&text).expect("raw YAML");
    let rewritten = serde_json::to_value(&original).expect("to JSON value");
    assert_eq!(
        field_names(&rewritten),
        field_names(&written),
        "{path}: every field survives under its own name"
    );
}

/// Every object key path in a JSON value, so that a renamed or dropped field shows up.
fn field_names(value: &Value) -> std::collections::BTreeSet<String> {
    fn walk(value: &Value, prefix: &str, out: &mut std::collections::BTreeSet<String>) {
        match value {
            Value::Object(map) => {
                for (key, child) in map {
                    let path = format!("{prefix}.{key}");
                    out.insert(path.clone());
                    walk(child, &path, out);
                }
            }
            Value::Array(items) => items
                .iter()
                .for_each(|item| walk(item, &format!("{prefix}[]"), out)),
            _ => {}
        }
    }
    let mut out = std::collections::BTreeSet::new();
    walk(value, "", &mut out);
    out
}

#[test]
fn provisioner_round_trips_through_yaml_and_json() {
    assert_round_trips::<Provisioner>("tests/fixtures/apis/valid/provisioner-every-field.yaml");
    assert_round_trips::<Provisioner>("examples/tutorial/provisioner.yaml");
}

#[test]
fn node_template_round_trips_through_yaml_and_json() {
    assert_round_trips::<AwsNodeTemplate>(
        "tests/fixtures/apis/valid/awsnodetemplate-every-field.yaml",
    );
}

#[test]
fn machine_round_trips_through_yaml_and_json() {
    assert_round_trips::<Machine>("tests/fixtures/apis/valid/machine-every-field.yaml");
}

// --- Generated CRDs ---------------------------------------------------------------------------

#[test]
fn generated_crd_schemas_are_structural() {
    for crd in crds::crds() {
        let schema = schema_of(&crd);
        let mut problems = Vec::new();
        check_structural(&schema, "openAPIV3Schema", &mut problems);
        assert!(
            problems.is_empty(),
            "{} is not structural:\n{}",
            crd.spec.names.kind,
            problems.join("\n")
        );
    }
}

#[test]
fn crds_are_cluster_scoped_with_status_and_printer_columns() {
    let crds = crds::crds();
    let kinds: Vec<&str> = crds
        .iter()
        .map(|crd| crd.spec.names.kind.as_str())
        .collect();
    assert_eq!(kinds, ["AWSNodeTemplate", "Machine", "Provisioner"]);
    for crd in &crds {
        assert_eq!(crd.spec.scope, "Cluster");
        assert_eq!(
            crd.spec.names.categories.as_deref(),
            Some(&["karpenter".to_owned()][..])
        );
        let version = &crd.spec.versions[0];
        assert!(
            version
                .subresources
                .as_ref()
                .and_then(|s| s.status.as_ref())
                .is_some(),
            "status subresource"
        );
        assert!(version.served && version.storage);
    }
    let names = [
        "awsnodetemplates.karpenter.k8s.aws",
        "machines.karpenter.sh",
        "provisioners.karpenter.sh",
    ];
    for (crd, name) in crds.iter().zip(names) {
        assert_eq!(crd.metadata.name.as_deref(), Some(name));
    }
    let escaped = |label: &str| format!(".metadata.labels.{}", label.replace('.', r"\."));
    let machine_columns = columns(&crds[1]);
    let default_columns: Vec<(&str, &str)> = machine_columns
        .iter()
        .filter(|(_, _, priority)| *priority == 0)
        .map(|(name, path, _)| (name.as_str(), path.as_str()))
        .collect();
    assert_eq!(
        default_columns,
        [
            ("Type", escaped(labels::INSTANCE_TYPE).as_str()),
            ("Capacity", escaped(labels::CAPACITY_TYPE).as_str()),
            ("Zone", escaped(labels::ZONE).as_str()),
            ("Node", ".status.nodeName"),
            ("Ready", r#".status.conditions[?(@.type=="Ready")].status"#),
            ("Age", ".metadata.creationTimestamp"),
        ]
    );
    assert!(
        machine_columns
            .iter()
            .any(|(_, path, _)| *path == escaped(labels::PROVISIONER_NAME))
    );
    let provisioner_columns: Vec<String> = columns(&crds[2])
        .into_iter()
        .map(|(name, _, _)| name)
        .collect();
    assert!(provisioner_columns.starts_with(&["Template".to_owned(), "Weight".to_owned()]));
}

fn columns(crd: &Crd) -> Vec<(String, String, i32)> {
    crd.spec.versions[0]
        .additional_printer_columns
        .iter()
        .flatten()
        .map(|column| {
            (
                column.name.clone(),
                column.json_path.clone(),
                column.priority.unwrap_or(0),
            )
        })
        .collect()
}

#[test]
fn every_cross_field_rule_is_in_a_crd() {
    let all: Vec<Value> = crds::crds().iter().map(schema_of).collect();
    let mut found = Vec::new();
    for schema in &all {
        collect_rule_messages(schema, &mut found);
    }
    for message in cel_messages() {
        assert!(
            found.iter().any(|m| m == message),
            "no CRD carries the rule {message:?}"
        );
    }
}

#[test]
fn crds_yaml_reads_back_as_the_generated_crds() {
    let yaml = nodewright::apis::crds_yaml().expect("serializes");
    let parsed: Vec<Crd> = serde_saphyr::from_multiple(&yaml).expect("the YAML parses");
    assert_eq!(parsed, crds::crds());
}

#[test]
fn crds_directory_is_up_to_date() {
    let files = crds::crd_files().expect("serializes");
    let dir = repo("crds");
    if std::env::var_os("UPDATE_CRDS").is_some() {
        std::fs::create_dir_all(&dir).expect("create crds/");
        for entry in std::fs::read_dir(&dir).expect("list crds/").flatten() {
            if entry.path().extension().is_some_and(|ext| ext == "yaml") {
                std::fs::remove_file(entry.path()).expect("remove stale CRD");
            }
        }
        for (name, yaml) in &files {
            std::fs::write(dir.join(name), yaml).expect("write CRD");
        }
    }
    const HOW: &str = "crds/ is stale: run `UPDATE_CRDS=1 cargo test -p nodewright --test apis crds_directory_is_up_to_date` and commit crds/";
    let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
        .expect(HOW)
        .flatten()
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".yaml"))
        .collect();
    on_disk.sort();
    let expected: Vec<String> = files.iter().map(|(name, _)| name.clone()).collect();
    assert_eq!(on_disk, expected, "{HOW}");
    for (name, yaml) in &files {
        let written = std::fs::read_to_string(dir.join(name)).expect(HOW);
        assert!(written == *yaml, "{HOW} ({name} differs)");
    }
}

#[test]
fn crds_command_prints_the_files_in_crds_directory() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_nodewright"))
        .args(["--log-format", "text", "crds"])
        .output()
        .expect("runs nodewright crds");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let printed = String::from_utf8(output.stdout).expect("UTF-8");
    let files: Vec<String> = crds::crd_files()
        .expect("serializes")
        .iter()
        .map(|(name, _)| read(&format!("crds/{name}")))
        .collect();
    assert_eq!(
        printed,
        files.join("---\n"),
        "`nodewright crds` must print exactly crds/*.yaml"
    );
}

// --- Properties -------------------------------------------------------------------------------

mod properties {
    use nodewright::apis::schema;
    use nodewright::apis::validation::syntax;
    use nodewright::apis::{
        NodeSelectorRequirement, Operator, ProviderRef, Provisioner, ProvisionerSpec,
    };
    use proptest::prelude::*;
    use proptest::string::string_regex;

    /// A strategy for the strings an OpenAPI pattern (anchored with `^…$`) accepts.
    fn matching(pattern: &str) -> impl Strategy<Value = String> {
        let unanchored = pattern.trim_start_matches('^').trim_end_matches('$');
        string_regex(unanchored).expect("a pattern proptest can generate from")
    }

    proptest! {
        #[test]
        fn quantities_the_crd_accepts_parse_and_are_not_negative(text in matching(schema::QUANTITY_PATTERN)) {
            let value = syntax::parse_quantity(&text);
            prop_assert!(value.is_some_and(|value| value >= 0.0), "{text:?} parsed as {value:?}");
        }

        #[test]
        fn label_values_the_crd_accepts_pass_validate(text in matching(schema::LABEL_VALUE_PATTERN)) {
            prop_assume!(text.len() <= schema::LABEL_VALUE_MAX_LENGTH);
            prop_assert_eq!(syntax::label_value_problem(&text), None);
        }

        #[test]
        fn qualified_names_the_crd_accepts_pass_validate(text in matching(schema::QUALIFIED_NAME_PATTERN)) {
            // The pattern cannot bound the prefix to 253 characters; maxLength bounds the whole.
            prop_assume!(text.split_once('/').is_none_or(|(prefix, _)| prefix.len() <= 253));
            prop_assert_eq!(syntax::qualified_name_problem(&text), None);
        }

        #[test]
        fn eviction_thresholds_the_crd_accepts_pass_validate(text in matching(schema::EVICTION_THRESHOLD_PATTERN)) {
            prop_assert_eq!(syntax::eviction_threshold_problem(&text), None);
        }

        #[test]
        fn durations_the_crd_accepts_pass_validate(text in matching(schema::DURATION_PATTERN)) {
            prop_assert_eq!(syntax::duration_problem(&text), None);
        }

        /// Whatever a manifest holds, validate() answers (no panic) and every problem points
        /// into the object.
        #[test]
        fn validate_reports_paths_inside_the_object_for_any_input(
            key in any::<String>(),
            value in any::<String>(),
            operator in any::<String>(),
            values in proptest::collection::vec(any::<String>(), 0..3),
            quantity in any::<String>(),
            weight in any::<i32>(),
            ttl in any::<i64>(),
        ) {
            let spec = ProvisionerSpec {
                labels: [(key.clone(), value.clone())].into(),
                requirements: vec![NodeSelectorRequirement::new(key.clone(), Operator::from(operator.as_str()), values)],
                limits: Some(nodewright::apis::provisioner::Limits {
                    resources: [(key.clone(), k8s_openapi::apimachinery::pkg::api::resource::Quantity(quantity))].into(),
                }),
                provider_ref: Some(ProviderRef::named(value)),
                weight: Some(weight),
                ttl_seconds_until_expired: Some(ttl),
                ..ProvisionerSpec::default()
            };
            let provisioner = Provisioner::new(&key, spec);
            if let Err(errors) = provisioner.validate() {
                for error in errors.errors() {
                    let path = error.path.as_str();
                    prop_assert!(path == "spec" || path.starts_with("spec.") || path == "metadata.name", "{path}");
                    prop_assert!(!error.problem.to_string().is_empty());
                }
            }
        }

        /// The number of values an operator takes, as Kubernetes defines it.
        #[test]
        fn requirement_values_are_checked_against_the_operator(
            operator in proptest::sample::select(Operator::KNOWN),
            values in proptest::collection::vec("[0-9]{1,3}|[a-z]{1,5}", 0..4),
        ) {
            let operator = Operator::from(operator);
            let requirement = NodeSelectorRequirement::new("example.com/tier", operator.clone(), values.clone());
            let spec = ProvisionerSpec {
                requirements: vec![requirement],
                provider_ref: Some(ProviderRef::named("default")),
                ..ProvisionerSpec::default()
            };
            let integer = |value: &String| value.chars().all(|c| c.is_ascii_digit());
            let allowed = match operator {
                Operator::In | Operator::NotIn => !values.is_empty(),
                Operator::Exists | Operator::DoesNotExist => values.is_empty(),
                Operator::Gt | Operator::Lt => values.len() == 1 && integer(&values[0]),
                Operator::Other(_) => false,
            };
            prop_assert_eq!(spec.validate().is_ok(), allowed, "{:?} {:?}", operator, values);
        }
    }
}
