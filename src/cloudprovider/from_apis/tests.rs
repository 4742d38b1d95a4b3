use serde_json::json;

use super::*;

fn template_spec(value: serde_json::Value) -> AwsNodeTemplateSpec {
    serde_json::from_value(value).expect("a valid AWSNodeTemplate spec")
}

fn machine(value: serde_json::Value) -> Machine {
    serde_json::from_value(value).expect("a valid Machine")
}

#[test]
fn a_node_template_spec_becomes_launch_settings() {
    let spec = template_spec(json!({
        "subnetSelector": {"karpenter.sh/discovery": "my-cluster"},
        "securityGroupSelector": {"aws-ids": "sg-1,sg-2"},
        "instanceProfile": "KarpenterNodeInstanceProfile-my-cluster",
        "amiFamily": "Bottlerocket",
        "amiSelector": {"aws::name": "my-ami-*"},
        "userData": "[settings.kubernetes]\n",
        "tags": {"team": "ml"},
        "blockDeviceMappings": [{"deviceName": "/dev/xvdb",
            "ebs": {"volumeSize": "100Gi", "volumeType": "gp3", "encrypted": true}}],
        "metadataOptions": {"httpTokens": "optional"},
        "detailedMonitoring": true
    }));
    let template = NodeTemplate::from_spec(&spec).expect("converts");
    assert_eq!(template.ami_family, AmiFamily::Bottlerocket);
    assert_eq!(
        template.subnet_selector["karpenter.sh/discovery"],
        "my-cluster"
    );
    assert_eq!(template.security_group_selector["aws-ids"], "sg-1,sg-2");
    assert_eq!(template.ami_selector["aws::name"], "my-ami-*");
    assert_eq!(
        template.user_data.as_deref(),
        Some("[settings.kubernetes]\n")
    );
    assert!(template.detailed_monitoring);
    let disk = &template.block_device_mappings[0];
    assert_eq!(disk.device_name, "/dev/xvdb");
    // 100Gi = 107.4 GB, rounded up.
    assert_eq!(disk.volume_size_gib, Some(108));
    assert_eq!(disk.volume_type.as_deref(), Some("gp3"));
    assert_eq!(disk.encrypted, Some(true));
    // Only httpTokens was set: the rest keeps Karpenter's defaults.
    assert!(!template.metadata_options.http_tokens_required);
    assert_eq!(template.metadata_options.http_put_response_hop_limit, 2);
}

#[test]
fn windows_families_are_refused() {
    let spec = template_spec(json!({"amiFamily": "Windows2022"}));
    assert!(matches!(
        NodeTemplate::from_spec(&spec),
        Err(CloudProviderError::InvalidConfiguration(_))
    ));
    let defaulted = template_spec(json!({}));
    assert_eq!(
        NodeTemplate::from_spec(&defaulted)
            .map(|t| t.ami_family)
            .ok(),
        Some(AmiFamily::Al2)
    );
}

fn launched_machine(requirements: serde_json::Value) -> Machine {
    machine(json!({
        "apiVersion": "karpenter.sh/v1alpha5",
        "kind": "Machine",
        "metadata": {"name": "default-x7k2p", "uid": "0d4f5c2e-1111-4222-8333-444455556666",
                      "labels": {"karpenter.sh/provisioner-name": "default", "team": "ml"}},
        "spec": {
            "requirements": requirements,
            "taints": [{"key": "dedicated", "value": "ml", "effect": "NoSchedule"}],
            "kubelet": {"maxPods": 58, "systemReserved": {"cpu": "100m"}},
            "machineTemplateRef": {"name": "default"}
        },
        "status": {"providerID": "aws:///us-east-1a/i-0abc"}
    }))
}

#[test]
fn a_machine_becomes_a_launch_request() {
    let m = launched_machine(json!([
        {"key": "node.kubernetes.io/instance-type", "operator": "In", "values": ["m5.large", "c5.large", "r5.large"]},
        {"key": "node.kubernetes.io/instance-type", "operator": "NotIn", "values": ["r5.large"]},
        {"key": "topology.kubernetes.io/zone", "operator": "In", "values": ["us-east-1a"]},
        {"key": "karpenter.sh/capacity-type", "operator": "In", "values": ["spot", "on-demand"]},
        {"key": "kubernetes.io/arch", "operator": "In", "values": ["amd64"]}
    ]));
    let request = LaunchRequest::from_machine(&m, NodeTemplate::default()).expect("converts");
    assert_eq!(request.machine_name, "default-x7k2p");
    assert_eq!(request.machine_uid, "0d4f5c2e-1111-4222-8333-444455556666");
    assert_eq!(request.provisioner_name, "default");
    assert_eq!(request.instance_types, vec!["c5.large", "m5.large"]);
    assert_eq!(request.zones, BTreeSet::from(["us-east-1a".to_string()]));
    assert_eq!(
        request.capacity_types,
        BTreeSet::from([CapacityType::Spot, CapacityType::OnDemand])
    );
    assert_eq!(request.node.labels["team"], "ml");
    assert_eq!(request.node.taints[0].key, "dedicated");
    assert_eq!(request.node.kubelet.max_pods, Some(58));
    assert_eq!(request.node.kubelet.system_reserved["cpu"], "100m");
    assert_eq!(
        MachineId::from(&m),
        MachineId::new(
            "default-x7k2p",
            Some("aws:///us-east-1a/i-0abc".to_string())
        )
    );
}

#[test]
fn requirements_that_leave_nothing_are_refused() {
    let no_types = launched_machine(json!([
        {"key": "kubernetes.io/arch", "operator": "In", "values": ["amd64"]}
    ]));
    assert!(LaunchRequest::from_machine(&no_types, NodeTemplate::default()).is_err());
    let no_zone = launched_machine(json!([
        {"key": "node.kubernetes.io/instance-type", "operator": "In", "values": ["m5.large"]},
        {"key": "topology.kubernetes.io/zone", "operator": "In", "values": ["us-east-1a"]},
        {"key": "topology.kubernetes.io/zone", "operator": "NotIn", "values": ["us-east-1a"]}
    ]));
    assert!(LaunchRequest::from_machine(&no_zone, NodeTemplate::default()).is_err());
    let unknown_capacity = launched_machine(json!([
        {"key": "node.kubernetes.io/instance-type", "operator": "In", "values": ["m5.large"]},
        {"key": "karpenter.sh/capacity-type", "operator": "In", "values": ["reserved"]}
    ]));
    assert!(LaunchRequest::from_machine(&unknown_capacity, NodeTemplate::default()).is_err());
}
