//! The provisioning loop (the fast loop): pending pods → batch → schedule → Machines → launch.
//!
//! [`batcher`] says when a batch of pending pods closes.

pub mod batcher;
