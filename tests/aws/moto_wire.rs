//! Every call the provider makes, against moto.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_ec2::types::{Filter, Tag};
use base64::Engine;
use nodewright::cloudprovider::aws::ami::{Accelerator, AmiResolver, Arch, ImageVariant};
use nodewright::cloudprovider::aws::sdk::load_config;
use nodewright::cloudprovider::aws::{Ec2Api, SdkEc2};
use nodewright::cloudprovider::{
    AmiFamily, CloudProvider, CloudProviderError, DeleteStatus, MachineId, ManualClock,
};
use nodewright_scheduling::instance_type::CapacityType;

use crate::support::{DISCOVERY_TAG, Env, KUBERNETES_VERSION, moto, sdk_settings};

fn variant(arch: Arch, accelerator: Accelerator) -> ImageVariant {
    ImageVariant { arch, accelerator }
}

async fn ssm_value(name: &str) -> String {
    let config = load_config(&sdk_settings(moto::endpoint())).await;
    aws_sdk_ssm::Client::new(&config)
        .get_parameter()
        .name(name)
        .send()
        .await
        .expect("seeded parameter")
        .parameter()
        .and_then(|p| p.value())
        .expect("parameter value")
        .to_string()
}

#[tokio::test]
async fn subnets_and_security_groups_are_found_by_tags_lists_wildcards_and_ids() {
    let env = Env::new("discovery").await;
    let provider = env.provider().await;
    let mut template = env.template();

    let resolved = provider.resolve_template(&template).await.expect("resolve");
    let zones: Vec<&str> = resolved.subnets.iter().map(|s| s.zone.as_str()).collect();
    assert_eq!(zones.len(), 2);
    assert!(zones.contains(&"us-east-1a") && zones.contains(&"us-east-1b"));
    let groups: Vec<&str> = resolved
        .security_groups
        .iter()
        .map(|g| g.id.as_str())
        .collect();
    assert_eq!(groups, vec![env.security_group.as_str()]);

    // A comma list of tag values and a wildcard (tag present, any value), combined.
    template.subnet_selector = BTreeMap::from([
        (
            "Name".to_string(),
            format!("{0}-us-east-1b, {0}-nowhere", env.cluster),
        ),
        (DISCOVERY_TAG.to_string(), "*".to_string()),
    ]);
    let resolved = provider.resolve_template(&template).await.expect("resolve");
    let ids: Vec<&str> = resolved.subnets.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(ids, vec![env.subnets[1].0.as_str()]);

    // By id.
    template.subnet_selector = BTreeMap::from([("aws-ids".to_string(), env.subnets[0].0.clone())]);
    template.security_group_selector =
        BTreeMap::from([("aws-ids".to_string(), env.security_group.clone())]);
    let resolved = provider.resolve_template(&template).await.expect("resolve");
    assert_eq!(resolved.subnets.len(), 1);
    assert_eq!(resolved.subnets[0].zone, "us-east-1a");
    assert_eq!(resolved.security_groups.len(), 1);

    // Nothing matches: a configuration error, not an empty launch.
    template.subnet_selector =
        BTreeMap::from([(DISCOVERY_TAG.to_string(), "no-such-cluster".to_string())]);
    let err = provider
        .resolve_template(&template)
        .await
        .expect_err("no subnets");
    assert!(
        matches!(err, CloudProviderError::InvalidConfiguration(_)),
        "{err}"
    );
}

