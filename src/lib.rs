//! nodewright: just-in-time worker nodes for Kubernetes on AWS, implementing the Karpenter API.
//!
//! - [`apis`] — the custom resources (Provisioner, AWSNodeTemplate, Machine) and their validation.
//! - [`convert`] — Kubernetes objects into the scheduling core's inputs.
//! - [`plan`] — the offline planner behind `nodewright plan`.
//! - [`cloudprovider`]: the CloudProvider trait, its AWS implementation and a fake.
//! - [`state`] — the cluster state cache: a synchronous index of watched objects.
//! - [`controllers`] — the controllers' pure building blocks (batching, decisions, status math).
//! - [`settings`] — the controller's settings from flags and environment, named like Karpenter's.
//! - [`metrics`] — Prometheus metrics with Karpenter's names.
//! - [`serve`] — the `/metrics`, `/healthz` and `/readyz` HTTP servers.
//! - [`leader`] — leader election on a coordination.k8s.io Lease.
//! - [`clock`] — injected time.
//! - [`sim`] — the simulated cluster: an in-memory Kubernetes API server over HTTP.
//! - [`cli`] — the command line.
//! - [`telemetry`] — logging.
//!
//! The deciding core lives in the `nodewright-scheduling` crate.

pub mod apis;
pub mod cli;
pub mod clock;
pub mod cloudprovider;
pub mod controllers;
pub mod convert;
pub mod leader;
pub mod memory;
pub mod metrics;
pub mod plan;
pub mod serve;
pub mod settings;
pub mod sim;
pub mod state;
mod sync;
pub mod telemetry;
pub mod yaml;
