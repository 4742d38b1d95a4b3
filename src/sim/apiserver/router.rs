//! The HTTP front: one axum fallback handler reads the path as the real server does, dispatches
//! by verb, answers failures with `Status` objects and records every request.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Query, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::sync::watch;

use super::patch::{self, PatchKind};
use super::route::{self, ResourceRoute, Route};
use super::selectors::{FieldSelector, LabelSelector};
use super::status::{self, ApiError};
use super::store::{Filter, Store, WatchFrom};
use super::watch::{self as watches, WatchParams};
use super::write::{DeleteOptions, Deleted, Part, Propagation};
use super::{RequestRecord, discovery, openapi, scale, table};
use crate::sync::lock;

/// Bodies larger than this are refused (the real server's limit is 3 MiB per object).
const MAX_BODY_BYTES: usize = 3 * 1024 * 1024;

/// What every request handler shares.
pub struct App {
    pub store: Arc<Store>,
    pub log: Mutex<Vec<RequestRecord>>,
    /// Requests to answer with an error instead of serving (tests of failure handling).
    pub faults: Mutex<Vec<Fault>>,
    pub address: String,
    pub bookmark_interval: Duration,
    pub shutdown: watch::Receiver<bool>,
    /// Bumped to end every open watch stream.
    pub watch_cut: watch::Sender<u64>,
}

/// The next `remaining` requests with this RBAC verb on this resource fail with a 500.
#[derive(Debug, Clone)]
pub struct Fault {
    /// Only requests with this User-Agent; any request when `None`.
    pub user_agent: Option<String>,
    pub verb: String,
    pub resource: String,
    pub remaining: usize,
}

impl App {
    /// Uses up one injected failure matching `record`, if any is left.
    fn take_fault(&self, record: &RequestRecord) -> Option<ApiError> {
        let mut faults = lock(&self.faults);
        let fault = faults.iter_mut().find(|fault| {
            fault.remaining > 0
                && fault.verb == record.verb
                && fault.resource == record.resource
                && (fault.user_agent.is_none() || fault.user_agent == record.user_agent)
        })?;
        fault.remaining -= 1;
        Some(ApiError::internal(format!(
            "injected failure: {} {}",
            record.verb, record.resource
        )))
    }
}

pub fn router(app: Arc<App>) -> Router {
    Router::new().fallback(handle).with_state(app)
}

/// Query parameters, in order.
pub struct Params(Vec<(String, String)>);

impl Params {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(name, _)| name == key)
            .map(|(_, value)| value.as_str())
            .filter(|value| !value.is_empty())
    }

    fn flag(&self, key: &str) -> bool {
        matches!(self.get(key), Some("true" | "1"))
    }

    fn number<T: std::str::FromStr>(&self, key: &str) -> Result<Option<T>, ApiError> {
        self.get(key)
            .map(|text| {
                text.parse().map_err(|_| {
                    ApiError::bad_request(format!(
                        "invalid value {text:?} for query parameter {key}"
                    ))
                })
            })
            .transpose()
    }
}

async fn handle(State(app): State<Arc<App>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let route = route::parse(&app.store.registry, parts.uri.path());
    let params = Params(
        Query::<Vec<(String, String)>>::try_from_uri(&parts.uri)
            .map(|Query(pairs)| pairs)
            .unwrap_or_default(),
    );
    let mut record = RequestRecord::new(
        &parts.method,
        parts.uri.path(),
        &route,
        &params,
        &parts.headers,
    );
    let fault = app.take_fault(&record);
    let response = match (fault, axum::body::to_bytes(body, MAX_BODY_BYTES).await) {
        (Some(error), _) => error_response(&error),
        (None, Ok(bytes)) => dispatch(
            &app,
            parts.uri.path(),
            &parts.method,
            &parts.headers,
            route,
            &params,
            bytes,
        )
        .unwrap_or_else(|error| error_response(&error)),
        (None, Err(_)) => error_response(&ApiError::bad_request(format!(
            "the request body is unreadable or larger than {MAX_BODY_BYTES} bytes"
        ))),
    };
    record.status = response.status().as_u16();
    lock(&app.log).push(record);
    response
}

pub fn json_response(code: u16, value: &Value) -> Response {
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        value.to_string(),
    )
        .into_response()
}

pub fn error_response(error: &ApiError) -> Response {
    json_response(error.code, &error.to_status())
}