#[tokio::test]
async fn family_images_come_from_the_public_ssm_parameters() {
    let config = load_config(&sdk_settings(moto::endpoint())).await;
    let ec2: Arc<dyn Ec2Api> = Arc::new(SdkEc2::new(&config));
    let amis = AmiResolver::new(
        ec2,
        Arc::new(ManualClock::fixed()),
        Duration::from_secs(300),
    );
    let all = BTreeSet::from([
        variant(Arch::Amd64, Accelerator::None),
        variant(Arch::Arm64, Accelerator::None),
        variant(Arch::Amd64, Accelerator::Nvidia),
        variant(Arch::Arm64, Accelerator::Nvidia),
    ]);
    let none = BTreeMap::new();
    let v = KUBERNETES_VERSION;

    let al2 = amis
        .resolve(AmiFamily::Al2, &none, v, &all)
        .await
        .expect("AL2");
    let eks = format!("/aws/service/eks/optimized-ami/{v}");
    assert_eq!(
        al2[&variant(Arch::Amd64, Accelerator::None)].id,
        ssm_value(&format!("{eks}/amazon-linux-2/recommended/image_id")).await
    );
    assert_eq!(
        al2[&variant(Arch::Arm64, Accelerator::None)].id,
        ssm_value(&format!("{eks}/amazon-linux-2-arm64/recommended/image_id")).await
    );
    assert_eq!(
        al2[&variant(Arch::Amd64, Accelerator::Nvidia)].id,
        ssm_value(&format!("{eks}/amazon-linux-2-gpu/recommended/image_id")).await
    );
    // AL2 publishes no arm64 GPU image, so those types are not launched with AL2.
    assert!(!al2.contains_key(&variant(Arch::Arm64, Accelerator::Nvidia)));

    let rocket = amis
        .resolve(AmiFamily::Bottlerocket, &none, v, &all)
        .await
        .expect("Bottlerocket");
    assert_eq!(
        rocket[&variant(Arch::Arm64, Accelerator::Nvidia)].id,
        ssm_value(&format!(
            "/aws/service/bottlerocket/aws-k8s-{v}-nvidia/arm64/latest/image_id"
        ))
        .await
    );
    assert_eq!(rocket.len(), 4);

    let ubuntu = amis
        .resolve(AmiFamily::Ubuntu, &none, v, &all)
        .await
        .expect("Ubuntu");
    assert_eq!(
        ubuntu[&variant(Arch::Arm64, Accelerator::None)].id,
        ssm_value(&format!(
            "/aws/service/canonical/ubuntu/eks/20.04/{v}/stable/current/arm64/hvm/ebs-gp2/ami-id"
        ))
        .await
    );

    // A version nobody published: no images, not an error.
    let future = amis
        .resolve(AmiFamily::Al2, &none, "9.99", &all)
        .await
        .expect("resolves");
    assert!(future.is_empty());
}

#[tokio::test]
async fn an_ami_selector_finds_tagged_images_per_architecture() {
    let env = Env::new("custom-ami").await;
    let tag = format!("{}-image", env.cluster);
    let mut copies = BTreeMap::new();
    for (arch, source) in [
        (
            "amd64",
            format!(
                "/aws/service/eks/optimized-ami/{KUBERNETES_VERSION}/amazon-linux-2/recommended/image_id"
            ),
        ),
        (
            "arm64",
            format!(
                "/aws/service/eks/optimized-ami/{KUBERNETES_VERSION}/amazon-linux-2-arm64/recommended/image_id"
            ),
        ),
    ] {
        let copied = env
            .ec2
            .copy_image()
            .source_image_id(ssm_value(&source).await)
            .source_region("us-east-1")
            .name(format!("{tag}-{arch}"))
            .send()
            .await
            .expect("copy image");
        let id = copied.image_id().expect("image id").to_string();
        env.ec2
            .create_tags()
            .resources(&id)
            .tags(Tag::builder().key("image-set").value(&tag).build())
            .send()
            .await
            .expect("tag image");
        copies.insert(arch, id);
    }
    let provider = env.provider().await;
    let mut template = env.template();
    template.ami_family = AmiFamily::Custom;
    template.ami_selector = BTreeMap::from([("image-set".to_string(), tag.clone())]);
    let resolved = provider.resolve_template(&template).await.expect("resolve");
    let found: BTreeMap<Arch, String> = resolved
        .images
        .iter()
        .map(|i| (i.variant.arch, i.id.clone()))
        .collect();
    assert_eq!(found.get(&Arch::Amd64), copies.get("amd64"));
    assert_eq!(found.get(&Arch::Arm64), copies.get("arm64"));

    // Custom without a selector cannot launch anything.
    template.ami_selector.clear();
    let err = provider
        .resolve_template(&template)
        .await
        .expect_err("needs a selector");
    assert!(
        matches!(err, CloudProviderError::InvalidConfiguration(_)),
        "{err}"
    );
}

