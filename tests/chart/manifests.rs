//! What the chart installs: every object as its Kubernetes type, the pod's security and
//! placement, settings the controller accepts, and the toggles users flip.

use std::collections::BTreeMap;

use clap::{CommandFactory, Parser};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Container, PodSpec, Service, ServiceAccount};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use nodewright::cli::{Cli, Command};
use nodewright::settings::RebalanceAction;
use nodewright_scheduling::labels;
use serde_json::Value;

use crate::render::{
    CLUSTER, NAMESPACE, Rendered, notes, render, render_exactly, repo, try_render, typed,
};

fn pod_spec(rendered: &Rendered) -> PodSpec {
    let deployment: Deployment = rendered.typed("Deployment");
    deployment
        .spec
        .and_then(|s| s.template.spec)
        .expect("the Deployment has a pod spec")
}

fn controller(rendered: &Rendered) -> Container {
    let spec = pod_spec(rendered);
    assert_eq!(spec.containers.len(), 1, "one container");
    spec.containers[0].clone()
}

fn pod_labels(rendered: &Rendered) -> BTreeMap<String, String> {
    let deployment: Deployment = rendered.typed("Deployment");
    deployment
        .spec
        .and_then(|s| s.template.metadata)
        .and_then(|m| m.labels)
        .unwrap_or_default()
}

fn selects(selector: &BTreeMap<String, String>, labels: &BTreeMap<String, String>) -> bool {
    !selector.is_empty() && selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

#[test]
fn the_default_install_renders_every_object_as_its_kubernetes_type() {
    let rendered = render(&[]);
    assert_eq!(
        rendered.kinds(),
        [
            "ClusterRole",
            "ClusterRoleBinding",
            "Deployment",
            "PodDisruptionBudget",
            "Role",
            "RoleBinding",
            "Service",
            "ServiceAccount"
        ]
    );
    for object in &rendered.objects {
        match object["kind"].as_str().unwrap_or_default() {
            "ClusterRole" => drop(typed::<ClusterRole>(object)),
            "ClusterRoleBinding" => drop(typed::<ClusterRoleBinding>(object)),
            "Deployment" => drop(typed::<Deployment>(object)),
            "PodDisruptionBudget" => drop(typed::<PodDisruptionBudget>(object)),
            "Role" => drop(typed::<Role>(object)),
            "RoleBinding" => drop(typed::<RoleBinding>(object)),
            "Service" => drop(typed::<Service>(object)),
            "ServiceAccount" => drop(typed::<ServiceAccount>(object)),
            other => panic!("unexpected kind {other}"),
        }
        let metadata = &object["metadata"];
        let cluster_scoped = matches!(
            object["kind"].as_str(),
            Some("ClusterRole" | "ClusterRoleBinding")
        );
        if !cluster_scoped {
            assert_eq!(metadata["namespace"], NAMESPACE, "{metadata}");
        }
        assert_eq!(metadata["name"], "nodewright");
        assert_eq!(metadata["labels"]["app.kubernetes.io/name"], "nodewright");
        assert_eq!(metadata["labels"]["app.kubernetes.io/managed-by"], "Helm");
    }
    let deployment: Deployment = rendered.typed("Deployment");
    assert_eq!(deployment.spec.as_ref().and_then(|s| s.replicas), Some(2));
    let container = controller(&rendered);
    assert_eq!(
        container.image.as_deref(),
        Some("ghcr.io/nodewright/nodewright:0.1.0"),
        "the image tag defaults to the chart's appVersion"
    );
}

#[test]
fn without_a_cluster_name_the_chart_refuses_to_render() {
    let error = try_render(&[]).expect_err("no settings.clusterName");
    assert!(
        error.contains("settings.clusterName is required"),
        "{error}"
    );
}

#[test]
fn without_its_own_service_account_the_pod_uses_the_one_karpenters_guides_create() {
    let rendered = render(&["serviceAccount.create=false"]);
    assert_eq!(
        pod_spec(&rendered).service_account_name.as_deref(),
        Some("karpenter")
    );
    let named = render(&["serviceAccount.create=false", "serviceAccount.name=mine"]);
    assert_eq!(
        pod_spec(&named).service_account_name.as_deref(),
        Some("mine")
    );
}

/// The Dockerfile's ENTRYPOINT, e.g. `["nodewright", "controller"]`.
fn entrypoint() -> Vec<String> {
    let dockerfile = std::fs::read_to_string(repo("Dockerfile")).expect("Dockerfile");
    let line = dockerfile
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with("ENTRYPOINT"))
        .expect("the Dockerfile has an ENTRYPOINT");
    let json = line.trim_start().trim_start_matches("ENTRYPOINT").trim();
    serde_json::from_str(json).expect("ENTRYPOINT in exec form")
}

