//! The AWS cloud provider against moto (real EC2/SSM query protocol, every call serialised and
//! parsed by the SDK), with a fault-injecting proxy for what moto never does.
//!
//! moto is started once per test binary from `hack/moto_server.py` (or taken from
//! `MOTO_ENDPOINT`). What moto cannot do and how that is covered:
//! - CreateFleet: moto always takes the first override, never returns `Errors[]`, ignores the
//!   ClientToken and accepts unknown types → `faults` rewrites its CreateFleet answers, and
//!   `memory` (the in-memory EC2) covers idempotency and eventual consistency.
//! - moto applies neither the launch template's security groups nor its metadata options to the
//!   instance (it reports the default group, IMDSv1 and hop limit 1), so those are checked on the
//!   launch template moto stored.
//! - moto's spot price is a constant (0.00001) and it has no Pricing API, so on-demand prices
//!   are the embedded list prices, as in an isolated VPC.

mod faults;
mod memory;
mod moto_wire;
mod support;
