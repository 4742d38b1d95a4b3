//! The provider's decisions under EC2 behaviour moto does not have, on the in-memory EC2:
//! per-override capacity errors, full subnets, vanished launch templates, ClientToken
//! idempotency, instances DescribeInstances cannot see yet, and EC2 being unreachable.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use nodewright::cloudprovider::aws::ec2::{Ec2Api, SecurityGroup, Subnet};
use nodewright::cloudprovider::aws::{
    AwsCloudProvider, AwsSettings, Ec2Error, InMemoryEc2, PricingApi,
};
use nodewright::cloudprovider::{
    AmiFamily, BoxFuture, CloudProvider, DeleteStatus, LaunchRequest, MachineId, ManualClock,
    NodeTemplate,
};
use nodewright_scheduling::instance_type::CapacityType;

const AL2_AMD64: &str = "/aws/service/eks/optimized-ami/1.27/amazon-linux-2/recommended/image_id";

struct Setup {
    ec2: Arc<InMemoryEc2>,
    clock: Arc<ManualClock>,
    provider: AwsCloudProvider,
}

fn setup() -> Setup {
    let ec2 = Arc::new(InMemoryEc2::new().with_catalog("us-east-1"));
    let tags = BTreeMap::from([("karpenter.sh/discovery".to_string(), "c1".to_string())]);
    for zone in ["us-east-1a", "us-east-1b"] {
        ec2.add_subnet(Subnet {
            id: format!("subnet-{zone}"),
            zone: zone.to_string(),
            vpc_id: None,
            available_ip_address_count: 250,
            tags: tags.clone(),
        });
    }
    ec2.add_security_group(SecurityGroup {
        id: "sg-1".to_string(),
        name: None,
        vpc_id: None,
        tags: tags.clone(),
    });
    ec2.set_parameter(AL2_AMD64, "ami-al2");
    for zone in ["us-east-1a", "us-east-1b"] {
        ec2.set_spot_price("m5.large", zone, 0.035);
        ec2.set_spot_price("c5.large", zone, 0.040);
    }
    let clock = Arc::new(ManualClock::fixed());
    let settings = AwsSettings {
        cluster_name: "c1".to_string(),
        cluster_endpoint: "https://c1.example".to_string(),
        cluster_ca_bundle: None,
        kubernetes_version: "1.27".to_string(),
        region: "us-east-1".to_string(),
        prices: None,
    };
    let provider = AwsCloudProvider::new(settings, ec2.clone(), None, clock.clone());
    Setup {
        ec2,
        clock,
        provider,
    }
}

fn template() -> NodeTemplate {
    let selector = BTreeMap::from([("karpenter.sh/discovery".to_string(), "c1".to_string())]);
    NodeTemplate {
        subnet_selector: selector.clone(),
        security_group_selector: selector,
        ami_family: AmiFamily::Al2,
        ..Default::default()
    }
}

fn request(machine: &str) -> LaunchRequest {
    LaunchRequest {
        machine_name: machine.to_string(),
        machine_uid: format!("uid-{machine}"),
        provisioner_name: "default".to_string(),
        instance_types: vec!["m5.large".to_string(), "c5.large".to_string()],
        template: template(),
        ..Default::default()
    }
}

#[tokio::test]
async fn fleet_capacity_errors_launch_the_next_offering_and_expire_after_three_minutes() {
    let s = setup();
    for zone in ["us-east-1a", "us-east-1b"] {
        s.ec2.set_no_capacity("m5.large", zone, CapacityType::Spot);
    }
    let launched = s.provider.create(&request("a")).await.expect("launch");
    // One CreateFleet: EC2 skipped the overrides without capacity and launched the next one.
    assert_eq!(
        s.ec2
            .calls()
            .iter()
            .filter(|c| **c == "CreateFleet")
            .count(),
        1
    );
    assert_eq!(
        (launched.instance_type.as_str(), launched.capacity_type),
        ("c5.large", CapacityType::Spot)
    );
    let held = s.provider.unavailable_offerings().offerings();
    assert_eq!(held.len(), 2);
    assert!(
        held.iter()
            .all(|o| o.instance_type == "m5.large" && o.capacity_type == CapacityType::Spot)
    );

    // Held out: the next launch does not even ask for m5.large spot.
    s.ec2.clear_no_capacity();
    let next = s.provider.create(&request("b")).await.expect("launch");
    assert_eq!(next.instance_type, "c5.large");
    let last = s.ec2.fleet_requests().pop().expect("a fleet request");
    assert!(
        last.configs
            .iter()
            .flat_map(|c| &c.overrides)
            .all(|o| o.instance_type != "m5.large")
    );

    s.clock.advance(Duration::from_secs(180));
    let after = s.provider.create(&request("c")).await.expect("launch");
    assert_eq!(after.instance_type, "m5.large");
}

#[tokio::test]
async fn spot_without_capacity_anywhere_falls_back_to_on_demand_on_the_next_attempt() {
    let s = setup();
    for zone in ["us-east-1a", "us-east-1b"] {
        for instance_type in ["m5.large", "c5.large"] {
            s.ec2
                .set_no_capacity(instance_type, zone, CapacityType::Spot);
        }
    }
    let launched = s.provider.create(&request("a")).await.expect("launch");
    assert_eq!(launched.capacity_type, CapacityType::OnDemand);
    let tokens: Vec<String> = s
        .ec2
        .fleet_requests()
        .into_iter()
        .map(|r| r.client_token)
        .collect();
    assert_eq!(tokens, vec!["uid-a".to_string(), "uid-a-1".to_string()]);
}