/// The controller's command line as the kubelet would start it: the image's ENTRYPOINT, the
/// container's args, and its environment turned into the flags clap reads them as.
fn controller_invocation(rendered: &Rendered) -> Vec<String> {
    let container = controller(rendered);
    assert!(
        container.command.is_none() && container.args.is_none(),
        "the chart runs the image's ENTRYPOINT as it is"
    );
    let command = Cli::command();
    let subcommand = command
        .find_subcommand("controller")
        .expect("a controller subcommand");
    let flags: BTreeMap<String, String> = command
        .get_arguments()
        .chain(subcommand.get_arguments())
        .filter_map(|arg| {
            Some((
                arg.get_env()?.to_string_lossy().into_owned(),
                arg.get_long()?.to_string(),
            ))
        })
        .collect();
    let mut argv = entrypoint();
    argv.extend(container.args.unwrap_or_default());
    for env in container.env.unwrap_or_default() {
        let value = match (&env.value, &env.value_from) {
            (Some(value), _) => value.clone(),
            (None, Some(from)) => match from.field_ref.as_ref().map(|f| f.field_path.as_str()) {
                Some("metadata.namespace") => NAMESPACE.to_string(),
                Some("metadata.name") => "nodewright-7d4f9c-abcde".to_string(),
                other => panic!("{} comes from {other:?}", env.name),
            },
            (None, None) => String::new(),
        };
        match flags.get(&env.name) {
            Some(long) => argv.push(format!("--{long}={value}")),
            // Read by leader::default_identity for the Lease holder's name.
            None if env.name == "POD_NAME" => {}
            None => panic!("the controller reads no {} variable", env.name),
        }
    }
    argv
}

