//! The pure scheduling core of nodewright.
//!
//! Given pods, existing nodes, provisioners and instance types, it decides which nodes should
//! exist. Decisions are values; nothing here performs I/O, talks to Kubernetes or AWS, or needs
//! an async runtime, so it builds, tests and benches in seconds.

pub mod allocatable;
pub mod catalog;
pub mod cost;
pub mod explain;
pub mod instance_type;
pub mod labels;
pub mod node;
pub mod plan;
pub mod pod;
pub mod provisioner;
pub mod requirements;
pub mod resources;
pub mod scheduler;
pub mod taints;
pub mod topology;

pub use plan::Plan;
pub use scheduler::{Packing, ScheduleInput, SchedulerSettings, schedule};
