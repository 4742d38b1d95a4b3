//! The cloud provider: the one seam between nodewright's controllers and the machines they buy.
//!
//! - [`CloudProvider`]: create, delete, get and list instances, the instance types on offer, and
//!   whether a launched instance still matches its node template. Controllers hold an
//!   `Arc<dyn CloudProvider>` and never name EC2.
//! - [`aws`]: the EC2 implementation (EC2 Fleet, instance types, prices, subnets, security groups,
//!   AMIs, launch templates, the unavailable-offerings cache), over a narrow [`aws::Ec2Api`].
//! - [`fake`]: a deterministic in-process implementation for tests and the simulator.
//! - [`types`]: what goes in and comes out (built from the CRDs by `NodeTemplate::from_spec`,
//!   `LaunchRequest::from_machine`, `MachineId::from`); [`error`]: what can go wrong.

use std::future::Future;
use std::pin::Pin;

use nodewright_scheduling::instance_type::InstanceType;

use crate::apis::node_template::AwsNodeTemplateStatus;

pub mod aws;
pub mod clock;
pub mod error;
pub mod fake;
mod from_apis;
pub mod types;

pub use clock::{Clock, ManualClock, SystemClock};
pub use error::CloudProviderError;
pub use types::{
    AmiFamily, BlockDevice, DeleteStatus, DriftReason, InstanceState, KubeletSettings,
    LaunchRequest, LaunchedInstance, MachineId, MetadataOptions, NodeSettings, NodeTemplate,
};

/// A boxed future, so that [`CloudProvider`] stays usable as `dyn CloudProvider`.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What every cloud provider result is.
pub type Result<T, E = CloudProviderError> = std::result::Result<T, E>;

/// Buys, finds and returns machines. Implementations are cheap to share (`Arc<dyn CloudProvider>`)
/// and safe to call concurrently.
pub trait CloudProvider: Send + Sync {
    /// Launches one instance for a machine. Retrying with the same machine UID never launches a
    /// second instance: the provider adopts the one already tagged for the machine.
    fn create<'a>(&'a self, request: &'a LaunchRequest) -> BoxFuture<'a, Result<LaunchedInstance>>;

    /// Terminates a machine's instance. Idempotent: an instance that is already gone (or was
    /// never launched) reports [`DeleteStatus::Gone`].
    fn delete<'a>(&'a self, machine: &'a MachineId) -> BoxFuture<'a, Result<DeleteStatus>>;

    /// The machine's instance; [`CloudProviderError::NotFound`] once it is terminated or gone.
    fn get<'a>(&'a self, machine: &'a MachineId) -> BoxFuture<'a, Result<LaunchedInstance>>;

    /// Every live instance this cluster launched (tagged for it), whether or not a machine still
    /// accounts for it: garbage collection compares the two.
    fn list(&self) -> BoxFuture<'_, Result<Vec<LaunchedInstance>>>;

    /// The instance types a node template can launch, with one offering per zone (of the
    /// template's subnets) and capacity type, priced where a price is known. Offerings held out
    /// after a capacity error are marked unavailable.
    fn instance_types<'a>(
        &'a self,
        template: &'a NodeTemplate,
    ) -> BoxFuture<'a, Result<Vec<InstanceType>>>;

    /// Why a launched instance no longer matches its node template, or `None` when it does.
    fn is_drifted<'a>(
        &'a self,
        instance: &'a LaunchedInstance,
        template: &'a NodeTemplate,
    ) -> BoxFuture<'a, Result<Option<DriftReason>>>;

    /// What a node template's selectors resolve to now (subnets, security groups, images),
    /// for its status.
    fn template_status<'a>(
        &'a self,
        template: &'a NodeTemplate,
    ) -> BoxFuture<'a, Result<AwsNodeTemplateStatus>>;

    /// Deletes what launches left behind that nothing uses any more (EC2 launch templates);
    /// returns what it deleted.
    fn delete_unused(&self) -> BoxFuture<'_, Result<Vec<String>>> {
        Box::pin(std::future::ready(Ok(Vec::new())))
    }

    /// A short name for logs and metric labels (`aws`, `fake`).
    fn name(&self) -> &'static str;

    /// Whether spot prices are an estimate (offline, from the on-demand list prices), so that
    /// what prints them says so.
    fn estimates_spot_prices(&self) -> bool {
        false
    }
}
