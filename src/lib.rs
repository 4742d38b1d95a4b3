//! nodewright: just-in-time worker nodes for Kubernetes on AWS, implementing the Karpenter API.
//!
//! - [`apis`] — the custom resources (Provisioner, AWSNodeTemplate, Machine) and their validation.
//! - [`convert`] — Kubernetes objects into the scheduling core's inputs.
//! - [`plan`] — the offline planner behind `nodewright plan`.
//! - [`cloudprovider`]: the CloudProvider trait, its AWS implementation and a fake.
//! - [`clock`] — injected time.
//! - [`cli`] — the command line.
//! - [`telemetry`] — logging.
//!
//! The deciding core lives in the `nodewright-scheduling` crate.

pub mod apis;
pub mod cli;
pub mod clock;
pub mod cloudprovider;
pub mod convert;
pub mod plan;
pub mod telemetry;