#[test]
fn the_controller_accepts_the_settings_the_chart_gives_it() {
    let defaults = render(&[]);
    let cli = Cli::try_parse_from(controller_invocation(&defaults))
        .unwrap_or_else(|e| panic!("the controller refuses the chart's settings: {e}"));
    let Command::Controller(args) = cli.command else {
        panic!("the image runs `nodewright controller`")
    };
    args.settings.validate().expect("valid settings");
    assert_eq!(args.settings.cluster_name, CLUSTER);
    assert_eq!(args.system_namespace.as_deref(), Some(NAMESPACE));
    assert!(args.settings.leader_elect);
    assert!(
        !args.settings.feature_gates.drift,
        "off by default, as in v0.27-v0.31"
    );
    assert_eq!(args.settings.batch_idle_duration.as_secs(), 1);
    assert_eq!(args.settings.batch_max_duration.as_secs(), 10);
    assert_eq!(args.settings.cluster_endpoint, None);
    assert_eq!(args.settings.interruption_queue, None);
    assert_eq!(args.settings.rebalance_action, RebalanceAction::Event);

    let tuned = render(&[
        "settings.clusterEndpoint=https://ABCD.gr7.us-west-2.eks.amazonaws.com",
        "settings.region=us-west-2",
        "settings.interruptionQueue=my-cluster",
        "settings.rebalanceAction=drain",
        "settings.batchIdleDuration=2s",
        "settings.batchMaxDuration=30s",
        "settings.vmMemoryOverheadPercent=0.1",
        "settings.featureGates.drift=true",
        "metricsPort=9090",
        "logLevel=debug",
        "logFormat=text",
    ]);
    let cli = Cli::try_parse_from(controller_invocation(&tuned)).expect("parses");
    assert_eq!(cli.log_level, "debug");
    assert_eq!(cli.log_format, nodewright::telemetry::LogFormat::Text);
    let Command::Controller(args) = cli.command else {
        panic!("controller")
    };
    args.settings.validate().expect("valid settings");
    let settings = args.settings;
    assert_eq!(
        settings.cluster_endpoint.as_deref(),
        Some("https://ABCD.gr7.us-west-2.eks.amazonaws.com")
    );
    assert_eq!(settings.region.as_deref(), Some("us-west-2"));
    assert_eq!(settings.interruption_queue.as_deref(), Some("my-cluster"));
    assert_eq!(settings.rebalance_action, RebalanceAction::Drain);
    assert_eq!(settings.batch_idle_duration.as_secs(), 2);
    assert_eq!(settings.batch_max_duration.as_secs(), 30);
    assert_eq!(settings.vm_memory_overhead_percent, 0.1);
    assert!(settings.feature_gates.drift);
    assert_eq!(settings.metrics_port, 9090);
    let container = controller(&tuned);
    let metrics_port = container
        .ports
        .unwrap_or_default()
        .into_iter()
        .find(|p| p.name.as_deref() == Some("http-metrics"))
        .map(|p| p.container_port);
    assert_eq!(metrics_port, Some(9090), "the port follows METRICS_PORT");
}

#[test]
fn the_pod_runs_as_non_root_with_a_read_only_root_filesystem() {
    let rendered = render(&[]);
    let spec = pod_spec(&rendered);
    let pod = spec.security_context.expect("a pod security context");
    assert_eq!(pod.run_as_non_root, Some(true));
    assert!(pod.run_as_user.is_some_and(|uid| uid != 0));
    assert_eq!(
        pod.seccomp_profile.map(|p| p.type_).as_deref(),
        Some("RuntimeDefault")
    );
    let container = controller(&rendered);
    let security = container
        .security_context
        .expect("a container security context");
    assert_eq!(security.read_only_root_filesystem, Some(true));
    assert_eq!(security.allow_privilege_escalation, Some(false));
    assert_eq!(security.run_as_non_root, Some(true));
    assert_eq!(
        security.capabilities.and_then(|c| c.drop),
        Some(vec!["ALL".to_string()])
    );
    assert_ne!(security.privileged, Some(true));
    // The image's USER is the uid the pod asks for, so files it owns stay readable.
    let dockerfile = std::fs::read_to_string(repo("Dockerfile")).expect("Dockerfile");
    let user = dockerfile
        .lines()
        .rev()
        .find_map(|l| l.trim().strip_prefix("USER "))
        .expect("the image names its USER");
    assert_eq!(
        user.split(':').next(),
        pod.run_as_user.map(|u| u.to_string()).as_deref()
    );
}

#[test]
fn probes_and_ports_match_the_controllers_servers() {
    let rendered = render(&[]);
    let container = controller(&rendered);
    let ports: BTreeMap<String, i32> = container
        .ports
        .clone()
        .unwrap_or_default()
        .into_iter()
        .filter_map(|p| Some((p.name?, p.container_port)))
        .collect();
    let defaults = nodewright::settings::Settings::for_cluster("c");
    assert_eq!(
        ports.get("http-metrics"),
        Some(&i32::from(defaults.metrics_port))
    );
    assert_eq!(
        ports.get("http"),
        Some(&i32::from(defaults.health_probe_port))
    );
    for (probe, path) in [
        (container.liveness_probe, "/healthz"),
        (container.readiness_probe, "/readyz"),
    ] {
        let get = probe.and_then(|p| p.http_get).expect("an HTTP probe");
        assert_eq!(get.path.as_deref(), Some(path));
        assert_eq!(get.port, IntOrString::String("http".into()));
    }
    let service: Service = rendered.typed("Service");
    let spec = service.spec.expect("a service spec");
    let port = &spec.ports.expect("ports")[0];
    assert_eq!(port.name.as_deref(), Some("http-metrics"));
    assert_eq!(
        port.target_port,
        Some(IntOrString::String("http-metrics".into()))
    );
    assert!(selects(
        &spec.selector.unwrap_or_default(),
        &pod_labels(&rendered)
    ));
}

