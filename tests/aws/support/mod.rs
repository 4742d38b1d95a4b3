//! Shared fixtures: a moto server for the whole binary, and per test its own cluster name, VPC,
//! subnets and security group, so tests run in parallel against one server.

pub mod moto;
pub mod proxy;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use aws_sdk_ec2::types::{ResourceType, Tag, TagSpecification};
use nodewright::cloudprovider::aws::sdk::{SdkSettings, load_config};
use nodewright::cloudprovider::aws::{AwsCloudProvider, AwsSettings, Ec2Api, SdkEc2};
use nodewright::cloudprovider::{
    AmiFamily, Clock, LaunchRequest, NodeSettings, NodeTemplate, SystemClock,
};
use nodewright_scheduling::instance_type::CapacityType;

pub const REGION: &str = "us-east-1";
pub const DISCOVERY_TAG: &str = "karpenter.sh/discovery";
pub const KUBERNETES_VERSION: &str = "1.27";

/// Fast retries, so throttling tests do not wait seconds.
pub fn sdk_settings(endpoint: &str) -> SdkSettings {
    SdkSettings {
        region: Some(REGION.to_string()),
        endpoint_url: Some(endpoint.to_string()),
        static_credentials: Some(("testing".to_string(), "testing".to_string())),
        max_attempts: 3,
        initial_backoff: Duration::from_millis(1),
        max_backoff: Duration::from_millis(20),
        attempt_timeout: Duration::from_secs(30),
    }
}

/// One test's slice of moto.
pub struct Env {
    /// EC2 straight to moto, for setting up and checking.
    pub ec2: aws_sdk_ec2::Client,
    pub cluster: String,
    /// `(subnet id, zone)`, us-east-1a then us-east-1b.
    pub subnets: Vec<(String, String)>,
    pub security_group: String,
}

