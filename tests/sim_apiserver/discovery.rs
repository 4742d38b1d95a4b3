//! Discovery, version, CRDs, kubeconfig and the request log.

use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ListParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::discovery::{Discovery, Scope};
use serde_json::json;

use crate::support::{client, create_pod, pod, server};

#[tokio::test]
async fn discovery_serves_core_apps_policy_coordination_and_karpenter_groups() {
    let server = server().await;
    let discovery = Discovery::new(client(&server))
        .run()
        .await
        .expect("discovery runs");
    let groups: Vec<String> = discovery
        .groups()
        .map(|group| group.name().to_string())
        .collect();
    for wanted in [
        "",
        "apps",
        "policy",
        "coordination.k8s.io",
        "karpenter.sh",
        "karpenter.k8s.aws",
    ] {
        assert!(
            groups.iter().any(|group| group == wanted),
            "{wanted:?} in {groups:?}"
        );
    }
    let provisioners = discovery
        .get("karpenter.sh")
        .and_then(|group| {
            group
                .recommended_resources()
                .into_iter()
                .find(|(resource, _)| resource.plural == "provisioners")
        })
        .expect("provisioners are discovered");
    assert_eq!(provisioners.0.version, "v1alpha5");
    assert_eq!(provisioners.1.scope, Scope::Cluster);
    assert!(
        provisioners
            .1
            .subresources
            .iter()
            .any(|(sub, _)| sub.plural == "status")
    );
}

#[tokio::test]
async fn apiserver_version_is_reported() {
    let server = server().await;
    let info = client(&server)
        .apiserver_version()
        .await
        .expect("a version");
    assert_eq!((info.major.as_str(), info.minor.as_str()), ("1", "34"));
}

#[tokio::test]
async fn project_crds_are_stored_and_established() {
    let server = server().await;
    let crds: Api<CustomResourceDefinition> = Api::all(client(&server));
    let names: Vec<String> = crds
        .list(&ListParams::default())
        .await
        .expect("listed")
        .items
        .into_iter()
        .filter_map(|crd| crd.metadata.name)
        .collect();
    assert_eq!(
        names,
        [
            "awsnodetemplates.karpenter.k8s.aws",
            "machines.karpenter.sh",
            "provisioners.karpenter.sh"
        ]
    );
    let provisioners = crds
        .get("provisioners.karpenter.sh")
        .await
        .expect("the CRD");
    let established = provisioners
        .status
        .and_then(|status| status.conditions)
        .unwrap_or_default()
        .into_iter()
        .any(|condition| condition.type_ == "Established" && condition.status == "True");
    assert!(established);
}

#[tokio::test]
async fn kubeconfig_file_points_a_client_at_the_server() {
    let server = server().await;
    let path = std::env::temp_dir().join(format!(
        "nodewright-sim-{}.kubeconfig",
        server.address().port()
    ));
    server.write_kubeconfig(&path).expect("written");
    let kubeconfig = Kubeconfig::read_from(&path).expect("a kubeconfig");
    let _ = std::fs::remove_file(&path);
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("a config");
    assert_eq!(config.default_namespace, "default");
    let client = kube::Client::try_from(config).expect("a client");
    let namespaces: Api<Namespace> = Api::all(client);
    assert!(namespaces.get("kube-system").await.is_ok());
}

#[tokio::test]
async fn request_log_records_verbs_resources_and_statuses() {
    let server = server().await;
    let pods: Api<Pod> = Api::default_namespaced(client(&server));
    create_pod(&pods, pod("web", json!({}))).await;
    let _ = pods.get("missing").await;
    pods.list(&ListParams::default()).await.expect("listed");
    let log: Vec<(String, String, Option<String>, u16)> = server
        .requests()
        .into_iter()
        .map(|record| (record.verb, record.resource, record.name, record.status))
        .collect();
    assert_eq!(
        log,
        [
            ("create".into(), "pods".into(), None, 201),
            ("get".into(), "pods".into(), Some("missing".into()), 404),
            ("list".into(), "pods".into(), None, 200),
        ]
    );
}

#[tokio::test]
async fn shutdown_ends_watches_and_stops_listening() {
    use futures::StreamExt;
    use kube::api::WatchParams;

    let server = server().await;
    let pods: Api<Pod> = Api::default_namespaced(client(&server));
    let stream = pods
        .watch(&WatchParams::default(), "0")
        .await
        .expect("watching");
    let address = server.address();
    tokio::time::timeout(crate::support::PATIENCE, server.shutdown())
        .await
        .expect("shutdown finishes")
        .expect("a clean shutdown");
    let rest = tokio::time::timeout(crate::support::PATIENCE, stream.collect::<Vec<_>>())
        .await
        .expect("the watch ends");
    assert!(rest.is_empty());
    assert!(
        tokio::net::TcpStream::connect(address).await.is_err(),
        "nothing listens any more"
    );
}
