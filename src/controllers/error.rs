//! What a controller's action can fail with, typed so that callers match on the kind instead of
//! parsing messages, and every failure is counted by kind
//! (`nodewright_controller_errors_total{controller,kind}`).

use crate::cloudprovider::CloudProviderError;

#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    /// A request to the API server failed.
    #[error("cannot {action}: {source}")]
    Api {
        action: String,
        #[source]
        source: kube::Error,
    },
    /// A cloud provider call failed.
    #[error("cannot {action}: {source}")]
    Cloud {
        action: String,
        #[source]
        source: CloudProviderError,
    },
    /// Something outside says "not now": a disruption budget, a replacement that is not ready.
    /// Retried later.
    #[error("{0}")]
    Blocked(String),
    /// An object cannot be used as written: a node template that does not resolve, a
    /// provisioner that is gone.
    #[error("{0}")]
    Invalid(String),
    /// The action panicked.
    #[error("panicked: {0}")]
    Panicked(String),
}

impl ControllerError {
    pub fn api(action: impl Into<String>, source: kube::Error) -> ControllerError {
        ControllerError::Api {
            action: action.into(),
            source,
        }
    }

    pub fn cloud(action: impl Into<String>, source: CloudProviderError) -> ControllerError {
        ControllerError::Cloud {
            action: action.into(),
            source,
        }
    }

    /// Whether the API server said the object does not exist.
    pub fn is_not_found(&self) -> bool {
        match self {
            ControllerError::Api {
                source: kube::Error::Api(status),
                ..
            } => status.code == 404,
            ControllerError::Cloud { source, .. } => source.is_not_found(),
            _ => false,
        }
    }

    /// A bounded label for `nodewright_controller_errors_total`.
    pub fn metric_label(&self) -> &'static str {
        match self {
            ControllerError::Api {
                source: kube::Error::Api(status),
                ..
            } => match status.code {
                404 => "api_not_found",
                409 => "api_conflict",
                422 => "api_invalid",
                429 => "api_throttled",
                500..=599 => "api_server_error",
                _ => "api_refused",
            },
            ControllerError::Api { .. } => "api_unreachable",
            ControllerError::Cloud { source, .. } => match source {
                CloudProviderError::InsufficientCapacity { .. } => "cloud_insufficient_capacity",
                CloudProviderError::NotFound { .. } => "cloud_not_found",
                CloudProviderError::Retryable { .. } => "cloud_retryable",
                CloudProviderError::Permanent { .. } => "cloud_permanent",
                CloudProviderError::InvalidConfiguration(_) => "cloud_invalid_configuration",
            },
            ControllerError::Blocked(_) => "blocked",
            ControllerError::Invalid(_) => "invalid",
            ControllerError::Panicked(_) => "panic",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(code: u16) -> kube::Error {
        kube::Error::Api(Box::new(kube::core::Status {
            code,
            ..Default::default()
        }))
    }

    #[test]
    fn failures_are_labelled_by_what_went_wrong() {
        let conflict = ControllerError::api("release node a", status(409));
        assert_eq!(conflict.metric_label(), "api_conflict");
        assert!(conflict.to_string().starts_with("cannot release node a: "));
        let gone = ControllerError::api("get node a", status(404));
        assert!(gone.is_not_found());
        assert_eq!(gone.metric_label(), "api_not_found");
        let capacity = ControllerError::cloud(
            "launch machine m",
            CloudProviderError::InsufficientCapacity {
                message: "none".into(),
                offerings: vec![],
            },
        );
        assert_eq!(capacity.metric_label(), "cloud_insufficient_capacity");
        assert!(!capacity.is_not_found());
        assert_eq!(
            ControllerError::Panicked("boom".into()).to_string(),
            "panicked: boom"
        );
    }
}
