//! Faults moto never produces, injected by a proxy in front of it: throttling, persistent 5xx
//! and insufficient capacity reported in CreateFleet's `Errors[]`.

use std::sync::Arc;

use nodewright::cloudprovider::{CloudProvider, CloudProviderError, SystemClock};
use nodewright_scheduling::instance_type::CapacityType;

use crate::support::proxy::{Fault, FaultProxy};
use crate::support::{Env, moto};

#[tokio::test]
async fn throttled_calls_are_retried_by_the_sdk_and_succeed() {
    let env = Env::new("throttle").await;
    let proxy = FaultProxy::start(moto::endpoint());
    proxy.inject(
        "DescribeSubnets",
        Fault::Error {
            status: 503,
            code: "RequestLimitExceeded",
        },
        Some(2),
    );
    let provider = env
        .provider_at(&proxy.endpoint(), Arc::new(SystemClock))
        .await;
    let resolved = provider
        .resolve_template(&env.template())
        .await
        .expect("succeeds on the third attempt");
    assert_eq!(resolved.subnets.len(), 2);
    assert_eq!(proxy.count("DescribeSubnets"), 3);
}

#[tokio::test]
async fn persistent_server_errors_are_a_retryable_error_and_launch_nothing() {
    let env = Env::new("five-hundred").await;
    let proxy = FaultProxy::start(moto::endpoint());
    proxy.inject(
        "CreateFleet",
        Fault::Error {
            status: 500,
            code: "InternalError",
        },
        None,
    );
    let provider = env
        .provider_at(&proxy.endpoint(), Arc::new(SystemClock))
        .await;
    let err = provider
        .create(&env.request("a", &["m5.large"], &[CapacityType::OnDemand]))
        .await
        .expect_err("EC2 keeps failing");
    assert!(
        matches!(&err, CloudProviderError::Retryable { code: Some(code), .. } if code == "InternalError"),
        "{err:?}"
    );
    assert!(err.is_retryable());
    // The SDK's three attempts, then the typed error.
    assert_eq!(proxy.count("CreateFleet"), 3);
    assert!(env.live_instances_of("a").await.is_empty());
}

#[tokio::test]
async fn capacity_errors_launch_another_type_and_hold_the_offering_out() {
    let env = Env::new("ice").await;
    let proxy = FaultProxy::start(moto::endpoint());
    proxy.inject(
        "CreateFleet",
        Fault::NoCapacity {
            instance_types: vec!["c5.large".to_string()],
        },
        None,
    );
    let provider = env
        .provider_at(&proxy.endpoint(), Arc::new(SystemClock))
        .await;
    // Without on-demand prices the smaller c5.large (4 GiB) ranks before m5.large (8 GiB).
    let launched = provider
        .create(&env.request("a", &["m5.large", "c5.large"], &[CapacityType::OnDemand]))
        .await
        .expect("another type launches");
    assert_eq!(launched.instance_type, "m5.large");
    let held: Vec<(String, String)> = provider
        .unavailable_offerings()
        .offerings()
        .into_iter()
        .map(|o| (o.instance_type, o.zone))
        .collect();
    assert_eq!(
        held,
        vec![
            ("c5.large".to_string(), "us-east-1a".to_string()),
            ("c5.large".to_string(), "us-east-1b".to_string()),
        ]
    );
    let types = provider
        .instance_types(&env.template())
        .await
        .expect("types");
    let c5 = types
        .iter()
        .find(|t| t.name == "c5.large")
        .expect("c5.large");
    for offering in &c5.offerings {
        let expected = offering.capacity_type != CapacityType::OnDemand;
        assert_eq!(offering.available, expected, "{offering:?}");
    }
}

#[tokio::test]
async fn no_capacity_for_any_candidate_is_an_insufficient_capacity_error() {
    let env = Env::new("ice-all").await;
    let proxy = FaultProxy::start(moto::endpoint());
    proxy.inject(
        "CreateFleet",
        Fault::NoCapacity {
            instance_types: vec!["m5.large".to_string(), "c5.large".to_string()],
        },
        None,
    );
    let provider = env
        .provider_at(&proxy.endpoint(), Arc::new(SystemClock))
        .await;
    let err = provider
        .create(&env.request("a", &["m5.large", "c5.large"], &[CapacityType::OnDemand]))
        .await
        .expect_err("nothing can launch");
    match err {
        CloudProviderError::InsufficientCapacity { offerings, .. } => {
            assert_eq!(offerings.len(), 4)
        }
        other => panic!("expected insufficient capacity, got {other:?}"),
    }
    // Every offering failed on the first call, so there was nothing left to retry with.
    assert_eq!(proxy.count("CreateFleet"), 1);
    assert!(env.live_instances_of("a").await.is_empty());
}
