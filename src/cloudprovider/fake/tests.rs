use std::time::Duration;

use nodewright_scheduling::instance_type::Offering;
use nodewright_scheduling::resources::Resources;

use super::*;
use crate::cloudprovider::clock::ManualClock;

fn offering(zone: &str, capacity_type: CapacityType, price: f64) -> Offering {
    Offering {
        zone: zone.into(),
        capacity_type,
        price_per_hour: Some(price),
        available: true,
    }
}

fn types() -> Vec<InstanceType> {
    let t = |name: &str, cpus: i64, offerings: Vec<Offering>| InstanceType {
        name: name.into(),
        labels: [(labels::INSTANCE_TYPE.to_string(), name.to_string())].into(),
        capacity: Resources {
            cpu_millis: cpus * 1000,
            memory_bytes: (cpus * 4) << 30,
            pods: 29,
            ..Default::default()
        },
        max_enis: 3,
        ipv4_per_eni: 10,
        offerings,
    };
    vec![
        t(
            "m5.large",
            2,
            vec![
                offering("zone-a", CapacityType::OnDemand, 0.096),
                offering("zone-a", CapacityType::Spot, 0.035),
                offering("zone-b", CapacityType::Spot, 0.031),
            ],
        ),
        t(
            "c5.large",
            2,
            vec![
                offering("zone-a", CapacityType::OnDemand, 0.085),
                offering("zone-b", CapacityType::Spot, 0.033),
            ],
        ),
    ]
}

fn provider() -> (FakeCloudProvider, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::fixed());
    (
        FakeCloudProvider::new(types(), "test-1", clock.clone()),
        clock,
    )
}

fn request(name: &str, capacity_types: &[CapacityType]) -> LaunchRequest {
    LaunchRequest {
        machine_name: name.into(),
        machine_uid: format!("uid-{name}"),
        provisioner_name: "default".into(),
        instance_types: vec!["m5.large".into(), "c5.large".into()],
        capacity_types: capacity_types.iter().copied().collect(),
        ..Default::default()
    }
}

#[tokio::test]
async fn the_cheapest_spot_offering_is_launched_when_spot_is_allowed() {
    let (cloud, _) = provider();
    let launched = cloud.create(&request("m1", &[])).await;
    let launched = launched.map(|i| (i.instance_type, i.zone, i.capacity_type, i.provider_id));
    assert_eq!(
        launched.ok(),
        Some((
            "m5.large".to_string(),
            "zone-b".to_string(),
            CapacityType::Spot,
            "aws:///zone-b/i-00000000000000001".to_string()
        ))
    );
}

#[tokio::test]
async fn on_demand_requests_get_the_cheapest_on_demand_offering() {
    let (cloud, _) = provider();
    let launched = cloud
        .create(&request("m1", &[CapacityType::OnDemand]))
        .await;
    let launched = launched.ok();
    assert_eq!(
        launched.as_ref().map(|i| i.instance_type.as_str()),
        Some("c5.large")
    );
    let labels = launched.map(|i| i.labels).unwrap_or_default();
    assert_eq!(
        labels.get(labels::CAPACITY_TYPE).map(String::as_str),
        Some("on-demand")
    );
    assert_eq!(labels.get(labels::ZONE).map(String::as_str), Some("zone-a"));
    assert_eq!(
        labels.get(labels::PROVISIONER_NAME).map(String::as_str),
        Some("default")
    );
}

#[tokio::test]
async fn a_capacity_error_launches_the_next_offering_and_holds_the_failed_one_out() {
    let (cloud, clock) = provider();
    cloud.set_no_capacity("m5.large", "zone-b", CapacityType::Spot);
    let launched = cloud.create(&request("m1", &[])).await.ok();
    assert_eq!(
        launched.map(|i| (i.instance_type, i.zone)),
        Some(("c5.large".to_string(), "zone-b".to_string()))
    );
    let held_out = |types: Vec<InstanceType>| {
        types.iter().find(|t| t.name == "m5.large").and_then(|t| {
            t.offerings
                .iter()
                .find(|o| o.zone == "zone-b" && o.capacity_type == CapacityType::Spot)
                .map(|o| !o.available)
        })
    };
    let template = NodeTemplate::default();
    assert_eq!(
        held_out(cloud.instance_types(&template).await.unwrap_or_default()),
        Some(true)
    );
    clock.advance(Duration::from_secs(3 * 60));
    assert_eq!(
        held_out(cloud.instance_types(&template).await.unwrap_or_default()),
        Some(false)
    );
}

