//! The chart's RBAC: no wildcards, bound to the pod's ServiceAccount, and exactly what the code
//! calls — checked against the kinds the source touches here, and against every request the
//! controller makes in an end-to-end run in `e2e.rs`.

use std::collections::BTreeSet;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding};
use kube::Resource;

use crate::render::{NAMESPACE, Rendered, render, repo};

/// One API request as RBAC sees it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Request {
    pub verb: String,
    pub group: String,
    pub resource: String,
    pub subresource: Option<String>,
    pub namespace: Option<String>,
    pub name: Option<String>,
}

/// The chart's grants to its ServiceAccount: the ClusterRole everywhere, the Role in the
/// release namespace.
pub struct Grants {
    cluster: Vec<PolicyRule>,
    namespaced: Vec<PolicyRule>,
    namespace: String,
}

impl Grants {
    pub fn of(rendered: &Rendered) -> Grants {
        let cluster_role: ClusterRole = rendered.typed("ClusterRole");
        let role: Role = rendered.typed("Role");
        Grants {
            cluster: cluster_role.rules.unwrap_or_default(),
            namespaced: role.rules.unwrap_or_default(),
            namespace: role.metadata.namespace.unwrap_or_default(),
        }
    }

    /// Kubernetes' RBAC rule matching, without wildcards (the chart has none).
    pub fn allows(&self, request: &Request) -> bool {
        let in_own_namespace = request.namespace.as_deref() == Some(self.namespace.as_str());
        self.cluster.iter().any(|rule| matches(rule, request))
            || (in_own_namespace && self.namespaced.iter().any(|rule| matches(rule, request)))
    }

    /// Every (group, resource[/subresource], verb, where) the rules grant.
    pub fn expanded(&self) -> BTreeSet<(String, String, String, String)> {
        let mut grants = BTreeSet::new();
        for (rules, scope) in [
            (&self.cluster, "cluster".to_string()),
            (&self.namespaced, format!("namespace {}", self.namespace)),
        ] {
            for rule in rules {
                let names = rule.resource_names.clone().unwrap_or_default();
                let scope = match names.is_empty() {
                    true => scope.clone(),
                    false => format!("{scope} names {}", names.join(",")),
                };
                for group in rule.api_groups.iter().flatten() {
                    for resource in rule.resources.iter().flatten() {
                        for verb in &rule.verbs {
                            grants.insert((
                                group.clone(),
                                resource.clone(),
                                verb.clone(),
                                scope.clone(),
                            ));
                        }
                    }
                }
            }
        }
        grants
    }
}

fn matches(rule: &PolicyRule, request: &Request) -> bool {
    let resource = match &request.subresource {
        Some(sub) => format!("{}/{sub}", request.resource),
        None => request.resource.clone(),
    };
    let names = rule.resource_names.clone().unwrap_or_default();
    rule.api_groups
        .iter()
        .flatten()
        .any(|g| *g == request.group)
        && rule.resources.iter().flatten().any(|r| *r == resource)
        && rule.verbs.contains(&request.verb)
        // A rule limited to names never matches a request without one (create, list, watch).
        && (names.is_empty() || request.name.as_ref().is_some_and(|n| names.contains(n)))
}

fn grant(group: &str, resource: &str, verb: &str, scope: &str) -> (String, String, String, String) {
    (group.into(), resource.into(), verb.into(), scope.into())
}