fn dispatch(
    app: &App,
    path: &str,
    method: &Method,
    headers: &HeaderMap,
    route: Route,
    params: &Params,
    body: Bytes,
) -> Result<Response, ApiError> {
    let registry = &app.store.registry;
    let read_only = |document: Option<Value>| match (method, document) {
        (&Method::GET, Some(document)) => Ok(json_response(200, &document)),
        (&Method::GET, None) => Err(ApiError::no_route(path)),
        _ => Err(ApiError::method_not_allowed(method.as_str())),
    };
    match route {
        Route::Root => read_only(Some(
            json!({"paths": ["/api", "/api/v1", "/apis", "/version", "/healthz"]}),
        )),
        Route::Version => read_only(Some(discovery::version())),
        Route::Health => match method {
            &Method::GET => Ok((StatusCode::OK, "ok").into_response()),
            _ => Err(ApiError::method_not_allowed(method.as_str())),
        },
        Route::CoreVersions => read_only(Some(discovery::core_versions(&app.address))),
        Route::Groups => read_only(Some(discovery::group_list(registry))),
        Route::Group(group) => read_only(discovery::group(registry, &group)),
        Route::GroupVersion { group, version } => {
            read_only(Some(discovery::resource_list(registry, &group, &version)))
        }
        Route::OpenApiIndex => read_only(Some(openapi::index(registry))),
        Route::OpenApi { group, version } => {
            read_only(openapi::document(registry, &group, &version))
        }
        Route::Unknown => Err(ApiError::no_route(path)),
        Route::Resource(resource) => {
            resource_request(app, method, headers, &resource, params, body)
        }
    }
}

fn parse_json(body: &Bytes) -> Result<Value, ApiError> {
    let value: Value = serde_json::from_slice(body).map_err(|error| {
        ApiError::bad_request(format!("couldn't decode the request body as JSON: {error}"))
    })?;
    if value.is_object() {
        Ok(value)
    } else {
        Err(ApiError::bad_request(
            "the request body must be a JSON object",
        ))
    }
}

fn resource_request(
    app: &App,
    method: &Method,
    headers: &HeaderMap,
    resource: &ResourceRoute,
    params: &Params,
    body: Bytes,
) -> Result<Response, ApiError> {
    let store = &app.store;
    let rt = &resource.rt;
    let namespace = resource.namespace.clone().unwrap_or_default();
    let name = resource.name.as_deref();
    let sub = resource.subresource.as_deref();
    let wants_watch = resource.watch_path || params.flag("watch");
    let dry_run = dry_run(params)?;
    match (method, name, sub) {
        (&Method::GET, _, _) if wants_watch => watch(app, resource, params),
        (&Method::GET, None, None) => list(app, resource, params, headers),
        (&Method::GET, Some(name), None | Some("status")) => {
            let object = store.get(rt, &namespace, name)?;
            if table::wanted(headers) {
                return Ok(json_response(
                    200,
                    &table::table(store, rt, &[object], None),
                ));
            }
            Ok(json_response(200, &object))
        }
        (&Method::GET, Some(name), Some("scale")) => Ok(json_response(
            200,
            &scale::of(&store.get(rt, &namespace, name)?),
        )),
        (&Method::POST, None, None) if resource.namespace.is_some() || !rt.namespaced => {
            let body = parse_json(&body)?;
            let created =
                store.write_or_try(dry_run, |writer| writer.create(rt, &namespace, body))?;
            Ok(json_response(201, &created))
        }
        (&Method::POST, Some(name), Some("binding")) => {
            let binding = parse_json(&body)?;
            store.write_or_try(dry_run, |writer| {
                writer.bind(rt, &namespace, name, &binding)
            })?;
            Ok(json_response(201, &status::success(201, json!({}))))
        }
        (&Method::POST, Some(name), Some("eviction")) => {
            let eviction = parse_json(&body)?;
            let options = delete_options(eviction.get("deleteOptions"), params)?;
            store.write_or_try(dry_run, |writer| {
                writer.evict(rt, &namespace, name, &options)
            })?;
            Ok(json_response(201, &status::success(201, json!({}))))
        }
        (&Method::PUT, Some(name), None | Some("status")) => {
            let part = if sub == Some("status") {
                Part::Status
            } else {
                Part::Main
            };
            let body = parse_json(&body)?;
            let updated = store.write_or_try(dry_run, |writer| {
                writer.update(rt, &namespace, name, body, part)
            })?;
            Ok(json_response(200, &updated))
        }
        (&Method::PUT, Some(name), Some("scale")) => {
            let body = parse_json(&body)?;
            let updated = store.write_or_try(dry_run, |writer| {
                scale::replace(writer, rt, &namespace, name, &body)
            })?;
            Ok(json_response(200, &scale::of(&updated)))
        }
        (&Method::PATCH, Some(name), None | Some("status" | "scale")) => {
            patch(app, headers, resource, name, params, &body)
        }
        (&Method::DELETE, Some(name), None) => {
            let options = delete_body(&body, params)?;
            match store.write_or_try(dry_run, |writer| {
                writer.delete(rt, &namespace, name, &options)
            })? {
                Deleted::Removed(last) => Ok(json_response(
                    200,
                    &status::success(
                        200,
                        json!({"name": name, "group": rt.group, "kind": rt.plural,
                            "uid": super::meta::uid(&last)}),
                    ),
                )),
                Deleted::Pending(object) => Ok(json_response(200, &object)),
            }
        }
        (&Method::DELETE, None, None) => {
            let options = delete_body(&body, params)?;
            let filter = filter(resource, params)?;
            let page = store.list(rt, &filter, None, None, None)?;
            let mut deleted = Vec::new();
            store.write_or_try(dry_run, |writer| {
                for item in &page.items {
                    let item_namespace = super::meta::namespace(item).unwrap_or_default();
                    let item_name = super::meta::name(item).unwrap_or_default();
                    if let Ok(outcome) = writer.delete(rt, item_namespace, item_name, &options) {
                        deleted.push(match outcome {
                            Deleted::Removed(last) | Deleted::Pending(last) => last,
                        });
                    }
                }
            });
            Ok(json_response(
                200,
                &list_document(rt, deleted, store.resource_version(), None, None),
            ))
        }
        _ => Err(ApiError::method_not_allowed(method.as_str())),
    }
}