fn unique(prefix: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

fn tags(kind: ResourceType, pairs: &[(&str, &str)]) -> TagSpecification {
    TagSpecification::builder()
        .resource_type(kind)
        .set_tags(Some(
            pairs
                .iter()
                .map(|(k, v)| Tag::builder().key(*k).value(*v).build())
                .collect(),
        ))
        .build()
}

impl Env {
    /// A VPC with a subnet in us-east-1a and us-east-1b and a security group, all tagged
    /// `karpenter.sh/discovery: <cluster>`.
    pub async fn new(prefix: &str) -> Env {
        let config = load_config(&sdk_settings(moto::endpoint())).await;
        let ec2 = aws_sdk_ec2::Client::new(&config);
        let cluster = unique(prefix);
        let vpc = ec2
            .create_vpc()
            .cidr_block("10.0.0.0/16")
            .send()
            .await
            .expect("create VPC");
        let vpc_id = vpc
            .vpc()
            .and_then(|v| v.vpc_id())
            .expect("VPC id")
            .to_string();
        let mut subnets = Vec::new();
        for (cidr, zone) in [("10.0.1.0/24", "us-east-1a"), ("10.0.2.0/24", "us-east-1b")] {
            let subnet = ec2
                .create_subnet()
                .vpc_id(&vpc_id)
                .cidr_block(cidr)
                .availability_zone(zone)
                .tag_specifications(tags(
                    ResourceType::Subnet,
                    &[
                        (DISCOVERY_TAG, &cluster),
                        ("Name", &format!("{cluster}-{zone}")),
                    ],
                ))
                .send()
                .await
                .expect("create subnet");
            let id = subnet
                .subnet()
                .and_then(|s| s.subnet_id())
                .expect("subnet id");
            subnets.push((id.to_string(), zone.to_string()));
        }
        let group = ec2
            .create_security_group()
            .group_name(format!("{cluster}-nodes"))
            .description("nodes")
            .vpc_id(&vpc_id)
            .tag_specifications(tags(
                ResourceType::SecurityGroup,
                &[(DISCOVERY_TAG, &cluster)],
            ))
            .send()
            .await
            .expect("create security group");
        let security_group = group.group_id().expect("group id").to_string();
        Env {
            ec2,
            cluster,
            subnets,
            security_group,
        }
    }

    pub fn settings(&self) -> AwsSettings {
        AwsSettings {
            cluster_name: self.cluster.clone(),
            cluster_endpoint: "https://ABCDEF.gr7.us-east-1.eks.amazonaws.com".to_string(),
            cluster_ca_bundle: Some("Q0EtREFUQQ==".to_string()),
            kubernetes_version: KUBERNETES_VERSION.to_string(),
            region: REGION.to_string(),
            prices: None,
        }
    }

    /// The provider talking to `endpoint` (moto, or a proxy in front of it) with `clock`.
    pub async fn provider_at(&self, endpoint: &str, clock: Arc<dyn Clock>) -> AwsCloudProvider {
        let config = load_config(&sdk_settings(endpoint)).await;
        let ec2: Arc<dyn Ec2Api> = Arc::new(SdkEc2::new(&config));
        AwsCloudProvider::new(self.settings(), ec2, None, clock)
    }

    pub async fn provider(&self) -> AwsCloudProvider {
        self.provider_at(moto::endpoint(), Arc::new(SystemClock))
            .await
    }

    /// The tutorial's node template: everything found by the discovery tag, AL2.
    pub fn template(&self) -> NodeTemplate {
        let selector = BTreeMap::from([(DISCOVERY_TAG.to_string(), self.cluster.clone())]);
        NodeTemplate {
            subnet_selector: selector.clone(),
            security_group_selector: selector,
            instance_profile: Some(format!("KarpenterNodeInstanceProfile-{}", self.cluster)),
            ami_family: AmiFamily::Al2,
            tags: BTreeMap::from([("team".to_string(), "platform".to_string())]),
            ..Default::default()
        }
    }

    pub fn request(
        &self,
        machine: &str,
        types: &[&str],
        capacity: &[CapacityType],
    ) -> LaunchRequest {
        LaunchRequest {
            machine_name: format!("{}-{machine}", self.cluster),
            machine_uid: unique("uid"),
            provisioner_name: "default".to_string(),
            instance_types: types.iter().map(|t| t.to_string()).collect(),
            zones: BTreeSet::new(),
            capacity_types: capacity.iter().copied().collect(),
            template: self.template(),
            node: NodeSettings {
                labels: BTreeMap::from([(
                    "karpenter.sh/provisioner-name".to_string(),
                    "default".to_string(),
                )]),
                ..Default::default()
            },
        }
    }

    /// Tags of an instance, straight from moto.
    pub async fn instance_tags(&self, instance_id: &str) -> BTreeMap<String, String> {
        let out = self
            .ec2
            .describe_instances()
            .instance_ids(instance_id)
            .send()
            .await
            .expect("describe instance");
        out.reservations()
            .iter()
            .flat_map(|r| r.instances())
            .flat_map(|i| i.tags())
            .filter_map(|t| Some((t.key()?.to_string(), t.value()?.to_string())))
            .collect()
    }

    /// Instances tagged with this cluster's machine name `machine`, in any state but terminated.
    pub async fn live_instances_of(&self, machine: &str) -> Vec<String> {
        let out = self
            .ec2
            .describe_instances()
            .filters(
                aws_sdk_ec2::types::Filter::builder()
                    .name("tag:karpenter.sh/machine-name")
                    .values(format!("{}-{machine}", self.cluster))
                    .build(),
            )
            .send()
            .await
            .expect("describe instances");
        out.reservations()
            .iter()
            .flat_map(|r| r.instances())
            .filter(|i| i.state().and_then(|s| s.name()).map(|n| n.as_str()) != Some("terminated"))
            .filter_map(|i| i.instance_id().map(str::to_string))
            .collect()
    }
}
