//! Launch templates: one per distinct (image, security groups, instance profile, user data, disks,
//! metadata options, tags), named by a hash of those settings, created on first use and reused,
//! and deleted once no launch has used them for a while.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use nodewright_scheduling::labels;

use super::ec2::{Ec2Api, Filter, LaunchTemplateData, NewLaunchTemplate};
use super::errors::Ec2ErrorKind;
use crate::cloudprovider::clock::{Clock, expired};
use crate::cloudprovider::error::CloudProviderError;
use crate::sync::lock;

/// Every launch template nodewright creates is named `nodewright/<cluster>/<hash>`.
pub const LAUNCH_TEMPLATE_PREFIX: &str = "nodewright/";

/// How long an unused launch template is kept.
pub const LAUNCH_TEMPLATE_TTL: Duration = Duration::from_secs(60 * 60);

/// FNV-1a, 64 bits: stable across Rust releases, unlike `DefaultHasher`.
fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in bytes {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

/// The name for a launch template with these settings: equal settings, equal names.
pub fn template_name(
    cluster: &str,
    data: &LaunchTemplateData,
    tags: &BTreeMap<String, String>,
) -> String {
    // Derived Debug output lists every field in order, so it is a complete fingerprint.
    let fingerprint = format!("{data:?}|{tags:?}");
    format!(
        "{LAUNCH_TEMPLATE_PREFIX}{cluster}/{:016x}",
        fnv1a(fingerprint.as_bytes())
    )
}

/// Tags that mark a launch template (or instance) as this cluster's.
pub fn cluster_tags(cluster: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (
            format!("{}{cluster}", labels::CLUSTER_TAG_PREFIX),
            "owned".to_string(),
        ),
        (labels::MANAGED_BY_TAG.to_string(), cluster.to_string()),
    ])
}

/// Creates, reuses and retires this cluster's launch templates.
pub struct LaunchTemplates {
    ec2: Arc<dyn Ec2Api>,
    clock: Arc<dyn Clock>,
    cluster: String,
    ttl: Duration,
    /// Name → last time a launch used it.
    known: Mutex<HashMap<String, SystemTime>>,
}

impl LaunchTemplates {
    pub fn new(ec2: Arc<dyn Ec2Api>, clock: Arc<dyn Clock>, cluster: &str, ttl: Duration) -> Self {
        Self {
            ec2,
            clock,
            cluster: cluster.to_string(),
            ttl,
            known: Mutex::new(HashMap::new()),
        }
    }

    /// The name of a launch template with these settings, creating it if it does not exist.
    pub async fn ensure(
        &self,
        data: LaunchTemplateData,
        tags: &BTreeMap<String, String>,
    ) -> Result<String, CloudProviderError> {
        let name = template_name(&self.cluster, &data, tags);
        if self.touch(&name) {
            return Ok(name);
        }
        let existing = self
            .ec2
            .describe_launch_templates(vec![Filter::new("launch-template-name", [&name])])
            .await?;
        if existing.iter().any(|t| t.name == name) {
            self.record(&name);
            return Ok(name);
        }
        let mut all_tags = tags.clone();
        all_tags.extend(cluster_tags(&self.cluster));
        let created = self
            .ec2
            .create_launch_template(NewLaunchTemplate {
                name: name.clone(),
                data,
                tags: all_tags,
            })
            .await;
        match created {
            Ok(_) => {}
            // Another replica (or an earlier, lost response) created it first.
            Err(err) if err.kind == Ec2ErrorKind::AlreadyExists => {}
            Err(err) => return Err(err.into()),
        }
        tracing::info!(launch_template = %name, "created launch template");
        self.record(&name);
        Ok(name)
    }

    /// Forgets a template that EC2 says does not exist, so the next launch creates it again.
    pub fn forget(&self, name: &str) {
        lock(&self.known).remove(name);
    }

    /// Deletes this cluster's launch templates that no launch used within the TTL. Templates
    /// found for the first time (e.g. after a restart) get a full TTL before they go.
    pub async fn delete_unused(&self) -> Result<Vec<String>, CloudProviderError> {
        let cluster_tag = format!("{}{}", labels::CLUSTER_TAG_PREFIX, self.cluster);
        let prefix = format!("{LAUNCH_TEMPLATE_PREFIX}{}/", self.cluster);
        let ours = self
            .ec2
            .describe_launch_templates(vec![Filter::tag(&cluster_tag, ["owned"])])
            .await?;
        let now = self.clock.now();
        let stale: Vec<String> = {
            let mut known = lock(&self.known);
            ours.iter()
                .filter(|t| t.name.starts_with(&prefix))
                .filter(|t| {
                    let last_used = *known.entry(t.name.clone()).or_insert(now);
                    expired(last_used, self.ttl, now)
                })
                .map(|t| t.name.clone())
                .collect()
        };
        let mut deleted = Vec::new();
        for name in stale {
            match self.ec2.delete_launch_template(name.clone()).await {
                Ok(()) => {}
                Err(err) if err.is_not_found() => {}
                Err(err) => return Err(err.into()),
            }
            self.forget(&name);
            tracing::info!(launch_template = %name, "deleted unused launch template");
            deleted.push(name);
        }
        Ok(deleted)
    }

    /// Marks a known template as used now; false when it is not known.
    fn touch(&self, name: &str) -> bool {
        let now = self.clock.now();
        match lock(&self.known).get_mut(name) {
            Some(last_used) => {
                *last_used = now;
                true
            }
            None => false,
        }
    }

    fn record(&self, name: &str) {
        lock(&self.known).insert(name.to_string(), self.clock.now());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_settings_give_equal_names_and_any_difference_a_new_one() {
        let data = LaunchTemplateData {
            image_id: "ami-1".into(),
            security_group_ids: vec!["sg-1".into()],
            ..Default::default()
        };
        let tags = BTreeMap::from([("team".to_string(), "ml".to_string())]);
        let name = template_name("c1", &data, &tags);
        assert!(name.starts_with("nodewright/c1/"));
        assert_eq!(name.len(), "nodewright/c1/".len() + 16);
        assert_eq!(name, template_name("c1", &data.clone(), &tags.clone()));

        let other_image = LaunchTemplateData {
            image_id: "ami-2".into(),
            ..data.clone()
        };
        assert_ne!(name, template_name("c1", &other_image, &tags));
        assert_ne!(name, template_name("c1", &data, &BTreeMap::new()));
        assert_ne!(name, template_name("c2", &data, &tags));
    }

    #[test]
    fn fnv_matches_the_reference_vectors() {
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
    }
}