#[test]
fn rbac_grants_exactly_the_calls_the_code_makes() {
    let grants = Grants::of(&render(&[]));
    let lease_scope = format!("namespace {NAMESPACE}");
    let named_lease = format!(
        "namespace {NAMESPACE} names {}",
        nodewright::leader::DEFAULT_LEASE_NAME
    );
    let expected: BTreeSet<_> = [
        // src/state/watch.rs: spawn_watchers lists and watches these kinds cluster-wide.
        grant("", "pods", "list", "cluster"),
        grant("", "pods", "watch", "cluster"),
        grant("", "nodes", "list", "cluster"),
        grant("", "nodes", "watch", "cluster"),
        grant("karpenter.sh", "machines", "list", "cluster"),
        grant("karpenter.sh", "machines", "watch", "cluster"),
        grant("karpenter.sh", "provisioners", "list", "cluster"),
        grant("karpenter.sh", "provisioners", "watch", "cluster"),
        grant("karpenter.k8s.aws", "awsnodetemplates", "list", "cluster"),
        grant("karpenter.k8s.aws", "awsnodetemplates", "watch", "cluster"),
        grant("apps", "daemonsets", "list", "cluster"),
        grant("apps", "daemonsets", "watch", "cluster"),
        grant("policy", "poddisruptionbudgets", "list", "cluster"),
        grant("policy", "poddisruptionbudgets", "watch", "cluster"),
        // lifecycle/run.rs (labels, taints, finalizer), termination.rs (cordon, finalizer),
        // emptiness.rs (timestamp, delete).
        grant("", "nodes", "patch", "cluster"),
        grant("", "nodes", "delete", "cluster"),
        // write.rs: a fresh read after a 409; disruption/act.rs: the disruption taint is
        // replaced at the version read.
        grant("", "nodes", "get", "cluster"),
        grant("", "nodes", "update", "cluster"),
        grant("karpenter.sh", "machines", "get", "cluster"),
        // termination.rs: drains through the Eviction API.
        grant("", "pods/eviction", "create", "cluster"),
        // events.rs: Events in the involved object's namespace.
        grant("", "events", "create", "cluster"),
        // provisioning/run.rs creates; lifecycle/run.rs labels, finalizes, deletes, reports.
        grant("karpenter.sh", "machines", "create", "cluster"),
        grant("karpenter.sh", "machines", "patch", "cluster"),
        grant("karpenter.sh", "machines", "delete", "cluster"),
        grant("karpenter.sh", "machines/status", "patch", "cluster"),
        // counter/run.rs: status.resources.
        grant("karpenter.sh", "provisioners/status", "patch", "cluster"),
        // node_template.rs: status.subnets, securityGroups, amis.
        grant(
            "karpenter.k8s.aws",
            "awsnodetemplates/status",
            "patch",
            "cluster",
        ),
        // leader.rs: get_opt, create, replace on the one Lease.
        grant("coordination.k8s.io", "leases", "create", &lease_scope),
        grant("coordination.k8s.io", "leases", "get", &named_lease),
        grant("coordination.k8s.io", "leases", "update", &named_lease),
        // global_settings.rs: reads, then watches, the settings ConfigMap in its namespace.
        grant("", "configmaps", "get", &lease_scope),
        grant("", "configmaps", "list", &lease_scope),
        grant("", "configmaps", "watch", &lease_scope),
    ]
    .into_iter()
    .collect();
    let granted = grants.expanded();
    let extra: Vec<_> = granted.difference(&expected).collect();
    let missing: Vec<_> = expected.difference(&granted).collect();
    assert!(
        extra.is_empty() && missing.is_empty(),
        "RBAC differs from the code's calls: granted but not called {extra:?}; called but not granted {missing:?}"
    );
}

#[test]
fn rbac_has_no_wildcards_and_is_bound_to_the_pods_service_account() {
    for sets in [
        &[][..],
        &["serviceAccount.name=controller"],
        &[
            "serviceAccount.create=false",
            "serviceAccount.name=existing",
        ],
    ] {
        let rendered = render(sets);
        for kind in ["ClusterRole", "Role"] {
            let rules = &rendered.one(kind)["rules"];
            for rule in rules.as_array().expect("rules") {
                for field in ["apiGroups", "resources", "verbs", "resourceNames"] {
                    for value in rule[field].as_array().into_iter().flatten() {
                        let text = value.as_str().unwrap_or_default();
                        assert!(!text.contains('*'), "{kind} {field} has a wildcard: {rule}");
                    }
                }
                assert!(rule.get("nonResourceURLs").is_none(), "{kind}: {rule}");
            }
        }
        let deployment: Deployment = rendered.typed("Deployment");
        let pod_account = deployment
            .spec
            .and_then(|s| s.template.spec)
            .and_then(|s| s.service_account_name)
            .expect("the pod names its ServiceAccount");
        let cluster_role: ClusterRole = rendered.typed("ClusterRole");
        let role: Role = rendered.typed("Role");
        let cluster_binding: ClusterRoleBinding = rendered.typed("ClusterRoleBinding");
        let binding: RoleBinding = rendered.typed("RoleBinding");
        assert_eq!(cluster_binding.role_ref.kind, "ClusterRole");
        assert_eq!(
            Some(&cluster_binding.role_ref.name),
            cluster_role.metadata.name.as_ref()
        );
        assert_eq!(binding.role_ref.kind, "Role");
        assert_eq!(Some(&binding.role_ref.name), role.metadata.name.as_ref());
        assert_eq!(binding.metadata.namespace.as_deref(), Some(NAMESPACE));
        assert_eq!(role.metadata.namespace.as_deref(), Some(NAMESPACE));
        for subjects in [cluster_binding.subjects, binding.subjects] {
            let subjects = subjects.unwrap_or_default();
            assert_eq!(subjects.len(), 1, "{subjects:?}");
            assert_eq!(subjects[0].kind, "ServiceAccount");
            assert_eq!(subjects[0].name, pod_account, "{sets:?}");
            assert_eq!(subjects[0].namespace.as_deref(), Some(NAMESPACE));
        }
    }
}

