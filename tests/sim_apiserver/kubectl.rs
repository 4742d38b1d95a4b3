//! kubectl against the simulated server: get, describe, create -f, scale and delete.

use std::path::PathBuf;
use std::process::Command;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::Resource;
use kube::api::{Api, PostParams};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use nodewright::apis::Provisioner;
use serde_json::json;

use crate::support::{api_error, client, create_pod, immediate, pod, server_with};

/// Runs kubectl and returns its stdout; fails the test with stderr when kubectl fails.
async fn kubectl(args: Vec<String>) -> String {
    let shown = args.join(" ");
    let output = tokio::task::spawn_blocking(move || Command::new("kubectl").args(&args).output())
        .await
        .expect("the kubectl task")
        .unwrap_or_else(|error| panic!("kubectl must be installed and on PATH ({error})"));
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    assert!(
        output.status.success(),
        "kubectl {shown} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// kubectl's flags for the server: its kubeconfig (so no user kubeconfig's credentials or
/// context apply) and, explicitly, its address.
struct Target {
    kubeconfig: PathBuf,
    url: String,
}

impl Target {
    fn args(&self, args: &[&str]) -> Vec<String> {
        let mut all = vec![
            "--kubeconfig".to_string(),
            self.kubeconfig.display().to_string(),
            "--server".to_string(),
            self.url.clone(),
        ];
        all.extend(args.iter().map(|arg| arg.to_string()));
        all
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.kubeconfig);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_gets_describes_creates_scales_and_deletes() {
    let server = server_with(immediate).await;
    let kubeconfig = std::env::temp_dir().join(format!(
        "nodewright-kubectl-{}.kubeconfig",
        server.address().port()
    ));
    server.write_kubeconfig(&kubeconfig).expect("a kubeconfig");
    let target = Target {
        kubeconfig,
        url: server.url(),
    };
    let client = client(&server);
    let nodes: Api<Node> = Api::all(client.clone());
    let node: Node = serde_json::from_value(json!({"metadata": {"name": "node-1"},
        "status": {"conditions": [{"type": "Ready", "status": "True"}]}}))
    .expect("a node");
    nodes
        .create(&PostParams::default(), &node)
        .await
        .expect("node created");
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    create_pod(&pods, pod("web", json!({"app": "web"}))).await;
    let deployments: Api<Deployment> = Api::default_namespaced(client.clone());
    let deployment: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "inflate"},
        "spec": {"replicas": 0, "selector": {"matchLabels": {"app": "inflate"}},
            "template": {"metadata": {"labels": {"app": "inflate"}},
                "spec": {"containers": [{"name": "inflate", "image": "pause:3.9"}]}}},
    }))
    .expect("a deployment");
    deployments
        .create(&PostParams::default(), &deployment)
        .await
        .expect("created");

    let manifest =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/tutorial/provisioner.yaml");
    let manifest = manifest.display().to_string();
    // No --validate=false: the OpenAPI index tells kubectl the server validates fields.
    let created = kubectl(target.args(&["create", "-f", &manifest])).await;
    assert!(
        created.contains("provisioner.karpenter.sh/default created"),
        "{created}"
    );
    let provisioners: Api<Provisioner> = Api::all(client.clone());
    let stored = provisioners
        .get("default")
        .await
        .expect("kubectl created it");
    assert_eq!(stored.spec.ttl_seconds_after_empty, Some(30));

    let applied = kubectl(target.args(&["apply", "-f", &manifest])).await;
    assert!(
        applied.contains("provisioner.karpenter.sh/default configured")
            || applied.contains("unchanged"),
        "{applied}"
    );

    let listing = kubectl(target.args(&["get", "nodes,pods,provisioners", "-A"])).await;
    for expected in [
        "node/node-1",
        "pod/web",
        "provisioner.karpenter.sh/default",
        "Ready",
        "Pending",
    ] {
        assert!(
            listing.contains(expected),
            "{expected:?} missing from:\n{listing}"
        );
    }

    // A budget over the one (pending, so unhealthy) web pod: nothing may be disrupted.
    let pdb: PodDisruptionBudget = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "web"}}},
    }))
    .expect("a budget");
    Api::<PodDisruptionBudget>::default_namespaced(client.clone())
        .create(&PostParams::default(), &pdb)
        .await
        .expect("budget created");
    let budgets = kubectl(target.args(&["get", "pdb"])).await;
    let columns: Vec<Vec<&str>> = budgets
        .lines()
        .map(|line| line.split_whitespace().collect())
        .collect();
    assert_eq!(
        columns.first().map(|header| header.join(" ")).as_deref(),
        Some("NAME MIN AVAILABLE MAX UNAVAILABLE ALLOWED DISRUPTIONS AGE"),
        "{budgets}"
    );
    assert_eq!(
        columns.get(1).map(|row| &row[..4]),
        Some(&["web", "1", "N/A", "0"][..]),
        "{budgets}"
    );

    let recorder = Recorder::new(client.clone(), Reporter::from("nodewright"));
    let nominated = Event {
        type_: EventType::Normal,
        reason: "Nominated".into(),
        note: Some("Pod should schedule on a new node".into()),
        action: "Provisioning".into(),
        secondary: None,
    };
    let web = pods.get("web").await.expect("the pod");
    recorder
        .publish(&nominated, &web.object_ref(&()))
        .await
        .expect("an event recorded through events.k8s.io");
    let described = kubectl(target.args(&["describe", "pod", "web"])).await;
    assert!(
        described.contains("Nominated") && described.contains("nodewright"),
        "describe shows the recorded event:\n{described}"
    );
    assert!(
        described.contains("Name:") && described.contains("web"),
        "{described}"
    );
    let described = kubectl(target.args(&["describe", "provisioner", "default"])).await;
    assert!(
        described.contains("Ttl Seconds After Empty:  30"),
        "{described}"
    );

    let scaled = kubectl(target.args(&["scale", "deployment", "inflate", "--replicas=3"])).await;
    assert!(
        scaled.contains("deployment.apps/inflate scaled"),
        "{scaled}"
    );
    let replicas = deployments
        .get("inflate")
        .await
        .expect("the deployment")
        .spec
        .and_then(|s| s.replicas);
    assert_eq!(replicas, Some(3));

    let deleted = kubectl(target.args(&["delete", "pod", "web"])).await;
    assert!(deleted.contains("pod \"web\" deleted"), "{deleted}");
    assert_eq!(api_error(pods.get("web").await).0, 404);

    let scale_calls = server
        .requests()
        .into_iter()
        .filter(|record| {
            record.resource == "deployments" && record.subresource.as_deref() == Some("scale")
        })
        .count();
    assert!(
        scale_calls > 0,
        "kubectl scale goes through deployments/scale"
    );
}
