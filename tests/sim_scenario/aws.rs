//! `--cloud aws`: the simulation launches through the real AWS provider against moto, and the
//! simulated kubelets register the instances they find there.

use nodewright::sim::scenario::{
    AwsSimOptions, CloudKind, ControllerHook, ControllerParts, OutputFormat, SimulationOptions,
};
use nodewright_scheduling::instance_type::CapacityType;

use crate::aws_support::{Env, KUBERNETES_VERSION, moto};
use crate::{dir_with, load, options, simulate};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_aws_cloud_an_instance_in_ec2_becomes_a_managed_node() {
    let env = Env::new("sim-scenario").await;
    let request = env.request("m1", &["m5.large"], &[CapacityType::OnDemand]);
    let hook: ControllerHook = Box::new(move |parts: ControllerParts| {
        Box::pin(async move {
            assert!(parts.aws.is_some(), "the AWS provider is handed over");
            parts
                .cloud
                .create(&request)
                .await
                .expect("a launch in moto");
            parts.stopped().await;
        })
    });
    let dir = dir_with(&[(
        "scenario.yaml",
        "steps:\n  - until: {managedNodes: 1, timeout: 30m}\n",
    )]);
    let options = SimulationOptions {
        cloud: CloudKind::Aws,
        aws: AwsSimOptions {
            cluster_name: env.cluster.clone(),
            kubernetes_version: KUBERNETES_VERSION.to_string(),
            endpoint_url: Some(moto::endpoint().to_string()),
        },
        // moto answers in real seconds when busy (the other test here fetches its whole
        // instance catalog): a slower clock keeps the 30 m timeout about EC2, not latency.
        ..options(20.0, OutputFormat::Json)
    };
    let (report, printed) = simulate(load(&dir.join("scenario.yaml")), options, Some(hook)).await;
    assert_eq!(report.exit_code(), 0, "{printed}");
    assert_eq!(report.launched, 1, "{printed}");
    let node = &report.nodes[0];
    assert_eq!(node.instance_type.as_deref(), Some("m5.large"));
    assert_eq!(node.capacity_type.as_deref(), Some("on-demand"));
    assert_eq!(node.provisioner.as_deref(), Some("default"));
    assert!(
        node.zone
            .as_deref()
            .is_some_and(|z| z.starts_with("us-east-1")),
        "{node:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_controller_provisions_through_ec2_and_removes_the_empty_node() {
    let env = Env::new("sim-controller").await;
    let provisioner = format!(
        "apiVersion: karpenter.sh/v1alpha5
kind: Provisioner
metadata: {{name: default}}
spec:
  requirements:
    - {{key: karpenter.sh/capacity-type, operator: In, values: [on-demand]}}
    - {{key: node.kubernetes.io/instance-type, operator: In, values: [m5.large, m5.xlarge]}}
  provider:
    subnetSelector: {{karpenter.sh/discovery: {cluster}}}
    securityGroupSelector: {{karpenter.sh/discovery: {cluster}}}
    instanceProfile: KarpenterNodeInstanceProfile-{cluster}
  ttlSecondsAfterEmpty: 30
",
        cluster = env.cluster
    );
    let dir = dir_with(&[
        ("provisioner.yaml", provisioner.as_str()),
        (
            "deployment.yaml",
            include_str!("../../examples/tutorial/deployment.yaml"),
        ),
        (
            "scenario.yaml",
            "steps:
  - apply: provisioner.yaml
  - apply: deployment.yaml
  - scale: {deployment: inflate, namespace: default, replicas: 1}
  - until: {podsRunning: 1, managedNodes: 1, timeout: 60m}
  - scale: {deployment: inflate, namespace: default, replicas: 0}
  - until: {managedNodes: 0, timeout: 60m}
",
        ),
    ]);
    let options = SimulationOptions {
        cloud: CloudKind::Aws,
        aws: AwsSimOptions {
            cluster_name: env.cluster.clone(),
            kubernetes_version: KUBERNETES_VERSION.to_string(),
            endpoint_url: Some(moto::endpoint().to_string()),
        },
        // moto's first DescribeInstanceTypes takes real seconds that no clock speeds up: a slower
        // clock and a long simulated timeout keep this about EC2's answers, not its latency.
        ..options(20.0, OutputFormat::Json)
    };
    let (report, printed) = simulate(
        load(&dir.join("scenario.yaml")),
        options,
        Some(nodewright::sim::scenario::controller_hook()),
    )
    .await;
    assert_eq!(report.exit_code(), 0, "{printed}");
    assert_eq!(report.launched, 1, "one instance bought in EC2: {printed}");
    assert_eq!(report.terminated, 1, "and terminated once empty: {printed}");
    let provider = env.provider().await;
    let live = nodewright::cloudprovider::CloudProvider::list(&provider)
        .await
        .expect("moto lists");
    assert!(live.is_empty(), "no instance left running: {live:?}");
}