async fn cluster_launch_templates(env: &Env) -> Vec<String> {
    let out = env
        .ec2
        .describe_launch_templates()
        .filters(
            Filter::builder()
                .name(format!("tag:kubernetes.io/cluster/{}", env.cluster))
                .values("owned")
                .build(),
        )
        .send()
        .await
        .expect("describe launch templates");
    out.launch_templates()
        .iter()
        .filter_map(|t| t.launch_template_name().map(str::to_string))
        .collect()
}

#[tokio::test]
async fn a_spot_launch_is_tagged_listed_and_terminated_idempotently() {
    let env = Env::new("spot").await;
    let provider = env.provider().await;

    let first = provider
        .create(&env.request("a", &["m5.large", "m5.xlarge"], &[]))
        .await
        .expect("launch");
    assert_eq!(first.capacity_type, CapacityType::Spot);
    assert_eq!(first.instance_type, "m5.large");
    assert_eq!(
        first.provider_id,
        format!("aws:///{}/{}", first.zone, first.instance_id)
    );
    assert_eq!(first.capacity.cpu_millis, 2000);
    assert_eq!(
        first
            .labels
            .get("karpenter.sh/capacity-type")
            .map(String::as_str),
        Some("spot")
    );
    assert_eq!(
        first.labels.get("topology.kubernetes.io/zone"),
        Some(&first.zone)
    );

    let tags = env.instance_tags(&first.instance_id).await;
    let machine = format!("{}-a", env.cluster);
    for (key, value) in [
        ("Name", machine.as_str()),
        (
            format!("kubernetes.io/cluster/{}", env.cluster).as_str(),
            "owned",
        ),
        ("karpenter.sh/managed-by", env.cluster.as_str()),
        ("karpenter.sh/provisioner-name", "default"),
        ("karpenter.sh/machine-name", machine.as_str()),
        ("team", "platform"),
    ] {
        assert_eq!(
            tags.get(key).map(String::as_str),
            Some(value),
            "tag {key} in {tags:?}"
        );
    }

    // A second machine with the same template reuses the launch template.
    let second = provider
        .create(&env.request("b", &["m5.large"], &[]))
        .await
        .expect("launch");
    assert_eq!(cluster_launch_templates(&env).await.len(), 1);

    let listed: Vec<String> = provider
        .list()
        .await
        .expect("list")
        .into_iter()
        .map(|i| i.instance_id)
        .collect();
    let mut expected = vec![first.instance_id.clone(), second.instance_id.clone()];
    expected.sort();
    assert_eq!(listed, expected);

    let id = MachineId::new(&machine, Some(first.provider_id.clone()));
    assert_eq!(
        provider.get(&id).await.expect("get").instance_id,
        first.instance_id
    );
    assert_eq!(
        provider.delete(&id).await.expect("delete"),
        DeleteStatus::Terminating
    );
    assert_eq!(
        provider.delete(&id).await.expect("delete again"),
        DeleteStatus::Gone
    );
    assert!(provider.get(&id).await.expect_err("gone").is_not_found());
    let listed = provider.list().await.expect("list");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].instance_id, second.instance_id);
}

