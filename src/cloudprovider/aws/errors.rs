//! EC2 and SSM errors, classified by their error code so that callers can tell throttling from
//! missing capacity from a resource that is gone from a mistake that retrying will not fix.

use std::fmt;

use crate::cloudprovider::error::CloudProviderError;

/// What kind of failure an EC2 error code (or transport failure) is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Ec2ErrorKind {
    /// Throttling, 5xx, timeouts, connection failures.
    Retryable,
    /// The requested offering has no capacity right now.
    InsufficientCapacity,
    /// The subnet ran out of addresses.
    SubnetFull,
    /// The resource does not exist.
    NotFound,
    /// The resource already exists (e.g. a launch template name).
    AlreadyExists,
    /// Anything else: auth, permissions, invalid parameters.
    Permanent,
}

/// An EC2 (or SSM) call that failed, with the service's error code when it sent one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct Ec2Error {
    pub kind: Ec2ErrorKind,
    /// The API operation, e.g. `CreateFleet`.
    pub operation: &'static str,
    pub code: Option<String>,
    pub message: String,
}

impl fmt::Display for Ec2Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.operation)?;
        if let Some(code) = &self.code {
            write!(f, " ({code})")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Codes that mean "this offering has no capacity now": Karpenter's list, which holds the
/// offering out and tries others. `VcpuLimitExceeded` and `Unsupported` (a type not offered in a
/// zone) are handled the same way, since another type or zone may still launch.
pub const CAPACITY_ERROR_CODES: &[&str] = &[
    "InsufficientInstanceCapacity",
    "UnfulfillableCapacity",
    "MaxSpotInstanceCountExceeded",
    "SpotMaxPriceTooLow",
    "VcpuLimitExceeded",
    "Unsupported",
];

/// The code that marks a subnet as out of addresses.
pub const SUBNET_FULL_CODE: &str = "InsufficientFreeAddressesInSubnet";

/// Throttling and transient server codes that EC2 and SSM send.
const RETRYABLE_CODES: &[&str] = &[
    "RequestLimitExceeded",
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottled",
    "RequestThrottledException",
    "TooManyRequestsException",
    "EC2ThrottledException",
    "InternalError",
    "InternalFailure",
    "InternalServerError",
    "ServiceUnavailable",
    "Unavailable",
    "RequestTimeout",
    "RequestTimeoutException",
];

/// Classifies an error code.
pub fn classify(code: &str) -> Ec2ErrorKind {
    if CAPACITY_ERROR_CODES.contains(&code) {
        Ec2ErrorKind::InsufficientCapacity
    } else if code == SUBNET_FULL_CODE {
        Ec2ErrorKind::SubnetFull
    } else if RETRYABLE_CODES.contains(&code) {
        Ec2ErrorKind::Retryable
    } else if code.ends_with(".NotFound")
        || code.ends_with("NotFoundException")
        || code == "ParameterNotFound"
    {
        Ec2ErrorKind::NotFound
    } else if code.ends_with("AlreadyExistsException") || code.ends_with(".Duplicate") {
        Ec2ErrorKind::AlreadyExists
    } else {
        Ec2ErrorKind::Permanent
    }
}

impl Ec2Error {
    /// An error the service answered with `code`.
    pub fn service(operation: &'static str, code: &str, message: impl Into<String>) -> Self {
        Self {
            kind: classify(code),
            operation,
            code: Some(code.to_string()),
            message: message.into(),
        }
    }

    /// A failure before or without a service answer (timeout, connection refused, bad response).
    pub fn transport(operation: &'static str, message: impl Into<String>) -> Self {
        Self {
            kind: Ec2ErrorKind::Retryable,
            operation,
            code: None,
            message: message.into(),
        }
    }

    /// A request that could not even be built.
    pub fn permanent(operation: &'static str, message: impl Into<String>) -> Self {
        Self {
            kind: Ec2ErrorKind::Permanent,
            operation,
            code: None,
            message: message.into(),
        }
    }

    pub fn is_not_found(&self) -> bool {
        self.kind == Ec2ErrorKind::NotFound
    }
}

impl From<Ec2Error> for CloudProviderError {
    fn from(err: Ec2Error) -> Self {
        let Ec2Error {
            kind,
            operation,
            code,
            message,
        } = err;
        match kind {
            Ec2ErrorKind::NotFound => CloudProviderError::NotFound {
                what: format!("{operation}: {message}"),
                code,
            },
            Ec2ErrorKind::InsufficientCapacity | Ec2ErrorKind::SubnetFull => {
                CloudProviderError::InsufficientCapacity {
                    message: format!("{operation}: {message}"),
                    offerings: Vec::new(),
                }
            }
            Ec2ErrorKind::Retryable => CloudProviderError::Retryable {
                operation: operation.to_string(),
                code,
                message,
            },
            Ec2ErrorKind::AlreadyExists | Ec2ErrorKind::Permanent => {
                CloudProviderError::Permanent {
                    operation: operation.to_string(),
                    code,
                    message,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_classified_by_what_the_caller_should_do() {
        assert_eq!(classify("RequestLimitExceeded"), Ec2ErrorKind::Retryable);
        assert_eq!(classify("InternalError"), Ec2ErrorKind::Retryable);
        assert_eq!(
            classify("InsufficientInstanceCapacity"),
            Ec2ErrorKind::InsufficientCapacity
        );
        assert_eq!(
            classify("MaxSpotInstanceCountExceeded"),
            Ec2ErrorKind::InsufficientCapacity
        );
        assert_eq!(
            classify("InsufficientFreeAddressesInSubnet"),
            Ec2ErrorKind::SubnetFull
        );
        assert_eq!(
            classify("InvalidInstanceID.NotFound"),
            Ec2ErrorKind::NotFound
        );
        assert_eq!(
            classify("InvalidLaunchTemplateName.NotFoundException"),
            Ec2ErrorKind::NotFound
        );
        assert_eq!(classify("ParameterNotFound"), Ec2ErrorKind::NotFound);
        assert_eq!(
            classify("InvalidLaunchTemplateName.AlreadyExistsException"),
            Ec2ErrorKind::AlreadyExists
        );
        assert_eq!(classify("UnauthorizedOperation"), Ec2ErrorKind::Permanent);
        assert_eq!(classify("InvalidParameterValue"), Ec2ErrorKind::Permanent);
    }

    #[test]
    fn conversion_keeps_the_code_for_callers() {
        let err: CloudProviderError =
            Ec2Error::service("TerminateInstances", "AuthFailure", "bad keys").into();
        assert_eq!(err.code(), Some("AuthFailure"));
        assert!(!err.is_retryable());
        let err: CloudProviderError =
            Ec2Error::service("DescribeInstances", "InvalidInstanceID.NotFound", "gone").into();
        assert!(err.is_not_found());
        let err: CloudProviderError = Ec2Error::transport("CreateFleet", "timed out").into();
        assert!(err.is_retryable());
    }
}
