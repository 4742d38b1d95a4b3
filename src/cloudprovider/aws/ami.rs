//! Images for a node template: the AMI family's public SSM parameters (by Kubernetes version,
//! architecture and accelerator), or the newest image per architecture that an `amiSelector`
//! finds through DescribeImages. Both are cached.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use nodewright_scheduling::instance_type::InstanceType;
use nodewright_scheduling::labels;

use super::ec2::{Ec2Api, Filter, Image, ImageQuery};
use crate::cloudprovider::clock::{Clock, expired};
use crate::cloudprovider::error::CloudProviderError;
use crate::cloudprovider::types::AmiFamily;

/// How long a resolved parameter or image list is reused.
pub const AMI_CACHE_TTL: Duration = Duration::from_secs(5 * 60);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Arch {
    Amd64,
    Arm64,
}

impl Arch {
    /// The Kubernetes name (`amd64`, `arm64`).
    pub fn kube_name(self) -> &'static str {
        match self {
            Arch::Amd64 => labels::ARCH_AMD64,
            Arch::Arm64 => labels::ARCH_ARM64,
        }
    }

    /// From EC2's image architecture (`x86_64`, `arm64`).
    pub fn from_ec2(name: &str) -> Option<Arch> {
        match name {
            "x86_64" => Some(Arch::Amd64),
            "arm64" => Some(Arch::Arm64),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Accelerator {
    None,
    Nvidia,
    Neuron,
}

/// What an image must support to boot an instance type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ImageVariant {
    pub arch: Arch,
    pub accelerator: Accelerator,
}

/// The image variant an instance type needs, or `None` for an architecture nodewright cannot
/// boot.
pub fn variant_of(instance_type: &InstanceType) -> Option<ImageVariant> {
    let arch = match instance_type.labels.get(labels::ARCH).map(String::as_str) {
        Some(labels::ARCH_AMD64) => Arch::Amd64,
        Some(labels::ARCH_ARM64) => Arch::Arm64,
        _ => return None,
    };
    let has = |resource: &str| {
        instance_type
            .capacity
            .extended
            .get(resource)
            .is_some_and(|count| *count > 0)
    };
    let accelerator = if has(labels::RESOURCE_NVIDIA_GPU) {
        Accelerator::Nvidia
    } else if has(labels::RESOURCE_AWS_NEURON) {
        Accelerator::Neuron
    } else {
        Accelerator::None
    };
    Some(ImageVariant { arch, accelerator })
}

/// The public SSM parameter holding the family's image for a variant, or `None` when the
/// family publishes none (e.g. AL2 has no arm64 GPU image).
pub fn ssm_parameter(
    family: AmiFamily,
    kubernetes_version: &str,
    variant: ImageVariant,
) -> Option<String> {
    let v = kubernetes_version;
    match family {
        AmiFamily::Al2 => {
            let suffix = match (variant.arch, variant.accelerator) {
                (Arch::Amd64, Accelerator::None) => "",
                (Arch::Arm64, Accelerator::None) => "-arm64",
                (Arch::Amd64, Accelerator::Nvidia | Accelerator::Neuron) => "-gpu",
                (Arch::Arm64, _) => return None,
            };
            Some(format!(
                "/aws/service/eks/optimized-ami/{v}/amazon-linux-2{suffix}/recommended/image_id"
            ))
        }
        AmiFamily::Bottlerocket => {
            let nvidia = if variant.accelerator == Accelerator::Nvidia {
                "-nvidia"
            } else {
                ""
            };
            let arch = match variant.arch {
                Arch::Amd64 => "x86_64",
                Arch::Arm64 => "arm64",
            };
            Some(format!(
                "/aws/service/bottlerocket/aws-k8s-{v}{nvidia}/{arch}/latest/image_id"
            ))
        }
        AmiFamily::Ubuntu => Some(format!(
            "/aws/service/canonical/ubuntu/eks/20.04/{v}/stable/current/{}/hvm/ebs-gp2/ami-id",
            variant.arch.kube_name()
        )),
        AmiFamily::Custom => None,
    }
}

/// An image chosen for a variant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedImage {
    pub id: String,
    pub name: Option<String>,
    pub variant: ImageVariant,
}

/// The DescribeImages query for an `amiSelector`: `aws-ids`/`aws::ids` (image ids),
/// `aws::name` (name pattern), `aws::owners` (default: this account and Amazon), any other key
/// is a tag selector.
pub fn selector_query(selector: &BTreeMap<String, String>) -> ImageQuery {
    let list = |value: &str| -> Vec<String> {
        value
            .split(',')
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_string)
            .collect()
    };
    let mut query = ImageQuery::default();
    for (key, value) in selector {
        match key.as_str() {
            "aws-ids" | "aws::ids" => query.image_ids.extend(list(value)),
            "aws::owners" => query.owners.extend(list(value)),
            "aws::name" => query.filters.push(Filter::new("name", list(value))),
            _ if value.trim() == "*" => query.filters.push(Filter::tag_key(key)),
            _ => query.filters.push(Filter::tag(key, list(value))),
        }
    }
    if query.owners.is_empty() && query.image_ids.is_empty() {
        query.owners = vec!["self".to_string(), "amazon".to_string()];
    }
    query
}

