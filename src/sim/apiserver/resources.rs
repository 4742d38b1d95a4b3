//! The resources the simulated API server serves: built-in kinds and this project's CRDs, with the
//! facts discovery, routing and the store need (scope, names, subresources, patch strategies).

use std::collections::BTreeSet;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;

/// One served resource, e.g. core/v1 `pods` or karpenter.sh/v1alpha5 `provisioners`.
#[derive(Debug, Clone, PartialEq)]
pub struct ResourceType {
    /// `""` for the core group.
    pub group: String,
    pub version: String,
    pub kind: String,
    pub plural: String,
    pub singular: String,
    pub namespaced: bool,
    pub short_names: Vec<String>,
    pub categories: Vec<String>,
    /// `/status` exists, and main-resource writes ignore `.status`.
    pub status: bool,
    /// `/scale` exists (autoscaling/v1 Scale over `.spec.replicas`).
    pub scale: bool,
    /// Built-in kinds accept strategic merge patches; custom resources do not (as upstream).
    pub strategic_merge: bool,
    /// CRD `additionalPrinterColumns`: (header, JSON path, type).
    pub printer_columns: Vec<PrinterColumn>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PrinterColumn {
    pub name: String,
    pub json_path: String,
    pub type_: String,
    pub priority: i32,
}

/// Where an object of one resource is stored: its group and plural name.
pub type ResourceKey = (String, String);

impl ResourceType {
    fn builtin(group: &str, version: &str, kind: &str, plural: &str, namespaced: bool) -> Self {
        Self {
            group: group.into(),
            version: version.into(),
            kind: kind.into(),
            plural: plural.into(),
            singular: kind.to_lowercase(),
            namespaced,
            short_names: Vec::new(),
            categories: Vec::new(),
            status: false,
            scale: false,
            strategic_merge: true,
            printer_columns: Vec::new(),
        }
    }

    fn short(mut self, names: &[&str]) -> Self {
        self.short_names = names.iter().map(|name| name.to_string()).collect();
        self
    }

    fn with_status(mut self) -> Self {
        self.status = true;
        self
    }

    fn with_scale(mut self) -> Self {
        self.scale = true;
        self
    }

    fn in_all(mut self) -> Self {
        self.categories = vec!["all".into()];
        self
    }

    /// `v1` or `apps/v1`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    pub fn key(&self) -> ResourceKey {
        (self.group.clone(), self.plural.clone())
    }

    pub fn is(&self, group: &str, plural: &str) -> bool {
        self.group == group && self.plural == plural
    }

    /// A custom resource served from a CRD (one per served version).
    pub fn from_crd(crd: &CustomResourceDefinition) -> Vec<Self> {
        let spec = &crd.spec;
        spec.versions
            .iter()
            .filter(|version| version.served)
            .map(|version| Self {
                group: spec.group.clone(),
                version: version.name.clone(),
                kind: spec.names.kind.clone(),
                plural: spec.names.plural.clone(),
                singular: spec
                    .names
                    .singular
                    .clone()
                    .unwrap_or_else(|| spec.names.kind.to_lowercase()),
                namespaced: spec.scope == "Namespaced",
                short_names: spec.names.short_names.clone().unwrap_or_default(),
                categories: spec.names.categories.clone().unwrap_or_default(),
                status: version
                    .subresources
                    .as_ref()
                    .is_some_and(|sub| sub.status.is_some()),
                scale: version
                    .subresources
                    .as_ref()
                    .is_some_and(|sub| sub.scale.is_some()),
                strategic_merge: false,
                printer_columns: version
                    .additional_printer_columns
                    .iter()
                    .flatten()
                    .map(|column| PrinterColumn {
                        name: column.name.clone(),
                        json_path: column.json_path.clone(),
                        type_: column.type_.clone(),
                        priority: column.priority.unwrap_or(0),
                    })
                    .collect(),
            })
            .collect()
    }
}

/// Every resource the server serves.
#[derive(Debug, Clone)]
pub struct Registry {
    types: Vec<ResourceType>,
}

impl Registry {
    /// The built-in kinds plus the given CRDs (which are also stored as
    /// `customresourcedefinitions` objects by the server).
    pub fn new(crds: &[CustomResourceDefinition]) -> Self {
        let mut types = builtins();
        types.extend(crds.iter().flat_map(ResourceType::from_crd));
        Self { types }
    }

