//! Node templates: each AWSNodeTemplate's status says what its selectors resolve to now
//! (subnets, security groups, AMIs), refreshed when its spec changes and every few minutes,
//! since subnets and images change in the cloud without the template changing. On a slower
//! timer, launch templates no launch used for an hour are deleted.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use kube::api::Api;
use tokio::sync::watch;

use crate::apis::AwsNodeTemplate;
use crate::clock::sleep_until;
use crate::cloudprovider::NodeTemplate;
use crate::controllers::context::Context;
use crate::controllers::events::reference;
use crate::controllers::write;

const CONTROLLER: &str = "awsnodetemplate";
/// How often a template's selectors are resolved again when its spec did not change.
const RESOLVE_EVERY: Duration = Duration::from_secs(5 * 60);
/// How often unused launch templates are looked for.
const CLEANUP_EVERY: Duration = Duration::from_secs(60 * 60);
/// Event reason on a template whose selectors cannot be resolved.
pub const REASON_UNRESOLVED: &str = "FailedResolvingNodeTemplate";

/// When each template was last resolved, and at which generation.
type Resolved = HashMap<String, (Option<i64>, SystemTime)>;

/// Runs until `stop` turns true.
pub async fn run(ctx: Arc<Context>, mut stop: watch::Receiver<bool>) {
    let mut changes = ctx.state.changed();
    let mut resolved = Resolved::new();
    let mut next_cleanup = ctx.clock.now();
    loop {
        let now = ctx.clock.now();
        changes.borrow_and_update();
        for template in due(&ctx, &mut resolved, now) {
            refresh_status(&ctx, &template).await;
        }
        if now >= next_cleanup {
            clean_up(&ctx).await;
            next_cleanup = now + CLEANUP_EVERY;
        }
        let wake = resolved
            .values()
            .map(|(_, at)| *at + RESOLVE_EVERY)
            .chain([next_cleanup])
            .min()
            .unwrap_or(next_cleanup);
        tokio::select! {
            _ = stop.wait_for(|stopped| *stopped) => return,
            changed = changes.changed() => if changed.is_err() { return },
            () = sleep_until(ctx.clock.as_ref(), wake) => {}
        }
    }
}

/// The templates whose spec changed or whose last resolution is older than [`RESOLVE_EVERY`];
/// forgets the ones that are gone.
fn due(ctx: &Context, resolved: &mut Resolved, now: SystemTime) -> Vec<AwsNodeTemplate> {
    let state = ctx.state.read();
    resolved.retain(|name, _| state.node_template(name).is_some());
    state
        .node_template_names()
        .into_iter()
        .filter_map(|name| state.node_template(&name).cloned())
        .filter(|template| {
            let name = template.metadata.name.clone().unwrap_or_default();
            let generation = template.metadata.generation;
            let is_due = resolved
                .get(&name)
                .is_none_or(|(seen, at)| *seen != generation || now >= *at + RESOLVE_EVERY);
            if is_due {
                resolved.insert(name, (generation, now));
            }
            is_due
        })
        .collect()
}

/// Resolves `template` and writes its status when it changed.
async fn refresh_status(ctx: &Context, template: &AwsNodeTemplate) {
    let name = template.metadata.name.clone().unwrap_or_default();
    let resolved = match NodeTemplate::from_spec(&template.spec) {
        Ok(spec) => ctx
            .cloud_call(
                CONTROLLER,
                "ResolveTemplate",
                ctx.cloud.template_status(&spec),
            )
            .await
            .map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    let status = match resolved {
        Ok(status) => status,
        Err(error) => {
            tracing::warn!(awsnodetemplate = %name, %error, "cannot resolve the node template");
            ctx.events
                .warning(reference(template), REASON_UNRESOLVED, error);
            return;
        }
    };
    if template.status.as_ref() == Some(&status) {
        return;
    }
    let api: Api<AwsNodeTemplate> = Api::all(ctx.client.clone());
    match write::status(&api, &name, &status).await {
        Ok(written) => {
            ctx.state.apply(&written);
            tracing::debug!(awsnodetemplate = %name, "resolved the node template");
        }
        Err(kube::Error::Api(status)) if status.code == 404 => {}
        Err(error) => {
            tracing::warn!(awsnodetemplate = %name, %error, "cannot write the node template's status")
        }
    }
}

/// Deletes launch templates nothing uses any more.
async fn clean_up(ctx: &Context) {
    match ctx
        .cloud_call(CONTROLLER, "DeleteUnused", ctx.cloud.delete_unused())
        .await
    {
        Ok(deleted) if deleted.is_empty() => {}
        Ok(deleted) => {
            tracing::info!(launchTemplates = ?deleted, "Deleted unused launch templates")
        }
        Err(error) => tracing::warn!(%error, "cannot delete unused launch templates"),
    }
}
