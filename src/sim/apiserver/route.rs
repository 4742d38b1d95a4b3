//! Request paths as the real server reads them: `/api/v1/[watch/][namespaces/NS/]PLURAL[/NAME
//! [/SUBRESOURCE]]` and the same under `/apis/GROUP/VERSION`, plus discovery paths.

use super::resources::{Registry, ResourceType};

/// Subresources of a namespace itself (so `/api/v1/namespaces/x/status` is not a resource "status"
/// in namespace x).
const NAMESPACE_SUBRESOURCES: [&str; 2] = ["status", "finalize"];

#[derive(Debug, Clone, PartialEq)]
pub enum Route {
    Root,
    Version,
    Health,
    CoreVersions,
    Groups,
    Group(String),
    GroupVersion { group: String, version: String },
    OpenApiIndex,
    OpenApi { group: String, version: String },
    Resource(Box<ResourceRoute>),
    Unknown,
}

/// A path that names a resource, a collection or a subresource.
#[derive(Debug, Clone, PartialEq)]
pub struct ResourceRoute {
    pub rt: ResourceType,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub subresource: Option<String>,
    /// The legacy `/watch/` path prefix.
    pub watch_path: bool,
}

pub fn parse(registry: &Registry, path: &str) -> Route {
    let segments: Vec<&str> = path.trim_end_matches('/').split('/').skip(1).collect();
    if segments.iter().any(|segment| segment.is_empty()) {
        return if path == "/" {
            Route::Root
        } else {
            Route::Unknown
        };
    }
    match segments.as_slice() {
        ["version"] => Route::Version,
        ["healthz" | "readyz" | "livez"] => Route::Health,
        ["api"] => Route::CoreVersions,
        ["apis"] => Route::Groups,
        ["apis", group] => Route::Group(group.to_string()),
        ["openapi", "v3"] => Route::OpenApiIndex,
        ["openapi", "v3", "api", version] => Route::OpenApi {
            group: String::new(),
            version: version.to_string(),
        },
        ["openapi", "v3", "apis", group, version] => Route::OpenApi {
            group: group.to_string(),
            version: version.to_string(),
        },
        ["api", "v1", rest @ ..] => resource_route(registry, "", "v1", rest),
        ["apis", group, version, rest @ ..] => resource_route(registry, group, version, rest),
        _ => Route::Unknown,
    }
}

fn resource_route(registry: &Registry, group: &str, version: &str, rest: &[&str]) -> Route {
    if !registry.serves(group, version) {
        return Route::Unknown;
    }
    let (watch_path, mut rest) = match rest {
        ["watch", tail @ ..] => (true, tail),
        _ => (false, rest),
    };
    if rest.is_empty() {
        return if watch_path {
            Route::Unknown
        } else {
            Route::GroupVersion {
                group: group.to_string(),
                version: version.to_string(),
            }
        };
    }
    let mut namespace = None;
    if let ["namespaces", ns, next, ..] = rest
        && !NAMESPACE_SUBRESOURCES.contains(next)
    {
        namespace = Some(ns.to_string());
        rest = &rest[2..];
    }
    let (plural, name, subresource) = match rest {
        [plural] => (*plural, None, None),
        [plural, name] => (*plural, Some(*name), None),
        [plural, name, sub] => (*plural, Some(*name), Some(*sub)),
        _ => return Route::Unknown,
    };
    let Some(rt) = registry.find(group, version, plural) else {
        return Route::Unknown;
    };
    let scoped_right = if rt.namespaced {
        namespace.is_some() || name.is_none()
    } else {
        namespace.is_none()
    };
    let subresource_known = subresource.is_none_or(|sub| match sub {
        "status" => rt.status,
        "scale" => rt.scale,
        "binding" | "eviction" => rt.is("", "pods"),
        _ => false,
    });
    if !scoped_right || !subresource_known {
        return Route::Unknown;
    }
    Route::Resource(Box::new(ResourceRoute {
        rt: rt.clone(),
        namespace,
        name: name.map(str::to_string),
        subresource: subresource.map(str::to_string),
        watch_path,
    }))
}
