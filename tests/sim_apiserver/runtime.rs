//! kube-runtime against the server as a controller uses it: a Controller whose reconciler
//! keeps a finalizer (kube's helper patches it with JSON patch `test` operations) and writes
//! status, then lets a deletion through.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::finalizer::{Event, finalizer};
use kube::runtime::wait::await_condition;
use nodewright::apis::Provisioner;
use serde_json::json;
use tokio::time::timeout;

use crate::support::{PATIENCE, api_error, client, server};

const FINALIZER: &str = "example.com/cleanup";

#[derive(Debug, thiserror::Error)]
#[error("reconcile failed: {0}")]
struct Failed(String);

async fn reconcile(
    provisioner: Arc<Provisioner>,
    api: Arc<Api<Provisioner>>,
) -> Result<Action, Failed> {
    finalizer(&api, FINALIZER, provisioner, |event| async {
        match event {
            Event::Apply(provisioner) => {
                let name = provisioner.metadata.name.clone().unwrap_or_default();
                let status = json!({"status": {"resources": {"cpu": "2"}}});
                api.patch_status(&name, &PatchParams::default(), &Patch::Merge(status))
                    .await
                    .map_err(|error| Failed(error.to_string()))?;
                Ok(Action::await_change())
            }
            Event::Cleanup(_) => Ok::<_, Failed>(Action::await_change()),
        }
    })
    .await
    .map_err(|error| Failed(error.to_string()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controller_with_a_finalizer_reconciles_status_and_lets_deletion_finish() {
    let server = server().await;
    let api: Api<Provisioner> = Api::all(client(&server));
    let controller = Controller::new(api.clone(), Default::default())
        .run(
            reconcile,
            |_, _, _| Action::requeue(Duration::from_millis(50)),
            Arc::new(api.clone()),
        )
        .for_each(|_| async {});
    let running = tokio::spawn(controller);

    let provisioner: Provisioner = serde_json::from_value(json!({
        "apiVersion": "karpenter.sh/v1alpha5", "kind": "Provisioner",
        "metadata": {"name": "default"}, "spec": {"providerRef": {"name": "default"}},
    }))
    .expect("a provisioner");
    api.create(&PostParams::default(), &provisioner)
        .await
        .expect("created");
    let reconciled = |object: Option<&Provisioner>| {
        object.is_some_and(|p| {
            p.finalizers().iter().any(|f| f == FINALIZER)
                && p.status
                    .as_ref()
                    .is_some_and(|status| !status.resources.is_empty())
        })
    };
    timeout(
        PATIENCE,
        await_condition(api.clone(), "default", reconciled),
    )
    .await
    .expect("reconciled in time")
    .expect("watching");

    api.delete("default", &DeleteParams::default())
        .await
        .expect("deletion accepted");
    timeout(
        PATIENCE,
        await_condition(api.clone(), "default", |object: Option<&Provisioner>| {
            object.is_none()
        }),
    )
    .await
    .expect("the finalizer is released in time")
    .expect("watching");
    assert_eq!(api_error(api.get("default").await).0, 404);
    running.abort();
}