#[tokio::test]
async fn on_demand_launches_into_the_allowed_zone_from_a_hashed_launch_template() {
    let env = Env::new("on-demand").await;
    let provider = env.provider().await;
    let mut request = env.request("a", &["c5.large"], &[CapacityType::OnDemand]);
    request.zones = BTreeSet::from(["us-east-1b".to_string()]);
    let launched = provider.create(&request).await.expect("launch");
    assert_eq!(launched.capacity_type, CapacityType::OnDemand);
    assert_eq!(launched.zone, "us-east-1b");
    assert_eq!(
        launched.subnet_id.as_deref(),
        Some(env.subnets[1].0.as_str())
    );

    let details = env
        .ec2
        .describe_instances()
        .instance_ids(&launched.instance_id)
        .send()
        .await
        .expect("describe");
    let instance = details.reservations()[0].instances()[0].clone();
    assert!(
        instance.instance_lifecycle().is_none(),
        "on-demand has no lifecycle"
    );

    // The launch template moto stored carries what nodewright asked for.
    let names = cluster_launch_templates(&env).await;
    assert_eq!(names.len(), 1);
    assert!(names[0].starts_with(&format!("nodewright/{}/", env.cluster)));
    let versions = env
        .ec2
        .describe_launch_template_versions()
        .launch_template_name(&names[0])
        .send()
        .await
        .expect("template versions");
    let data = versions.launch_template_versions()[0]
        .launch_template_data()
        .expect("template data")
        .clone();
    assert_eq!(data.image_id(), instance.image_id());
    assert_eq!(
        data.security_group_ids(),
        std::slice::from_ref(&env.security_group)
    );
    let metadata = data.metadata_options().expect("metadata options");
    assert_eq!(metadata.http_tokens().map(|t| t.as_str()), Some("required"));
    assert_eq!(metadata.http_put_response_hop_limit(), Some(2));
    let user_data = base64::engine::general_purpose::STANDARD
        .decode(data.user_data().expect("user data"))
        .expect("base64 user data");
    let user_data = String::from_utf8(user_data).expect("utf-8 user data");
    assert!(user_data.starts_with("MIME-Version: 1.0"));
    assert!(user_data.contains(&format!("/etc/eks/bootstrap.sh '{}'", env.cluster)));
}

#[tokio::test]
async fn a_retried_create_adopts_the_instance_already_launched_for_the_machine() {
    let env = Env::new("retry").await;
    let provider = env.provider().await;
    let request = env.request("a", &["m5.large"], &[CapacityType::OnDemand]);
    let first = provider.create(&request).await.expect("launch");
    let again = provider.create(&request).await.expect("relaunch");
    assert_eq!(first.instance_id, again.instance_id);
    assert_eq!(env.live_instances_of("a").await, vec![first.instance_id]);
}

#[tokio::test]
async fn instance_types_come_from_ec2_offered_in_the_template_zones_with_spot_prices() {
    let env = Env::new("types").await;
    let provider = env.provider().await;
    let types = provider
        .instance_types(&env.template())
        .await
        .expect("instance types");
    assert!(
        types.len() > 100,
        "moto lists hundreds of types, got {}",
        types.len()
    );
    let m5 = types
        .iter()
        .find(|t| t.name == "m5.large")
        .expect("m5.large");
    assert_eq!(m5.capacity.cpu_millis, 2000);
    assert_eq!(m5.capacity.pods, 29);
    let zones: BTreeSet<&str> = m5.offerings.iter().map(|o| o.zone.as_str()).collect();
    assert_eq!(zones, BTreeSet::from(["us-east-1a", "us-east-1b"]));
    for offering in &m5.offerings {
        match offering.capacity_type {
            // moto's constant spot price, read through DescribeSpotPriceHistory.
            CapacityType::Spot => assert_eq!(offering.price_per_hour, Some(0.00001)),
            // No Pricing API here (as in an isolated VPC): the embedded list price.
            CapacityType::OnDemand => assert_eq!(offering.price_per_hour, Some(0.096)),
        }
        assert!(offering.available);
    }
    // AL2 has no arm64 GPU image, so arm64 GPU types are not offered with it.
    assert!(types.iter().all(|t| t.name != "g5g.xlarge"));
}