#[test]
fn the_controller_stays_off_the_nodes_it_manages_and_spreads_its_replicas() {
    let rendered = render(&[]);
    let spec = pod_spec(&rendered);
    let terms = spec
        .affinity
        .and_then(|a| a.node_affinity)
        .and_then(|n| n.required_during_scheduling_ignored_during_execution)
        .map(|r| r.node_selector_terms)
        .unwrap_or_default();
    assert!(
        !terms.is_empty()
            && terms.iter().all(|term| {
                term.match_expressions
                    .iter()
                    .flatten()
                    .any(|e| e.key == labels::PROVISIONER_NAME && e.operator == "DoesNotExist")
            }),
        "every node selector term excludes nodes nodewright launched: {terms:?}"
    );
    let pod_labels = pod_labels(&rendered);
    let spread = spec.topology_spread_constraints.unwrap_or_default();
    let keys: Vec<&str> = spread.iter().map(|c| c.topology_key.as_str()).collect();
    assert_eq!(
        keys,
        ["topology.kubernetes.io/zone", "kubernetes.io/hostname"]
    );
    for constraint in &spread {
        let selector = constraint
            .label_selector
            .as_ref()
            .and_then(|s| s.match_labels.clone())
            .unwrap_or_default();
        assert!(
            selects(&selector, &pod_labels),
            "the spread counts this release's pods: {selector:?}"
        );
    }
    let tolerations = spec.tolerations.unwrap_or_default();
    assert!(
        tolerations
            .iter()
            .any(|t| t.key.as_deref() == Some("CriticalAddonsOnly")
                && t.operator.as_deref() == Some("Exists"))
    );
    assert_eq!(
        spec.priority_class_name.as_deref(),
        Some("system-cluster-critical")
    );
    let pdb: PodDisruptionBudget = rendered.typed("PodDisruptionBudget");
    let pdb = pdb.spec.expect("a PDB spec");
    assert_eq!(pdb.max_unavailable, Some(IntOrString::Int(1)));
    assert!(selects(
        &pdb.selector
            .and_then(|s| s.match_labels)
            .unwrap_or_default(),
        &pod_labels
    ));
}

#[test]
fn resources_request_a_little_and_limit_memory_only() {
    let rendered = render(&[]);
    let resources = controller(&rendered).resources.expect("resources");
    let requests = resources.requests.unwrap_or_default();
    let limits = resources.limits.unwrap_or_default();
    assert_eq!(requests.get("cpu").map(|q| q.0.as_str()), Some("100m"));
    assert_eq!(requests.get("memory").map(|q| q.0.as_str()), Some("128Mi"));
    assert_eq!(limits.get("memory").map(|q| q.0.as_str()), Some("256Mi"));
    assert!(
        !limits.contains_key("cpu"),
        "a CPU limit would throttle decisions"
    );
}

