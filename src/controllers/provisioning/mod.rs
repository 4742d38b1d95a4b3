//! The provisioning loop (the fast loop): pending pods → batch → schedule → Machines → launch.
//!
//! Pipeline: observe (the [`crate::state`] cache; [`batcher`] says when a batch closes) →
//! decide (the scheduling core's `schedule`, then [`decide`] turns its plan into the Machines to
//! create, the pod nominations, and the nodes refused by the limit re-check) → act (create the
//! Machines, then launch each through the CloudProvider; wired in a later step).

pub mod batcher;
pub mod decide;
pub mod run;

#[cfg(test)]
mod decide_tests;