#[test]
fn the_lease_is_granted_only_in_the_release_namespace() {
    let grants = Grants::of(&render(&[]));
    let lease = |verb: &str, namespace: &str, name: Option<&str>| Request {
        verb: verb.into(),
        group: "coordination.k8s.io".into(),
        resource: "leases".into(),
        subresource: None,
        namespace: Some(namespace.into()),
        name: name.map(String::from),
    };
    let ours = Some(nodewright::leader::DEFAULT_LEASE_NAME);
    assert!(grants.allows(&lease("create", NAMESPACE, None)));
    assert!(grants.allows(&lease("update", NAMESPACE, ours)));
    assert!(!grants.allows(&lease("update", "kube-system", ours)));
    assert!(!grants.allows(&lease("update", NAMESPACE, Some("someone-elses-lease"))));
    assert!(!grants.allows(&lease("delete", NAMESPACE, ours)));
}

/// (group, plural) of the kinds named here, from their Rust types.
fn kind_table() -> Vec<(&'static str, String, String)> {
    fn entry<K: Resource<DynamicType = ()>>(name: &'static str) -> (&'static str, String, String) {
        (
            name,
            K::group(&()).into_owned(),
            K::plural(&()).into_owned(),
        )
    }
    use k8s_openapi::api::apps::v1::DaemonSet;
    use k8s_openapi::api::coordination::v1::Lease;
    use k8s_openapi::api::core::v1::{ConfigMap, Event, Node, Pod};
    use k8s_openapi::api::policy::v1::PodDisruptionBudget;
    use nodewright::apis::{AwsNodeTemplate, Machine, Provisioner};
    vec![
        entry::<Pod>("Pod"),
        entry::<Node>("Node"),
        entry::<Event>("Event"),
        entry::<DaemonSet>("DaemonSet"),
        entry::<PodDisruptionBudget>("PodDisruptionBudget"),
        entry::<Lease>("Lease"),
        entry::<ConfigMap>("ConfigMap"),
        entry::<Machine>("Machine"),
        entry::<Provisioner>("Provisioner"),
        entry::<AwsNodeTemplate>("AwsNodeTemplate"),
    ]
}

/// Kinds named in `Api<K>`, `Api::<K>` and `spawn::<K>` in the controller's non-test source.
fn kinds_used_by_the_controller() -> BTreeSet<String> {
    let mut files = Vec::new();
    collect_rust_files(&repo("src/controllers"), &mut files);
    collect_rust_files(&repo("src/state"), &mut files);
    files.push(repo("src/leader.rs"));
    files.push(repo("src/cli/controller.rs"));
    let mut kinds = BTreeSet::new();
    for file in files {
        let text = std::fs::read_to_string(&file).expect("source is readable");
        // Unit tests in the file build their own clients.
        let code = text.split("#[cfg(test)]").next().unwrap_or_default();
        for marker in ["Api<", "Api::<", "spawn::<"] {
            for (at, _) in code.match_indices(marker) {
                let rest = &code[at + marker.len()..];
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                // A type parameter (`Api<K>`) is not a kind.
                if name.len() > 1 {
                    kinds.insert(name);
                }
            }
        }
    }
    kinds
}

fn collect_rust_files(dir: &std::path::Path, into: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("source directory").flatten() {
        let path = entry.path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if path.is_dir() {
            collect_rust_files(&path, into);
        } else if name.ends_with(".rs") && name != "tests.rs" && !name.ends_with("_tests.rs") {
            into.push(path);
        }
    }
}

#[test]
fn every_kind_the_controller_code_touches_has_rbac_and_no_other_kind_does() {
    let used = kinds_used_by_the_controller();
    let table = kind_table();
    let unknown: Vec<&String> = used
        .iter()
        .filter(|kind| !table.iter().any(|(name, _, _)| name == kind))
        .collect();
    assert!(
        unknown.is_empty(),
        "the controller now calls the API for {unknown:?}: add the kind to kind_table() and the chart's RBAC"
    );
    let used_resources: BTreeSet<(String, String)> = table
        .iter()
        .filter(|(name, _, _)| used.contains(*name))
        .map(|(_, group, plural)| (group.clone(), plural.clone()))
        .collect();
    let granted_resources: BTreeSet<(String, String)> = Grants::of(&render(&[]))
        .expanded()
        .into_iter()
        .map(|(group, resource, _, _)| {
            let base = resource.split('/').next().unwrap_or_default().to_string();
            (group, base)
        })
        .collect();
    assert_eq!(
        used_resources, granted_resources,
        "the kinds in the code's Api<...> calls and in the chart's RBAC differ"
    );
}