fn filter(resource: &ResourceRoute, params: &Params) -> Result<Filter, ApiError> {
    let rt = &resource.rt;
    let mut fields = params.get("fieldSelector").unwrap_or_default().to_string();
    if let Some(name) = &resource.name {
        // A watch on /watch/.../NAME watches that one object.
        fields = format!("metadata.name={name},{fields}");
    }
    Ok(Filter {
        namespace: resource.namespace.clone(),
        labels: LabelSelector::parse(params.get("labelSelector").unwrap_or_default())?,
        fields: FieldSelector::parse(&fields, &rt.group, &rt.plural)?,
    })
}

pub fn list_document(
    rt: &super::resources::ResourceType,
    items: Vec<Value>,
    version: u64,
    continue_token: Option<String>,
    remaining: Option<usize>,
) -> Value {
    let mut metadata = json!({"resourceVersion": version.to_string()});
    if let Some(token) = continue_token {
        metadata["continue"] = json!(token);
    }
    if let Some(remaining) = remaining {
        metadata["remainingItemCount"] = json!(remaining);
    }
    json!({
        "kind": format!("{}List", rt.kind),
        "apiVersion": rt.api_version(),
        "metadata": metadata,
        "items": items,
    })
}

fn list(
    app: &App,
    resource: &ResourceRoute,
    params: &Params,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let rt = &resource.rt;
    let filter = filter(resource, params)?;
    let continue_token = params.get("continue");
    let version: Option<u64> = params.number("resourceVersion")?;
    if continue_token.is_some() && version.is_some_and(|version| version > 0) {
        return Err(ApiError::bad_request(
            "specifying resource version is not allowed when using continue",
        ));
    }
    let exact = match params.get("resourceVersionMatch") {
        Some("Exact") => Some(version.ok_or_else(|| {
            ApiError::bad_request("resourceVersionMatch=Exact needs a resourceVersion")
        })?),
        Some("NotOlderThan") | None => None,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "unknown resourceVersionMatch {other:?}"
            )));
        }
    };
    let limit = params.number::<usize>("limit")?;
    let page = app.store.list(rt, &filter, limit, continue_token, exact)?;
    if table::wanted(headers) {
        let document = table::table(
            &app.store,
            rt,
            &page.items,
            Some((page.resource_version, page.continue_token)),
        );
        return Ok(json_response(200, &document));
    }
    Ok(json_response(
        200,
        &list_document(
            rt,
            page.items,
            page.resource_version,
            page.continue_token,
            page.remaining,
        ),
    ))
}

fn watch(app: &App, resource: &ResourceRoute, params: &Params) -> Result<Response, ApiError> {
    let filter = filter(resource, params)?;
    let from = match params.number::<u64>("resourceVersion")? {
        None | Some(0) => WatchFrom::Current,
        Some(version) => WatchFrom::Version(version),
    };
    let watch_params = WatchParams {
        from,
        bookmarks: params.flag("allowWatchBookmarks"),
        timeout: params
            .number::<u64>("timeoutSeconds")?
            .map(Duration::from_secs),
        send_initial_events: params.flag("sendInitialEvents"),
    };
    let body: Body = watches::start(
        &app.store,
        &resource.rt,
        filter,
        watch_params,
        app.bookmark_interval,
        app.shutdown.clone(),
        app.watch_cut.subscribe(),
    );
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response())
}