#[tokio::test]
async fn no_capacity_anywhere_is_an_insufficient_capacity_error_naming_the_offerings() {
    let (cloud, _) = provider();
    cloud.set_no_capacity("m5.large", "zone-a", CapacityType::OnDemand);
    cloud.set_no_capacity("c5.large", "zone-a", CapacityType::OnDemand);
    match cloud
        .create(&request("m1", &[CapacityType::OnDemand]))
        .await
    {
        Err(CloudProviderError::InsufficientCapacity { offerings, .. }) => {
            assert_eq!(offerings.len(), 2);
        }
        other => panic!("expected insufficient capacity, got {other:?}"),
    }
    assert!(cloud.all_instances().is_empty());
}

#[tokio::test]
async fn creating_the_same_machine_twice_launches_once() {
    let (cloud, _) = provider();
    let first = cloud.create(&request("m1", &[])).await.ok();
    let second = cloud.create(&request("m1", &[])).await.ok();
    assert_eq!(first.map(|i| i.instance_id), second.map(|i| i.instance_id));
    assert_eq!(cloud.all_instances().len(), 1);
}

#[tokio::test]
async fn delete_is_idempotent_and_the_instance_is_gone_afterwards() {
    let (cloud, _) = provider();
    let launched = cloud.create(&request("m1", &[])).await.ok();
    let machine = MachineId::new("m1", launched.map(|i| i.provider_id));
    assert_eq!(
        cloud.delete(&machine).await.ok(),
        Some(DeleteStatus::Terminating)
    );
    assert_eq!(cloud.delete(&machine).await.ok(), Some(DeleteStatus::Gone));
    assert!(cloud.get(&machine).await.is_err_and(|e| e.is_not_found()));
    assert_eq!(cloud.list().await.map(|l| l.len()).ok(), Some(0));
    // A machine that never launched is gone too.
    assert_eq!(
        cloud.delete(&MachineId::new("never", None)).await.ok(),
        Some(DeleteStatus::Gone)
    );
}

#[tokio::test]
async fn injected_failures_are_retryable_and_used_up() {
    let (cloud, _) = provider();
    cloud.fail_next(FakeCall::Create, "RequestLimitExceeded", 1);
    let first = cloud.create(&request("m1", &[])).await;
    assert!(first.as_ref().is_err_and(|e| e.is_retryable()));
    assert_eq!(
        first
            .err()
            .and_then(|e| e.code().map(str::to_string))
            .as_deref(),
        Some("RequestLimitExceeded")
    );
    assert!(cloud.create(&request("m1", &[])).await.is_ok());
}

#[tokio::test]
async fn reclaimed_instances_drop_out_of_list_and_drift_is_reported_as_set() {
    let (cloud, _) = provider();
    let a = cloud.create(&request("a", &[])).await.ok();
    let b = cloud.create(&request("b", &[])).await.ok();
    let (Some(a), Some(b)) = (a, b) else {
        panic!("both launches should succeed");
    };
    cloud.reclaim(&a.instance_id);
    let listed: Vec<String> = cloud
        .list()
        .await
        .unwrap_or_default()
        .into_iter()
        .map(|i| i.instance_id)
        .collect();
    assert_eq!(listed, vec![b.instance_id.clone()]);
    let reason = DriftReason::Ami {
        instance: "ami-fake".into(),
        current: vec!["ami-new".into()],
    };
    cloud.set_drifted(&b.instance_id, reason.clone());
    let template = NodeTemplate::default();
    assert_eq!(
        cloud.is_drifted(&b, &template).await.ok(),
        Some(Some(reason))
    );
    assert_eq!(cloud.is_drifted(&a, &template).await.ok(), Some(None));
}

#[tokio::test]
async fn instances_are_named_by_private_dns_as_eks_names_nodes() {
    let (cloud, _) = provider();
    let first = cloud.create(&request("m1", &[])).await.ok();
    let second = cloud.create(&request("m2", &[])).await.ok();
    assert_eq!(
        first.and_then(|i| i.hostname).as_deref(),
        Some("ip-192-168-32-4.test-1.compute.internal")
    );
    assert_eq!(
        second.and_then(|i| i.hostname).as_deref(),
        Some("ip-192-168-32-5.test-1.compute.internal")
    );
    assert_eq!(
        private_dns_name("us-east-1", "us-east-1a", 251),
        "ip-192-168-1-4.ec2.internal"
    );
}
