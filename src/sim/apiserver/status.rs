//! Kubernetes `Status` errors: every failed request answers with one, never a panic or a bare
//! string, so clients (kube-rs, kubectl) see the reason and code they would see from a real server.

use serde_json::{Value, json};

/// A request that failed, as the `Status` object the API server returns.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
    pub details: Option<Value>,
}

/// Names the object an error is about, as in `Status.details`.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    pub group: &'a str,
    pub plural: &'a str,
    pub name: &'a str,
}

impl Target<'_> {
    /// `pods "web-0"` or `provisioners.karpenter.sh "default"`, the real server's wording.
    fn qualified(&self) -> String {
        if self.group.is_empty() {
            format!("{} \"{}\"", self.plural, self.name)
        } else {
            format!("{}.{} \"{}\"", self.plural, self.group, self.name)
        }
    }

    fn details(&self) -> Value {
        json!({"name": self.name, "group": self.group, "kind": self.plural})
    }
}

impl ApiError {
    fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            reason,
            message: message.into(),
            details: None,
        }
    }

    fn with_details(mut self, details: Value) -> Self {
        self.details = Some(details);
        self
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(403, "Forbidden", message)
    }

    pub fn not_found(target: Target<'_>) -> Self {
        Self::new(404, "NotFound", format!("{} not found", target.qualified()))
            .with_details(target.details())
    }

    /// A path that names no resource this server knows.
    pub fn no_route(path: &str) -> Self {
        Self::new(
            404,
            "NotFound",
            format!("the server could not find the requested resource ({path})"),
        )
    }

    pub fn method_not_allowed(method: &str) -> Self {
        Self::new(
            405,
            "MethodNotAllowed",
            format!("the server does not allow this method on the requested resource ({method})"),
        )
    }

    pub fn already_exists(target: Target<'_>) -> Self {
        Self::new(
            409,
            "AlreadyExists",
            format!("{} already exists", target.qualified()),
        )
        .with_details(target.details())
    }

    pub fn conflict(target: Target<'_>, why: &str) -> Self {
        Self::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {}: {why}",
                target.qualified()
            ),
        )
        .with_details(target.details())
    }

    /// A watch or continue token that asks for history the server no longer keeps.
    pub fn gone(message: impl Into<String>) -> Self {
        Self::new(410, "Expired", message)
    }

    pub fn unsupported_media_type(content_type: &str) -> Self {
        Self::new(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json, application/apply-patch+yaml (got {content_type:?})"
            ),
        )
    }

    /// 422: the object is well-formed JSON but breaks a rule; one cause per field.
    pub fn invalid(kind: &str, name: &str, causes: Vec<(String, String)>) -> Self {
        let summary = causes
            .iter()
            .map(|(field, message)| format!("{field}: {message}"))
            .collect::<Vec<_>>()
            .join(", ");
        let causes: Vec<Value> = causes
            .into_iter()
            .map(|(field, message)| {
                json!({"reason": "FieldValueInvalid", "message": message, "field": field})
            })
            .collect();
        Self::new(
            422,
            "Invalid",
            format!("{kind} \"{name}\" is invalid: {summary}"),
        )
        .with_details(json!({"name": name, "kind": kind, "causes": causes}))
    }

    pub fn too_many_requests(message: impl Into<String>, causes: Vec<Value>) -> Self {
        Self::new(429, "TooManyRequests", message).with_details(json!({"causes": causes}))
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(500, "InternalError", message)
    }

    /// The `Status` object sent on the wire.
    pub fn to_status(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if let (Some(details), Some(object)) = (&self.details, status.as_object_mut()) {
            object.insert("details".into(), details.clone());
        }
        status
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.code, self.reason, self.message)
    }
}

impl std::error::Error for ApiError {}

/// The `Status` a successful delete or subresource POST returns.
pub fn success(code: u16, details: Value) -> Value {
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "code": code,
        "details": details,
    })
}
