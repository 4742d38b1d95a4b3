//! Instance types and where they are offered: DescribeInstanceTypes and
//! DescribeInstanceTypeOfferings (by availability zone), cached for 5 minutes; the catalog
//! embedded in the binary when EC2 cannot be reached.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use nodewright_scheduling::catalog::{Catalog, InstanceTypeOffering};
use nodewright_scheduling::instance_type::InstanceType;

use super::ec2::Ec2Api;
use super::errors::Ec2Error;
use crate::cloudprovider::clock::{Clock, expired};
use crate::cloudprovider::error::CloudProviderError;

/// How long the live instance-type data is reused.
pub const INSTANCE_TYPES_TTL: Duration = Duration::from_secs(5 * 60);
/// How long the embedded fallback is used before EC2 is asked again.
pub const FALLBACK_TTL: Duration = Duration::from_secs(60);

/// Where the current catalog came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CatalogSource {
    Ec2,
    Embedded,
}

/// The region's instance types, unpriced, each with an offering per zone and capacity type.
pub type RegionTypes = Arc<Vec<InstanceType>>;

struct Cached {
    at: SystemTime,
    source: CatalogSource,
    types: RegionTypes,
}

/// The region's instance types, live from EC2 when it answers.
pub struct InstanceTypeCatalog {
    ec2: Arc<dyn Ec2Api>,
    clock: Arc<dyn Clock>,
    region: String,
    ttl: Duration,
    cache: Mutex<Option<Cached>>,
    /// Serialises refreshes, so concurrent callers do not all call EC2.
    refresh: tokio::sync::Mutex<()>,
    warned: AtomicBool,
}

impl InstanceTypeCatalog {
    pub fn new(ec2: Arc<dyn Ec2Api>, clock: Arc<dyn Clock>, region: &str, ttl: Duration) -> Self {
        Self {
            ec2,
            clock,
            region: region.to_string(),
            ttl,
            cache: Mutex::new(None),
            refresh: tokio::sync::Mutex::new(()),
            warned: AtomicBool::new(false),
        }
    }

    /// The current instance types and where they came from, refreshing them when stale.
    pub async fn get(&self) -> Result<(RegionTypes, CatalogSource), CloudProviderError> {
        if let Some(hit) = self.fresh() {
            return Ok(hit);
        }
        let _refreshing = self.refresh.lock().await;
        if let Some(hit) = self.fresh() {
            return Ok(hit);
        }
        self.refresh_now().await
    }

    /// Fetches from EC2 now, falling back to the embedded catalog (with one warning) when EC2
    /// cannot be reached.
    pub async fn refresh_now(&self) -> Result<(RegionTypes, CatalogSource), CloudProviderError> {
        let (catalog, source) = match self.fetch().await {
            Ok(catalog) => (catalog, CatalogSource::Ec2),
            Err(err) => {
                if !self.warned.swap(true, Ordering::Relaxed) {
                    tracing::warn!(error = %err, "EC2 instance types unavailable; using the embedded catalog");
                }
                let embedded = Catalog::embedded().map_err(|e| {
                    CloudProviderError::InvalidConfiguration(format!(
                        "EC2 instance types unavailable ({err}) and the embedded catalog is unusable: {e}"
                    ))
                })?;
                (embedded, CatalogSource::Embedded)
            }
        };
        let types = catalog.instance_types(&self.region, None).map_err(|e| {
            CloudProviderError::InvalidConfiguration(format!(
                "instance types for {} ({source:?}): {e}",
                self.region
            ))
        })?;
        let types = Arc::new(types);
        *self.cache.lock().unwrap_or_else(|p| p.into_inner()) = Some(Cached {
            at: self.clock.now(),
            source,
            types: types.clone(),
        });
        Ok((types, source))
    }

    fn fresh(&self) -> Option<(RegionTypes, CatalogSource)> {
        let now = self.clock.now();
        let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        let cached = cache.as_ref()?;
        let ttl = match cached.source {
            CatalogSource::Ec2 => self.ttl,
            CatalogSource::Embedded => FALLBACK_TTL.min(self.ttl),
        };
        (!expired(cached.at, ttl, now)).then(|| (cached.types.clone(), cached.source))
    }

    async fn fetch(&self) -> Result<Catalog, Ec2Error> {
        let records = self.ec2.describe_instance_types().await?;
        let offerings: Vec<InstanceTypeOffering> = self
            .ec2
            .describe_instance_type_offerings()
            .await?
            .into_iter()
            .map(|o| InstanceTypeOffering {
                instance_type: o.instance_type,
                location_type: Some("availability-zone".to_string()),
                location: o.zone,
            })
            .collect();
        if records.is_empty() || offerings.is_empty() {
            return Err(Ec2Error::transport(
                "DescribeInstanceTypes",
                "EC2 listed no instance types or offerings",
            ));
        }
        Catalog::from_records(
            records,
            offerings,
            "EC2 DescribeInstanceTypes and DescribeInstanceTypeOfferings",
        )
        .map_err(|e| Ec2Error::permanent("DescribeInstanceTypes", e.to_string()))
    }
}
