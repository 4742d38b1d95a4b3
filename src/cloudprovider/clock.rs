//! The cloud provider's clock: the crate-wide [`crate::clock`], re-exported where it first lived.

pub(crate) use crate::clock::expired;
pub use crate::clock::{Clock, ManualClock, SystemClock};