/// The newest image of each architecture (by creation date, then id).
pub fn newest_per_arch(images: &[Image]) -> BTreeMap<Arch, &Image> {
    let mut newest: BTreeMap<Arch, &Image> = BTreeMap::new();
    for image in images {
        let Some(arch) = image.architecture.as_deref().and_then(Arch::from_ec2) else {
            continue;
        };
        let newer = newest.get(&arch).is_none_or(|current| {
            (&image.creation_date, &image.id) > (&current.creation_date, &current.id)
        });
        if newer {
            newest.insert(arch, image);
        }
    }
    newest
}

type Cache<T> = Mutex<HashMap<String, (SystemTime, T)>>;

/// Resolves and caches images.
pub struct AmiResolver {
    ec2: Arc<dyn Ec2Api>,
    clock: Arc<dyn Clock>,
    ttl: Duration,
    parameters: Cache<Option<String>>,
    selections: Cache<Vec<Image>>,
}

impl AmiResolver {
    pub fn new(ec2: Arc<dyn Ec2Api>, clock: Arc<dyn Clock>, ttl: Duration) -> Self {
        Self {
            ec2,
            clock,
            ttl,
            parameters: Mutex::new(HashMap::new()),
            selections: Mutex::new(HashMap::new()),
        }
    }

    /// An image for each of `variants` that the family (or selector) can serve. A variant with
    /// no image is left out, so its instance types are not launched.
    pub async fn resolve(
        &self,
        family: AmiFamily,
        selector: &BTreeMap<String, String>,
        kubernetes_version: &str,
        variants: &BTreeSet<ImageVariant>,
    ) -> Result<BTreeMap<ImageVariant, ResolvedImage>, CloudProviderError> {
        if !selector.is_empty() {
            return self.resolve_selector(selector, variants).await;
        }
        if family == AmiFamily::Custom {
            return Err(CloudProviderError::InvalidConfiguration(
                "amiFamily Custom needs an amiSelector".to_string(),
            ));
        }
        let mut resolved = BTreeMap::new();
        for variant in variants {
            let Some(parameter) = ssm_parameter(family, kubernetes_version, *variant) else {
                continue;
            };
            if let Some(id) = self.parameter(&parameter).await? {
                resolved.insert(
                    *variant,
                    ResolvedImage {
                        id,
                        name: None,
                        variant: *variant,
                    },
                );
            }
        }
        Ok(resolved)
    }

    /// An SSM parameter's value; `None` when the parameter does not exist (e.g. a Kubernetes
    /// version the family has not published).
    async fn parameter(&self, name: &str) -> Result<Option<String>, CloudProviderError> {
        if let Some(hit) = self.cached(&self.parameters, name) {
            return Ok(hit);
        }
        let value = match self.ec2.get_parameter(name.to_string()).await {
            Ok(value) => Some(value),
            Err(err) if err.is_not_found() => None,
            Err(err) => return Err(err.into()),
        };
        self.store(&self.parameters, name, value.clone());
        Ok(value)
    }

    async fn resolve_selector(
        &self,
        selector: &BTreeMap<String, String>,
        variants: &BTreeSet<ImageVariant>,
    ) -> Result<BTreeMap<ImageVariant, ResolvedImage>, CloudProviderError> {
        let key = format!("{selector:?}");
        let images = match self.cached(&self.selections, &key) {
            Some(images) => images,
            None => {
                let images = self.ec2.describe_images(selector_query(selector)).await?;
                self.store(&self.selections, &key, images.clone());
                images
            }
        };
        if images.is_empty() {
            return Err(CloudProviderError::InvalidConfiguration(format!(
                "no images match amiSelector {selector:?}"
            )));
        }
        let newest = newest_per_arch(&images);
        Ok(variants
            .iter()
            .filter_map(|variant| {
                let image = newest.get(&variant.arch)?;
                Some((
                    *variant,
                    ResolvedImage {
                        id: image.id.clone(),
                        name: image.name.clone(),
                        variant: *variant,
                    },
                ))
            })
            .collect())
    }

    fn cached<T: Clone>(&self, cache: &Cache<T>, key: &str) -> Option<T> {
        let now = self.clock.now();
        let cache = cache.lock().unwrap_or_else(|p| p.into_inner());
        let (at, value) = cache.get(key)?;
        (!expired(*at, self.ttl, now)).then(|| value.clone())
    }