fn patch(
    app: &App,
    headers: &HeaderMap,
    resource: &ResourceRoute,
    name: &str,
    params: &Params,
    body: &Bytes,
) -> Result<Response, ApiError> {
    let store = &app.store;
    let rt = &resource.rt;
    let namespace = resource.namespace.clone().unwrap_or_default();
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default();
    let kind = PatchKind::from_content_type(content_type)?;
    let patch_body = patch::parse_body(kind, body)?;
    if kind == PatchKind::Apply && params.get("fieldManager").is_none() {
        return Err(ApiError::bad_request(
            "PATCH: fieldManager is required for apply requests",
        ));
    }
    let strategic = rt.strategic_merge;
    let dry_run = dry_run(params)?;
    match resource.subresource.as_deref() {
        Some("scale") => {
            let updated = store.write_or_try(dry_run, |writer| {
                scale::patch(writer, rt, &namespace, name, |current_scale| {
                    patch::apply(kind, current_scale, &patch_body, true)
                })
            })?;
            Ok(json_response(200, &scale::of(&updated)))
        }
        sub => {
            let part = if sub == Some("status") {
                Part::Status
            } else {
                Part::Main
            };
            let result = store.write_or_try(dry_run, |writer| {
                let exists = writer.state.get(rt, &namespace, name).is_ok();
                if kind == PatchKind::Apply && !exists && part == Part::Main {
                    let mut body = patch_body.clone();
                    match super::meta::name(&body) {
                        Some(named) if named != name => {
                            return Err(ApiError::bad_request(format!(
                                "the name of the object ({named}) does not match the name on the URL ({name})"
                            )));
                        }
                        Some(_) => {}
                        None => super::meta::set(&mut body, "name", json!(name)),
                    }
                    return writer
                        .create(rt, &namespace, body)
                        .map(|created| (201, created));
                }
                writer
                    .modify(rt, &namespace, name, part, |current| {
                        patch::apply(kind, current, &patch_body, strategic)
                    })
                    .map(|updated| (200, updated))
            })?;
            Ok(json_response(result.0, &result.1))
        }
    }
}

/// `dryRun=All` (the only value the API defines).
fn dry_run(params: &Params) -> Result<bool, ApiError> {
    match params.get("dryRun") {
        None => Ok(false),
        Some("All") => Ok(true),
        Some(other) => Err(ApiError::bad_request(format!(
            "unsupported dryRun value {other:?}: only All is defined"
        ))),
    }
}

/// DeleteOptions from a DELETE body (possibly empty) and the query string.
fn delete_body(body: &Bytes, params: &Params) -> Result<DeleteOptions, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return delete_options(None, params);
    }
    let value = parse_json(body)?;
    delete_options(Some(&value), params)
}

fn delete_options(body: Option<&Value>, params: &Params) -> Result<DeleteOptions, ApiError> {
    let field = |name: &str| {
        body.and_then(|body| body.get(name))
            .filter(|value| !value.is_null())
    };
    let grace_period_seconds = match field("gracePeriodSeconds") {
        Some(value) => Some(
            value
                .as_i64()
                .ok_or_else(|| ApiError::bad_request("gracePeriodSeconds must be an integer"))?,
        ),
        None => params.number("gracePeriodSeconds")?,
    };
    let policy = field("propagationPolicy")
        .and_then(Value::as_str)
        .or_else(|| params.get("propagationPolicy"));
    let orphan = field("orphanDependents")
        .and_then(Value::as_bool)
        .or_else(|| params.get("orphanDependents").map(|value| value == "true"));
    let propagation = match (policy, orphan) {
        (Some("Background"), _) => Propagation::Background,
        (Some("Foreground"), _) => Propagation::Foreground,
        (Some("Orphan"), _) | (None, Some(true)) => Propagation::Orphan,
        (None, _) => Propagation::Background,
        (Some(other), _) => {
            return Err(ApiError::bad_request(format!(
                "propagationPolicy {other:?} is not one of Orphan, Background, Foreground"
            )));
        }
    };
    let precondition = |name: &str| {
        field("preconditions")
            .and_then(|preconditions| preconditions.get(name))
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    Ok(DeleteOptions {
        grace_period_seconds,
        propagation,
        precondition_uid: precondition("uid"),
        precondition_resource_version: precondition("resourceVersion"),
    })
}
