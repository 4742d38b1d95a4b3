//! What a trial runs: one Provisioner and AWSNodeTemplate, a PDB-guarded deployment that stays
//! up all trial, and two deployments whose sizes change wave by wave.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::{Value, json};

use crate::rng::Rng;

/// The deployment the PDB guards: `GUARDED_REPLICAS` pods, at most one unavailable.
pub const GUARDED: &str = "guarded";
pub const GUARDED_REPLICAS: usize = 3;
/// Deployments scaled wave by wave, with each pod's cpu request in millicores.
pub const SCALED: [(&str, u64); 2] = [("web", 1000), ("batch", 500)];

/// The provisioner's shape, drawn from the seed.
#[derive(Debug, Clone)]
pub struct ProvisionerShape {
    /// Consolidation, else `ttlSecondsAfterEmpty`.
    pub consolidation: bool,
    /// `ttlSecondsUntilExpired`: nodes are drained and replaced while the trial runs.
    pub expire_after: Option<u64>,
    pub cpu_limit: u64,
    pub spot: bool,
}

impl ProvisionerShape {
    pub fn draw(rng: &mut Rng) -> ProvisionerShape {
        ProvisionerShape {
            consolidation: rng.chance(0.5),
            expire_after: rng.chance(0.4).then(|| rng.range(60, 120)),
            cpu_limit: rng.range(24, 48),
            spot: rng.chance(0.5),
        }
    }
}

fn dynamic(group: &str, version: &str, kind: &str, plural: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural)
}

async fn create(
    client: &kube::Client,
    resource: &ApiResource,
    object: Value,
) -> Result<(), String> {
    let api: Api<DynamicObject> = Api::all_with(client.clone(), resource);
    let object: DynamicObject = serde_json::from_value(object).map_err(|e| e.to_string())?;
    api.create(&PostParams::default(), &object)
        .await
        .map(|_| ())
        .map_err(|e| format!("create {}: {e}", resource.kind))
}

pub async fn create_provisioner(
    client: &kube::Client,
    cluster: &str,
    shape: &ProvisionerShape,
) -> Result<(), String> {
    let capacity = if shape.spot { "spot" } else { "on-demand" };
    let mut spec = json!({
        "providerRef": {"name": "default"},
        "requirements": [
            {"key": "karpenter.k8s.aws/instance-family", "operator": "In", "values": ["c5", "m5"]},
            {"key": "karpenter.k8s.aws/instance-size", "operator": "In", "values": ["large", "xlarge", "2xlarge"]},
            {"key": "karpenter.sh/capacity-type", "operator": "In", "values": [capacity]},
        ],
        "limits": {"resources": {"cpu": shape.cpu_limit.to_string()}},
    });
    if shape.consolidation {
        spec["consolidation"] = json!({"enabled": true});
    } else {
        spec["ttlSecondsAfterEmpty"] = json!(5);
    }
    if let Some(seconds) = shape.expire_after {
        spec["ttlSecondsUntilExpired"] = json!(seconds);
    }
    create(
        client,
        &dynamic(
            "karpenter.k8s.aws",
            "v1alpha1",
            "AWSNodeTemplate",
            "awsnodetemplates",
        ),
        json!({
            "apiVersion": "karpenter.k8s.aws/v1alpha1",
            "kind": "AWSNodeTemplate",
            "metadata": {"name": "default"},
            "spec": {
                "subnetSelector": {"karpenter.sh/discovery": cluster},
                "securityGroupSelector": {"karpenter.sh/discovery": cluster},
                "instanceProfile": format!("KarpenterNodeInstanceProfile-{cluster}"),
            },
        }),
    )
    .await?;
    create(
        client,
        &dynamic("karpenter.sh", "v1alpha5", "Provisioner", "provisioners"),
        json!({
            "apiVersion": "karpenter.sh/v1alpha5",
            "kind": "Provisioner",
            "metadata": {"name": "default"},
            "spec": spec,
        }),
    )
    .await
}

fn deployment(name: &str, replicas: usize, cpu_millis: u64) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{
                    "name": "pause",
                    "image": "public.ecr.aws/eks-distro/kubernetes/pause:3.7",
                    "resources": {"requests": {"cpu": format!("{cpu_millis}m"), "memory": "256Mi"}},
                }]},
            },
        },
    })
}

/// The guarded deployment with its PDB, and the scaled ones at zero.
pub async fn create_deployments(client: &kube::Client) -> Result<(), String> {
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let mut all = vec![deployment(GUARDED, GUARDED_REPLICAS, 500)];
    all.extend(SCALED.iter().map(|(name, cpu)| deployment(name, 0, *cpu)));
    for object in all {
        let object: Deployment = serde_json::from_value(object).map_err(|e| e.to_string())?;
        deployments
            .create(&PostParams::default(), &object)
            .await
            .map_err(|e| format!("create deployment: {e}"))?;
    }
    let budget: PodDisruptionBudget = serde_json::from_value(json!({
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {"name": GUARDED, "namespace": "default"},
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": {"app": GUARDED}}},
    }))
    .map_err(|e| e.to_string())?;
    Api::<PodDisruptionBudget>::namespaced(client.clone(), "default")
        .create(&PostParams::default(), &budget)
        .await
        .map(|_| ())
        .map_err(|e| format!("create PDB: {e}"))
}

pub async fn scale(client: &kube::Client, name: &str, replicas: usize) -> Result<(), String> {
    Api::<Deployment>::namespaced(client.clone(), "default")
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": replicas}})),
        )
        .await
        .map(|_| ())
        .map_err(|e| format!("scale {name}: {e}"))
}

/// Scale to zero: every deployment and the PDB go.
pub async fn delete_all(client: &kube::Client) -> Result<(), String> {
    let _ = Api::<PodDisruptionBudget>::namespaced(client.clone(), "default")
        .delete(GUARDED, &DeleteParams::default())
        .await;
    for name in std::iter::once(GUARDED).chain(SCALED.iter().map(|(n, _)| *n)) {
        scale(client, name, 0).await?;
    }
    Ok(())
}