    fn store<T>(&self, cache: &Cache<T>, key: &str, value: T) {
        let mut cache = cache.lock().unwrap_or_else(|p| p.into_inner());
        cache.insert(key.to_string(), (self.clock.now(), value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const AMD64: ImageVariant = ImageVariant {
        arch: Arch::Amd64,
        accelerator: Accelerator::None,
    };
    const ARM64: ImageVariant = ImageVariant {
        arch: Arch::Arm64,
        accelerator: Accelerator::None,
    };
    const AMD64_GPU: ImageVariant = ImageVariant {
        arch: Arch::Amd64,
        accelerator: Accelerator::Nvidia,
    };

    #[test]
    fn al2_parameters_follow_the_eks_layout() {
        assert_eq!(
            ssm_parameter(AmiFamily::Al2, "1.27", AMD64).as_deref(),
            Some("/aws/service/eks/optimized-ami/1.27/amazon-linux-2/recommended/image_id")
        );
        assert_eq!(
            ssm_parameter(AmiFamily::Al2, "1.27", ARM64).as_deref(),
            Some("/aws/service/eks/optimized-ami/1.27/amazon-linux-2-arm64/recommended/image_id")
        );
        assert_eq!(
            ssm_parameter(AmiFamily::Al2, "1.27", AMD64_GPU).as_deref(),
            Some("/aws/service/eks/optimized-ami/1.27/amazon-linux-2-gpu/recommended/image_id")
        );
        let arm_gpu = ImageVariant {
            arch: Arch::Arm64,
            accelerator: Accelerator::Nvidia,
        };
        assert_eq!(ssm_parameter(AmiFamily::Al2, "1.27", arm_gpu), None);
    }

    #[test]
    fn bottlerocket_and_ubuntu_parameters_name_arch_and_variant() {
        assert_eq!(
            ssm_parameter(AmiFamily::Bottlerocket, "1.26", AMD64_GPU).as_deref(),
            Some("/aws/service/bottlerocket/aws-k8s-1.26-nvidia/x86_64/latest/image_id")
        );
        assert_eq!(
            ssm_parameter(AmiFamily::Bottlerocket, "1.26", ARM64).as_deref(),
            Some("/aws/service/bottlerocket/aws-k8s-1.26/arm64/latest/image_id")
        );
        assert_eq!(
            ssm_parameter(AmiFamily::Ubuntu, "1.25", ARM64).as_deref(),
            Some(
                "/aws/service/canonical/ubuntu/eks/20.04/1.25/stable/current/arm64/hvm/ebs-gp2/ami-id"
            )
        );
        assert_eq!(ssm_parameter(AmiFamily::Custom, "1.25", AMD64), None);
    }

    #[test]
    fn ami_selectors_split_ids_owners_names_and_tags() {
        let selector: BTreeMap<String, String> = [
            ("aws::name", "my-ami-*"),
            ("aws::owners", "123456789012, amazon"),
            ("team", "*"),
            ("env", "prod,staging"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let query = selector_query(&selector);
        assert_eq!(query.owners, vec!["123456789012", "amazon"]);
        assert!(query.image_ids.is_empty());
        assert_eq!(
            query.filters,
            vec![
                Filter::new("name", ["my-ami-*"]),
                Filter::tag("env", ["prod", "staging"]),
                Filter::tag_key("team"),
            ]
        );
        let by_tag: BTreeMap<String, String> = [("team".to_string(), "a".to_string())]
            .into_iter()
            .collect();
        assert_eq!(selector_query(&by_tag).owners, vec!["self", "amazon"]);
    }

    fn image(id: &str, arch: &str, created: &str) -> Image {
        Image {
            id: id.into(),
            name: Some(format!("name-{id}")),
            architecture: Some(arch.into()),
            creation_date: Some(created.into()),
            owner_id: None,
            tags: BTreeMap::new(),
        }
    }

    #[test]
    fn the_newest_image_of_each_architecture_wins() {
        let images = [
            image("ami-old", "x86_64", "2023-01-01T00:00:00.000Z"),
            image("ami-new", "x86_64", "2023-06-01T00:00:00.000Z"),
            image("ami-arm", "arm64", "2022-01-01T00:00:00.000Z"),
            image("ami-mac", "x86_64_mac", "2024-01-01T00:00:00.000Z"),
        ];
        let newest = newest_per_arch(&images);
        assert_eq!(newest[&Arch::Amd64].id, "ami-new");
        assert_eq!(newest[&Arch::Arm64].id, "ami-arm");
        assert_eq!(newest.len(), 2);
    }
}