#[test]
fn the_service_monitor_scrapes_the_metrics_port() {
    let off = render(&[]);
    assert!(off.all_of("ServiceMonitor").is_empty(), "off by default");
    let rendered = render(&[
        "serviceMonitor.enabled=true",
        "serviceMonitor.additionalLabels.release=kube-prometheus-stack",
        "serviceMonitor.endpointConfig.interval=15s",
    ]);
    let monitor: &Value = rendered.one("ServiceMonitor");
    assert_eq!(monitor["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(monitor["metadata"]["namespace"], NAMESPACE);
    assert_eq!(
        monitor["metadata"]["labels"]["release"],
        "kube-prometheus-stack"
    );
    assert_eq!(
        monitor["spec"]["namespaceSelector"]["matchNames"][0],
        NAMESPACE
    );
    let service: Service = rendered.typed("Service");
    let service_labels = service.metadata.labels.clone().unwrap_or_default();
    let selector: BTreeMap<String, String> =
        serde_json::from_value(monitor["spec"]["selector"]["matchLabels"].clone())
            .expect("matchLabels");
    assert!(
        selects(&selector, &service_labels),
        "it selects the Service"
    );
    let endpoints = monitor["spec"]["endpoints"].as_array().expect("endpoints");
    assert_eq!(endpoints.len(), 1);
    let port_name = service.spec.and_then(|s| s.ports).expect("ports")[0]
        .name
        .clone();
    assert_eq!(endpoints[0]["port"].as_str(), port_name.as_deref());
    assert_eq!(endpoints[0]["path"], "/metrics");
    assert_eq!(endpoints[0]["interval"], "15s");
}

#[test]
fn irsa_annotation_single_replica_and_pinned_image_toggles() {
    let role = "arn:aws:iam::111122223333:role/NodewrightControllerRole-my-cluster";
    let rendered = render(&[
        &format!("serviceAccount.annotations.eks\\.amazonaws\\.com/role-arn={role}"),
        "replicas=1",
        "image.digest=sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
    ]);
    let account: ServiceAccount = rendered.typed("ServiceAccount");
    assert_eq!(
        account
            .metadata
            .annotations
            .unwrap_or_default()
            .get("eks.amazonaws.com/role-arn")
            .map(String::as_str),
        Some(role)
    );
    let deployment: Deployment = rendered.typed("Deployment");
    assert_eq!(deployment.spec.as_ref().and_then(|s| s.replicas), Some(1));
    assert_eq!(
        controller(&rendered).image.as_deref(),
        Some(
            "ghcr.io/nodewright/nodewright@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
        )
    );
    let existing = render(&[
        "serviceAccount.create=false",
        "serviceAccount.name=existing",
    ]);
    assert!(existing.all_of("ServiceAccount").is_empty());
    assert_eq!(
        pod_spec(&existing).service_account_name.as_deref(),
        Some("existing")
    );
    let without_pdb = render(&["podDisruptionBudget.enabled=false"]);
    assert!(without_pdb.all_of("PodDisruptionBudget").is_empty());
}

#[test]
fn the_notes_warn_about_what_new_nodes_would_miss() {
    let bare = notes(&[&format!("settings.clusterName={CLUSTER}")]);
    assert!(bare.contains("settings.clusterEndpoint is empty"), "{bare}");
    assert!(bare.contains("eks.amazonaws.com/role-arn"), "{bare}");
    assert!(
        bare.contains(&format!("kubectl logs -n {NAMESPACE}")),
        "{bare}"
    );
    let configured = notes(&[
        &format!("settings.clusterName={CLUSTER}"),
        "settings.clusterEndpoint=https://ABCD.gr7.us-west-2.eks.amazonaws.com",
        "serviceAccount.annotations.eks\\.amazonaws\\.com/role-arn=arn:aws:iam::1:role/r",
    ]);
    assert!(!configured.contains("WARNING"), "{configured}");
}

#[test]
fn the_charts_crds_are_the_generated_crds() {
    let files = nodewright::apis::crds::crd_files().expect("the CRDs serialize");
    let dir = repo("charts/nodewright/crds");
    const HOW: &str = "charts/nodewright/crds/ is stale: run `UPDATE_CRDS=1 cargo test --test chart the_charts_crds` (and the same for `--test apis`), then commit";
    if std::env::var_os("UPDATE_CRDS").is_some() {
        std::fs::create_dir_all(&dir).expect("create the chart's crds/");
        for entry in std::fs::read_dir(&dir).expect("list").flatten() {
            std::fs::remove_file(entry.path()).expect("remove a stale CRD");
        }
        for (name, yaml) in &files {
            std::fs::write(dir.join(name), yaml).expect("write a CRD");
        }
    }
    let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
        .expect(HOW)
        .flatten()
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .collect();
    on_disk.sort();
    let expected: Vec<String> = files.iter().map(|(name, _)| name.clone()).collect();
    assert_eq!(on_disk, expected, "{HOW}");
    for (name, yaml) in &files {
        let in_chart = std::fs::read_to_string(dir.join(name)).expect(HOW);
        assert!(
            in_chart == *yaml,
            "{HOW} ({name} differs from the generated CRD)"
        );
        let top_level = std::fs::read_to_string(repo("crds").join(name))
            .expect("the top-level crds/ holds the same files");
        assert!(
            in_chart == top_level,
            "charts/nodewright/crds/{name} differs from crds/{name}"
        );
    }
}

/// The `--set` arguments of the README's `helm upgrade --install` command, with the shell's
/// quoting removed and its variables given example values.
fn readme_install_sets() -> Vec<String> {
    let readme = std::fs::read_to_string(repo("README.md")).expect("README.md");
    let start = readme
        .find("helm upgrade --install nodewright charts/nodewright")
        .expect("the README installs the chart");
    let command: String = readme[start..]
        .lines()
        .take_while(|line| !line.trim().is_empty() && !line.starts_with("```"))
        .map(|line| line.trim_end_matches('\\'))
        .collect::<Vec<_>>()
        .join(" ");
    let mut words = command.split_whitespace();
    let mut sets = Vec::new();
    while let Some(word) = words.next() {
        if word == "--set" {
            let mut set = words.next().expect("--set has a value").replace('"', "");
            for (name, value) in [
                ("${CLUSTER_NAME}", CLUSTER),
                (
                    "${CLUSTER_ENDPOINT}",
                    "https://ABCD.gr7.us-west-2.eks.amazonaws.com",
                ),
                ("${AWS_PARTITION}", "aws"),
                ("${AWS_ACCOUNT_ID}", "111122223333"),
                (
                    "${IMAGE_REPO}",
                    "111122223333.dkr.ecr.us-west-2.amazonaws.com/nodewright",
                ),
            ] {
                set = set.replace(name, value);
            }
            assert!(!set.contains('$'), "an unknown variable in {set}");
            sets.push(set);
        }
    }
    sets
}

#[test]
fn the_readmes_install_command_installs_a_working_controller() {
    let sets = readme_install_sets();
    let sets: Vec<&str> = sets.iter().map(String::as_str).collect();
    let rendered = render(&sets);
    let account: ServiceAccount = rendered.typed("ServiceAccount");
    assert_eq!(
        account
            .metadata
            .annotations
            .unwrap_or_default()
            .get("eks.amazonaws.com/role-arn")
            .map(String::as_str),
        Some("arn:aws:iam::111122223333:role/my-cluster-nodewright"),
        "IRSA: the role eksctl creates for nodewright/nodewright"
    );
    assert_eq!(account.metadata.name.as_deref(), Some("nodewright"));
    assert_eq!(
        controller(&rendered).image.as_deref(),
        Some("111122223333.dkr.ecr.us-west-2.amazonaws.com/nodewright:0.1.0")
    );
    let cli = Cli::try_parse_from(controller_invocation(&rendered)).expect("parses");
    let Command::Controller(args) = cli.command else {
        panic!("controller")
    };
    args.settings.validate().expect("valid settings");
    assert_eq!(args.settings.cluster_name, CLUSTER);
    assert!(args.settings.cluster_endpoint.is_some());
    assert_eq!(args.settings.interruption_queue.as_deref(), Some(CLUSTER));
}

/// The controller's arguments and log format as the rendered chart starts it.
fn started_with(
    rendered: &Rendered,
) -> (
    nodewright::cli::ControllerArgs,
    nodewright::telemetry::LogFormat,
) {
    let cli = Cli::try_parse_from(controller_invocation(rendered))
        .unwrap_or_else(|e| panic!("the controller refuses the chart's settings: {e}"));
    let log_format = cli.log_format;
    let Command::Controller(args) = cli.command else {
        panic!("the image runs `nodewright controller`")
    };
    args.settings.validate().expect("valid settings");
    (*args, log_format)
}

#[test]
fn the_seeds_install_line_renders_a_controller_for_its_cluster() {
    // Karpenter v0.5's guide: helm upgrade --install karpenter ... --set serviceAccount.create=false
    // --set controller.clusterName=${CLUSTER_NAME} --set controller.clusterEndpoint=$(aws eks ...)
    let endpoint = "https://ABCD1234.gr7.us-west-2.eks.amazonaws.com";
    let rendered = render_exactly(&[
        "serviceAccount.create=false",
        &format!("controller.clusterName={CLUSTER}"),
        &format!("controller.clusterEndpoint={endpoint}"),
    ]);
    let (args, _) = started_with(&rendered);
    assert_eq!(args.settings.cluster_name, CLUSTER);
    assert_eq!(args.settings.cluster_endpoint.as_deref(), Some(endpoint));
    assert!(
        rendered.all_of("ServiceAccount").is_empty(),
        "serviceAccount.create=false creates none"
    );
}

#[test]
fn the_v031_guides_install_line_renders_a_controller_with_its_settings() {
    let rendered = render_exactly(&[
        "serviceAccount.annotations.eks\\.amazonaws\\.com/role-arn=arn:aws:iam::111122223333:role/KarpenterControllerRole-my-cluster",
        &format!("settings.aws.clusterName={CLUSTER}"),
        &format!("settings.aws.defaultInstanceProfile=KarpenterNodeInstanceProfile-{CLUSTER}"),
        &format!("settings.aws.interruptionQueueName={CLUSTER}"),
        "controller.resources.requests.cpu=1",
        "controller.resources.requests.memory=1Gi",
        "controller.resources.limits.cpu=1",
        "controller.resources.limits.memory=1Gi",
    ]);
    let (args, _) = started_with(&rendered);
    assert_eq!(args.settings.cluster_name, CLUSTER);
    assert_eq!(
        args.settings.default_instance_profile.as_deref(),
        Some("KarpenterNodeInstanceProfile-my-cluster")
    );
    assert_eq!(args.settings.interruption_queue.as_deref(), Some(CLUSTER));
    let resources = controller(&rendered).resources.unwrap_or_default();
    let cpu = |list: Option<
        BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>,
    >| { list.unwrap_or_default().get("cpu").map(|q| q.0.clone()) };
    assert_eq!(cpu(resources.requests), Some("1".to_string()));
    assert_eq!(cpu(resources.limits), Some("1".to_string()));
    let account: ServiceAccount = rendered.typed("ServiceAccount");
    assert!(
        account
            .metadata
            .annotations
            .unwrap_or_default()
            .contains_key("eks.amazonaws.com/role-arn")
    );
}

#[test]
fn todays_names_win_over_v031s_which_win_over_v05s() {
    let all = render_exactly(&[
        "settings.clusterName=today",
        "settings.aws.clusterName=v031",
        "controller.clusterName=v05",
    ]);
    assert_eq!(started_with(&all).0.settings.cluster_name, "today");
    let older = render_exactly(&[
        "settings.aws.clusterName=v031",
        "controller.clusterName=v05",
    ]);
    assert_eq!(started_with(&older).0.settings.cluster_name, "v031");
    let v031 = render(&[
        "settings.featureGates.driftEnabled=false",
        "logEncoding=console",
    ]);
    let (args, log_format) = started_with(&v031);
    assert!(!args.settings.feature_gates.drift);
    assert_eq!(log_format, nodewright::telemetry::LogFormat::Text);
}