#[tokio::test]
async fn unused_launch_templates_are_deleted_after_an_hour() {
    let env = Env::new("lt-gc").await;
    let clock = Arc::new(ManualClock::fixed());
    let provider = env.provider_at(moto::endpoint(), clock.clone()).await;
    let launched = provider
        .create(&env.request("a", &["m5.large"], &[CapacityType::OnDemand]))
        .await
        .expect("launch");
    assert_eq!(cluster_launch_templates(&env).await.len(), 1);

    clock.advance(Duration::from_secs(59 * 60));
    assert!(
        provider
            .delete_unused_launch_templates()
            .await
            .expect("gc")
            .is_empty()
    );
    clock.advance(Duration::from_secs(60));
    let deleted = provider.delete_unused_launch_templates().await.expect("gc");
    assert_eq!(deleted.len(), 1);
    assert!(cluster_launch_templates(&env).await.is_empty());

    // The next launch creates it again.
    provider
        .delete(&MachineId::new("a", Some(launched.provider_id)))
        .await
        .expect("delete");
    provider
        .create(&env.request("b", &["m5.large"], &[CapacityType::OnDemand]))
        .await
        .expect("launch");
    assert_eq!(cluster_launch_templates(&env).await, deleted);
}

#[tokio::test]
async fn bottlerocket_nodes_get_toml_settings_in_their_launch_template() {
    let env = Env::new("rocket").await;
    let provider = env.provider().await;
    let mut request = env.request("a", &["m6g.large"], &[CapacityType::OnDemand]);
    request.template.ami_family = AmiFamily::Bottlerocket;
    request.template.user_data = Some("[settings.host-containers.admin]\nenabled = true\n".into());
    let launched = provider.create(&request).await.expect("launch");
    let expected = ssm_value(&format!(
        "/aws/service/bottlerocket/aws-k8s-{KUBERNETES_VERSION}/arm64/latest/image_id"
    ))
    .await;
    assert_eq!(launched.image_id.as_deref(), Some(expected.as_str()));
    let names = cluster_launch_templates(&env).await;
    let versions = env
        .ec2
        .describe_launch_template_versions()
        .launch_template_name(&names[0])
        .send()
        .await
        .expect("template versions");
    let encoded = versions.launch_template_versions()[0]
        .launch_template_data()
        .and_then(|d| d.user_data())
        .expect("user data")
        .to_string();
    let toml = String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .expect("base64"),
    )
    .expect("utf-8");
    assert!(toml.contains("[settings.host-containers.admin]"));
    assert!(toml.contains(&format!("cluster-name = \"{}\"", env.cluster)));
}

/// The status an AWSNodeTemplate gets: its subnets with their zones, its security groups, and
/// each image with the instance types it serves (architecture; GPU or not).
#[tokio::test]
async fn a_templates_status_is_what_its_selectors_resolve_to_in_ec2() {
    use nodewright::cloudprovider::CloudProvider;

    let env = Env::new("template-status").await;
    let provider = env.provider().await;
    let status = provider
        .template_status(&env.template())
        .await
        .expect("the template resolves");
    let mut zones: Vec<&str> = status.subnets.iter().map(|s| s.zone.as_str()).collect();
    zones.sort_unstable();
    assert_eq!(zones, ["us-east-1a", "us-east-1b"]);
    assert_eq!(
        status
            .security_groups
            .iter()
            .map(|g| g.id.as_str())
            .collect::<Vec<_>>(),
        [env.security_group.as_str()]
    );
    let standard_amd64 = status.amis.iter().find(|ami| {
        let has = |key: &str, operator: &str, value: Option<&str>| {
            ami.requirements.iter().any(|r| {
                r.key == key
                    && r.operator == operator
                    && value
                        .is_none_or(|v| r.values.as_deref().unwrap_or(&[]).iter().any(|x| x == v))
            })
        };
        has("kubernetes.io/arch", "In", Some("amd64"))
            && has("karpenter.k8s.aws/instance-gpu-count", "DoesNotExist", None)
    });
    assert!(standard_amd64.is_some(), "{:?}", status.amis);
}
