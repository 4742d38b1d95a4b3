//! Karpenter v0.27–v0.31's `karpenter-global-settings` ConfigMap, read by a running controller.

use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;

use crate::support::{self, Sim, events_about, provisioner};

const CONFIGMAP: &str = "karpenter-global-settings";

/// The v0.31 guide's AWSNodeTemplate names no instance profile; Karpenter took
/// `aws.defaultInstanceProfile` from this ConfigMap. Set while the controller runs, it takes
/// effect without a restart, and a bad value later keeps the last good settings.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_default_instance_profile_set_in_the_configmap_takes_effect_while_running() {
    let sim = Sim::start().await;
    let mut without_profile = provisioner("default", json!({}));
    if let Some(provider) = without_profile["spec"]["provider"].as_object_mut() {
        provider.remove("instanceProfile");
    }
    sim.apply_provisioner(without_profile).await;
    sim.add_pods("inflate", 2, "1", json!({})).await;
    sim.unschedulable_pods(2).await;
    let controller = sim
        .controller_with_settings_configmap(support::settings(), CONFIGMAP)
        .await;

    sim.eventually("the provisioner is refused with a reason", || async {
        events_about(&sim.client, "default")
            .await
            .iter()
            .any(|(reason, message)| {
                reason == "InvalidNodeTemplate" && message.contains("aws.defaultInstanceProfile")
            })
            .then_some(())
    })
    .await;
    assert!(
        sim.machines().await.is_empty(),
        "nothing launches without a profile"
    );

    let namespaces: Api<Namespace> = Api::all(sim.client.clone());
    let namespace =
        serde_json::from_value(json!({"metadata": {"name": "karpenter"}})).expect("a Namespace");
    namespaces
        .create(&PostParams::default(), &namespace)
        .await
        .expect("the namespace is created");
    let config_maps: Api<ConfigMap> = Api::namespaced(sim.client.clone(), "karpenter");
    let config_map = serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": CONFIGMAP, "namespace": "karpenter"},
        "data": {
            "aws.defaultInstanceProfile": "KarpenterNodeInstanceProfile-sim",
            "aws.enablePodENI": "false",
        },
    }))
    .expect("a ConfigMap");
    config_maps
        .create(&PostParams::default(), &config_map)
        .await
        .expect("the ConfigMap is created");
    let running = sim.running_pods(2).await;
    assert_eq!(running.len(), 2);

    // A bad value is refused in the log; the controller keeps the profile and launches again.
    let bad = json!({"data": {"batchMaxDuration": "whenever"}});
    config_maps
        .patch(CONFIGMAP, &PatchParams::default(), &Patch::Merge(&bad))
        .await
        .expect("the ConfigMap is patched");
    sim.add_pods("more", 2, "4", json!({})).await;
    sim.running_pods(4).await;
    controller.stop().await;
    sim.stop().await;
}
