//! The custom resources nodewright serves — Karpenter's API — and their validation.
//!
//! - [`provisioner`]: `Provisioner` (karpenter.sh/v1alpha5), what nodes may be launched.
//! - [`node_template`]: `AWSNodeTemplate` (karpenter.k8s.aws/v1alpha1) and the legacy inline
//!   provider, how they are launched on EC2.
//! - [`machine`]: `Machine` (karpenter.sh/v1alpha5), one launched instance.
//! - [`requirement`], [`kubelet`], [`common`]: building blocks the kinds share.
//! - [`cel`] and [`schema`]: the CEL rules and hand-written OpenAPI pieces of the CRDs.
//! - [`validation`]: `validate()` on every kind, reporting each problem with its field path.
//! - [`crds`]: the generated CRDs and their YAML.
//!
//! Field names are spelled exactly as Karpenter's, so Karpenter manifests apply unchanged.

pub mod cel;
pub mod common;
pub mod crds;
pub mod kubelet;
pub mod machine;
pub mod node_template;
pub mod provisioner;
pub mod requirement;
pub mod schema;
mod string_enum;
pub mod validation;

pub use common::{Condition, ProviderRef};
pub use kubelet::KubeletConfiguration;
pub use machine::{Machine, MachineSpec, MachineStatus};
pub use node_template::{
    AwsLaunchSettings, AwsNodeTemplate, AwsNodeTemplateSpec, AwsNodeTemplateStatus, AwsProvider,
};
pub use provisioner::{Provisioner, ProvisionerSpec, ProvisionerStatus};
pub use requirement::{NodeSelectorRequirement, Operator};
pub use validation::{FieldError, FieldPath, Problem, ValidationErrors};

/// Every CRD as one multi-document YAML stream, in a stable order (what `nodewright crds` prints).
pub fn crds_yaml() -> anyhow::Result<String> {
    Ok(crds::crds_yaml()?)
}
