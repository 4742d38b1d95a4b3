//! What a cloud provider call can fail with, typed so that callers can decide: retry later,
//! try other offerings, treat the machine as gone, or report a configuration problem.

use nodewright_scheduling::instance_type::CapacityType;

/// One (instance type, zone, capacity type) that could not be bought.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OfferingKey {
    pub instance_type: String,
    pub zone: String,
    pub capacity_type: CapacityType,
}

#[derive(Debug, thiserror::Error)]
pub enum CloudProviderError {
    /// No candidate offering had capacity; the listed offerings are held out for a while, so a
    /// new scheduling round picks something else.
    #[error("insufficient capacity: {message}")]
    InsufficientCapacity {
        message: String,
        offerings: Vec<OfferingKey>,
    },

    /// The instance (or another resource) does not exist, or no longer does.
    #[error("{what} not found{}", code_suffix(.code))]
    NotFound { what: String, code: Option<String> },

    /// Throttling, a server error or a timeout that outlasted the SDK's own retries: try again
    /// later.
    #[error("{operation} failed, retry later{}: {message}", code_suffix(.code))]
    Retryable {
        operation: String,
        code: Option<String>,
        message: String,
    },

    /// A failure that retrying will not fix (credentials, permissions, invalid parameters).
    #[error("{operation} failed{}: {message}", code_suffix(.code))]
    Permanent {
        operation: String,
        code: Option<String>,
        message: String,
    },

    /// The request or node template cannot be satisfied as written (no subnet matches the
    /// selector, no image for an architecture, an unsupported AMI family, …).
    #[error("invalid launch configuration: {0}")]
    InvalidConfiguration(String),
}

fn code_suffix(code: &Option<String>) -> String {
    code.as_deref()
        .map(|code| format!(" ({code})"))
        .unwrap_or_default()
}

impl CloudProviderError {
    /// The provider's error code (e.g. EC2's `InsufficientInstanceCapacity`), when there is one.
    pub fn code(&self) -> Option<&str> {
        match self {
            CloudProviderError::NotFound { code, .. }
            | CloudProviderError::Retryable { code, .. }
            | CloudProviderError::Permanent { code, .. } => code.as_deref(),
            CloudProviderError::InsufficientCapacity { .. }
            | CloudProviderError::InvalidConfiguration(_) => None,
        }
    }

    /// Whether the same call may succeed later without any change.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            CloudProviderError::Retryable { .. } | CloudProviderError::InsufficientCapacity { .. }
        )
    }

    pub fn is_not_found(&self) -> bool {
        matches!(self, CloudProviderError::NotFound { .. })
    }

    /// A bounded label for `karpenter_cloudprovider_errors_total`.
    pub fn metric_label(&self) -> &'static str {
        match self {
            CloudProviderError::InsufficientCapacity { .. } => "insufficient_capacity",
            CloudProviderError::NotFound { .. } => "not_found",
            CloudProviderError::Retryable { .. } => "retryable",
            CloudProviderError::Permanent { .. } => "permanent",
            CloudProviderError::InvalidConfiguration(_) => "invalid_configuration",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_keep_the_provider_error_code() {
        let err = CloudProviderError::Permanent {
            operation: "CreateFleet".into(),
            code: Some("UnauthorizedOperation".into()),
            message: "not allowed".into(),
        };
        assert_eq!(
            err.to_string(),
            "CreateFleet failed (UnauthorizedOperation): not allowed"
        );
        assert_eq!(err.code(), Some("UnauthorizedOperation"));
        assert!(!err.is_retryable());
        assert_eq!(err.metric_label(), "permanent");
    }

    #[test]
    fn throttling_and_capacity_are_retryable() {
        let throttled = CloudProviderError::Retryable {
            operation: "DescribeInstances".into(),
            code: Some("RequestLimitExceeded".into()),
            message: "slow down".into(),
        };
        assert!(throttled.is_retryable());
        let capacity = CloudProviderError::InsufficientCapacity {
            message: "none left".into(),
            offerings: vec![],
        };
        assert!(capacity.is_retryable());
        assert_eq!(capacity.code(), None);
    }
}