    pub fn find(&self, group: &str, version: &str, plural: &str) -> Option<&ResourceType> {
        self.types
            .iter()
            .find(|rt| rt.group == group && rt.version == version && rt.plural == plural)
    }

    /// The resource of a group and plural in whichever version is served.
    pub fn by_key(&self, group: &str, plural: &str) -> Option<&ResourceType> {
        self.types.iter().find(|rt| rt.is(group, plural))
    }

    /// The resource an `apiVersion` and `kind` name (for owner references).
    pub fn by_kind(&self, api_version: &str, kind: &str) -> Option<&ResourceType> {
        self.types
            .iter()
            .find(|rt| rt.api_version() == api_version && rt.kind == kind)
    }

    pub fn all(&self) -> &[ResourceType] {
        &self.types
    }

    /// Whether a group/version is served at all (for discovery 404s).
    pub fn serves(&self, group: &str, version: &str) -> bool {
        self.types
            .iter()
            .any(|rt| rt.group == group && rt.version == version)
    }

    /// Named groups (not core) with their versions, in first-seen order.
    pub fn groups(&self) -> Vec<(String, Vec<String>)> {
        let mut groups: Vec<(String, Vec<String>)> = Vec::new();
        for rt in self.types.iter().filter(|rt| !rt.group.is_empty()) {
            match groups.iter_mut().find(|(group, _)| *group == rt.group) {
                Some((_, versions)) => {
                    if !versions.contains(&rt.version) {
                        versions.push(rt.version.clone());
                    }
                }
                None => groups.push((rt.group.clone(), vec![rt.version.clone()])),
            }
        }
        groups
    }

    /// Resources of one group/version.
    pub fn in_group_version<'a>(
        &'a self,
        group: &'a str,
        version: &'a str,
    ) -> impl Iterator<Item = &'a ResourceType> + 'a {
        self.types
            .iter()
            .filter(move |rt| rt.group == group && rt.version == version)
    }

    /// Storage keys of every namespaced resource (for namespace deletion).
    pub fn namespaced_keys(&self) -> BTreeSet<ResourceKey> {
        self.types
            .iter()
            .filter(|rt| rt.namespaced)
            .map(ResourceType::key)
            .collect()
    }
}

fn builtins() -> Vec<ResourceType> {
    use ResourceType as R;
    vec![
        R::builtin("", "v1", "Pod", "pods", true)
            .short(&["po"])
            .with_status()
            .in_all(),
        R::builtin("", "v1", "Node", "nodes", false)
            .short(&["no"])
            .with_status(),
        R::builtin("", "v1", "Namespace", "namespaces", false)
            .short(&["ns"])
            .with_status(),
        R::builtin("", "v1", "Event", "events", true).short(&["ev"]),
        R::builtin("", "v1", "ConfigMap", "configmaps", true).short(&["cm"]),
        R::builtin("", "v1", "Service", "services", true)
            .short(&["svc"])
            .with_status()
            .in_all(),
        R::builtin("", "v1", "ServiceAccount", "serviceaccounts", true).short(&["sa"]),
        R::builtin("apps", "v1", "Deployment", "deployments", true)
            .short(&["deploy"])
            .with_status()
            .with_scale()
            .in_all(),
        R::builtin("apps", "v1", "ReplicaSet", "replicasets", true)
            .short(&["rs"])
            .with_status()
            .with_scale()
            .in_all(),
        R::builtin("apps", "v1", "DaemonSet", "daemonsets", true)
            .short(&["ds"])
            .with_status()
            .in_all(),
        R::builtin("apps", "v1", "StatefulSet", "statefulsets", true)
            .short(&["sts"])
            .with_status()
            .with_scale()
            .in_all(),
        R::builtin(
            "policy",
            "v1",
            "PodDisruptionBudget",
            "poddisruptionbudgets",
            true,
        )
        .short(&["pdb"])
        .with_status(),
        R::builtin("coordination.k8s.io", "v1", "Lease", "leases", true),
        R::builtin("events.k8s.io", "v1", "Event", "events", true).short(&["ev"]),
        R::builtin(
            "apiextensions.k8s.io",
            "v1",
            "CustomResourceDefinition",
            "customresourcedefinitions",
            false,
        )
        .short(&["crd", "crds"])
        .with_status(),
    ]
}
