//! The OpenAPI v3 index and per-group-version documents, as far as kubectl reads them: each
//! resource's PATCH operation with its group/version/kind and the `fieldValidation` parameter,
//! so kubectl leaves validation to the server (`kubectl create/apply` work without
//! `--validate=false`). Schemas are not published (`kubectl explain` has nothing to show).

use serde_json::{Map, Value, json};

use super::resources::Registry;

fn group_version_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

/// `/openapi/v3`: where each group-version's document lives.
pub fn index(registry: &Registry) -> Value {
    let mut paths = Map::new();
    let mut versions = vec![(String::new(), "v1".to_string())];
    for (group, group_versions) in registry.groups() {
        versions.extend(
            group_versions
                .into_iter()
                .map(|version| (group.clone(), version)),
        );
    }
    for (group, version) in versions {
        let path = group_version_path(&group, &version);
        let url = format!("/openapi/v3/{path}?hash=nodewright-sim");
        paths.insert(path, json!({"serverRelativeURL": url}));
    }
    json!({"paths": paths})
}

/// `/openapi/v3/api/v1` or `/openapi/v3/apis/{group}/{version}`; `None` when not served.
pub fn document(registry: &Registry, group: &str, version: &str) -> Option<Value> {
    if !registry.serves(group, version) {
        return None;
    }
    let parameters: Vec<Value> = ["dryRun", "fieldManager", "fieldValidation", "force"]
        .iter()
        .map(|name| json!({"name": name, "in": "query", "schema": {"type": "string"}}))
        .collect();
    let mut paths = Map::new();
    for rt in registry.in_group_version(group, version) {
        let prefix = format!("/{}", group_version_path(group, version));
        let path = if rt.namespaced {
            format!("{prefix}/namespaces/{{namespace}}/{}/{{name}}", rt.plural)
        } else {
            format!("{prefix}/{}/{{name}}", rt.plural)
        };
        let operation = json!({
            "operationId": format!("patch{}", rt.kind),
            "parameters": parameters,
            "responses": {"200": {"description": "OK"}},
            "x-kubernetes-action": "patch",
            "x-kubernetes-group-version-kind": {"group": group, "version": version, "kind": rt.kind},
        });
        paths.insert(path, json!({"patch": operation}));
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes (nodewright simulation)", "version": "v1.34"},
        "paths": paths,
        "components": {},
    }))
}