#[tokio::test]
async fn a_full_subnet_is_held_out_and_another_zone_used() {
    let s = setup();
    s.ec2.set_subnet_full("subnet-us-east-1a");
    let launched = s.provider.create(&request("a")).await.expect("launch");
    assert_eq!(launched.zone, "us-east-1b");
    assert!(
        s.provider
            .unavailable_offerings()
            .is_subnet_full("subnet-us-east-1a")
    );
}

#[tokio::test]
async fn a_vanished_launch_template_is_created_again() {
    let s = setup();
    s.provider.create(&request("a")).await.expect("launch");
    let names = s.ec2.launch_template_names();
    assert_eq!(names.len(), 1);
    s.ec2
        .delete_launch_template(names[0].clone())
        .await
        .expect("delete behind its back");
    let launched = s.provider.create(&request("b")).await;
    assert!(launched.is_ok(), "{launched:?}");
    assert_eq!(s.ec2.launch_template_names(), names);
}

#[tokio::test]
async fn an_instance_not_yet_visible_is_still_returned_terminated_and_never_launched_twice() {
    let s = setup();
    s.ec2.hide_new_instances_for(3);
    let launched = s
        .provider
        .create(&request("a"))
        .await
        .expect("launch without describing");
    assert_eq!(launched.instance_type, "m5.large");
    assert_eq!(launched.zone, "us-east-1a");
    assert_eq!(launched.image_id.as_deref(), Some("ami-al2"));

    // A retried create cannot see it by tag, but the ClientToken returns the same instance.
    let again = s
        .provider
        .create(&request("a"))
        .await
        .expect("retried launch");
    assert_eq!(again.instance_id, launched.instance_id);
    assert_eq!(s.ec2.all_instances().len(), 1);

    let machine = MachineId::new("a", Some(launched.provider_id.clone()));
    assert!(
        s.provider
            .get(&machine)
            .await
            .expect_err("not visible yet")
            .is_not_found()
    );
    // Deleting terminates by id even while DescribeInstances cannot see it.
    assert_eq!(
        s.provider.delete(&machine).await.expect("delete"),
        DeleteStatus::Terminating
    );
    assert!(
        s.ec2
            .all_instances()
            .iter()
            .all(|i| i.state.is_going_away())
    );
}

#[tokio::test]
async fn the_embedded_catalog_stands_in_when_ec2_cannot_be_reached() {
    let s = setup();
    let unreachable = Ec2Error::transport("DescribeInstanceTypes", "connection refused");
    s.ec2.fail_next("DescribeInstanceTypes", unreachable, 1);
    let types = s
        .provider
        .instance_types(&template())
        .await
        .expect("embedded types");
    let calls = s.ec2.calls();
    assert!(calls.contains(&"DescribeInstanceTypes"));
    assert!(
        !calls.contains(&"DescribeInstanceTypeOfferings"),
        "EC2 failed before offerings"
    );
    let m5 = types
        .iter()
        .find(|t| t.name == "m5.large")
        .expect("m5.large");
    assert!(
        m5.offerings
            .iter()
            .all(|o| o.zone == "us-east-1a" || o.zone == "us-east-1b")
    );
    // Spot prices still come from EC2.
    assert!(m5.offerings.iter().any(|o| o.price_per_hour == Some(0.035)));
}

#[tokio::test]
async fn a_permanent_fleet_error_is_reported_with_its_code() {
    let s = setup();
    s.ec2.fail_next(
        "CreateFleet",
        Ec2Error::service("CreateFleet", "UnauthorizedOperation", "not allowed"),
        1,
    );
    let err = s.provider.create(&request("a")).await.expect_err("denied");
    assert_eq!(err.code(), Some("UnauthorizedOperation"));
    assert!(!err.is_retryable());
    assert!(s.ec2.all_instances().is_empty());
}

/// On-demand list prices as the Pricing API would return them.
struct ListPrices;

impl PricingApi for ListPrices {
    fn on_demand_prices(
        &self,
        region: String,
    ) -> BoxFuture<'_, Result<BTreeMap<String, f64>, Ec2Error>> {
        assert_eq!(region, "us-east-1");
        Box::pin(std::future::ready(Ok(BTreeMap::from([
            ("m5.large".to_string(), 0.096),
            ("c5.large".to_string(), 0.085),
        ]))))
    }
}

#[tokio::test]
async fn on_demand_launches_ask_for_the_cheapest_listed_type_first() {
    let s = setup();
    let settings = s.provider.settings().clone();
    let pricing: Arc<dyn PricingApi> = Arc::new(ListPrices);
    let provider = AwsCloudProvider::new(settings, s.ec2.clone(), Some(pricing), s.clock.clone());
    let types = provider.instance_types(&template()).await.expect("types");
    let price = |name: &str, capacity_type: CapacityType| {
        types
            .iter()
            .find(|t| t.name == name)
            .and_then(|t| {
                t.offerings
                    .iter()
                    .find(|o| o.capacity_type == capacity_type)
            })
            .and_then(|o| o.price_per_hour)
    };
    assert_eq!(price("m5.large", CapacityType::OnDemand), Some(0.096));
    assert_eq!(price("c5.large", CapacityType::OnDemand), Some(0.085));
    // Spot offerings keep the price DescribeSpotPriceHistory reported.
    assert_eq!(price("m5.large", CapacityType::Spot), Some(0.035));

    let mut on_demand = request("a");
    on_demand.capacity_types = [CapacityType::OnDemand].into();
    let launched = provider.create(&on_demand).await.expect("launch");
    assert_eq!(launched.instance_type, "c5.large");
    let order: Vec<String> = s.ec2.fleet_requests()[0].configs[0]
        .overrides
        .iter()
        .map(|o| o.instance_type.clone())
        .collect();
    assert_eq!(order, vec!["c5.large", "c5.large", "m5.large", "m5.large"]);
}
