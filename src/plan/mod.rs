//! `nodewright plan`: the offline what-if. Provisioners, node templates, pods, nodes and
//! daemonsets in; the launch plan, its cost and its lower bound out.
//!
//! Pipeline: read ([`input`]) → convert to the core's inputs ([`cluster`]) → schedule (the pure
//! core) → print ([`output`]).

pub mod cluster;
pub mod input;
pub mod output;

use std::path::PathBuf;
use std::sync::Arc;

use nodewright_scheduling::allocatable::AllocatableSettings;
use nodewright_scheduling::catalog::{Catalog, CatalogError, PriceGaps, PriceTable};
use nodewright_scheduling::instance_type::InstanceType;
use nodewright_scheduling::{Plan, SchedulerSettings, schedule};

pub use cluster::Placement;
pub use input::{ClusterInput, InputError};

/// Where `plan` gets instance types and prices from.
#[derive(Debug, Clone, Default)]
pub struct CatalogSource {
    /// DescribeInstanceTypes output replacing the embedded instance-type records.
    pub instance_types: Option<PathBuf>,
    /// DescribeInstanceTypeOfferings output replacing the embedded offerings.
    pub offerings: Option<PathBuf>,
    /// A price file (`{"region", "onDemand", "spot"}`); without one, the embedded list prices
    /// (spot estimated).
    pub prices: Option<PathBuf>,
    /// The region to plan in; defaults to the price file's, else us-east-1.
    pub region: Option<String>,
}

pub const DEFAULT_REGION: &str = "us-east-1";

/// Instance types with offerings, priced, for one region.
#[derive(Debug)]
pub struct Offerings {
    pub region: String,
    pub instance_types: Vec<Arc<InstanceType>>,
    /// The prices applied: the price file's, else the embedded list prices; `None` when the
    /// region has neither, and everything is ranked by size.
    pub prices: Option<PriceTable>,
    /// What `prices` lacked.
    pub price_gaps: Option<PriceGaps>,
}

#[derive(Debug, thiserror::Error)]
pub enum CatalogLoadError {
    #[error("{}: {error}", path.display())]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{}: {error}", path.display())]
    Parse { path: PathBuf, error: CatalogError },
    #[error(transparent)]
    Catalog(#[from] CatalogError),
}

impl CatalogSource {
    pub fn load(&self) -> Result<Offerings, CatalogLoadError> {
        let read = |path: &PathBuf| {
            std::fs::read_to_string(path).map_err(|error| CatalogLoadError::Read {
                path: path.clone(),
                error,
            })
        };
        let mut catalog = Catalog::embedded()?;
        if let Some(path) = &self.instance_types {
            catalog = catalog
                .with_instance_types_json(&read(path)?)
                .map_err(|source| parse_error(path, source))?;
        }
        if let Some(path) = &self.offerings {
            catalog = catalog
                .with_offerings_json(&read(path)?)
                .map_err(|source| parse_error(path, source))?;
        }
        let prices = match &self.prices {
            Some(path) => Some(
                PriceTable::from_json(&read(path)?).map_err(|source| parse_error(path, source))?,
            ),
            None => None,
        };
        let region = self
            .region
            .clone()
            .or_else(|| prices.as_ref().map(|p| p.region.clone()))
            .unwrap_or_else(|| DEFAULT_REGION.to_string());
        if let Some(table) = &prices
            && table.region != region
        {
            return Err(CatalogError::PriceRegionMismatch {
                table: table.region.clone(),
                requested: region,
            }
            .into());
        }
        let prices = match prices {
            Some(table) => Some(table),
            None => PriceTable::embedded(&region)?,
        };
        let mut instance_types = catalog.instance_types(&region, None)?;
        let price_gaps = prices
            .as_ref()
            .map(|table| table.apply(&mut instance_types));
        Ok(Offerings {
            region,
            instance_types: instance_types.into_iter().map(Arc::new).collect(),
            prices,
            price_gaps,
        })
    }
}

/// A plan and what it was computed from, for printing.
#[derive(Debug)]
pub struct PlanReport {
    pub plan: Plan,
    pub region: String,
    /// Why prices are incomplete, when they are ("no price file" or what the file lacked).
    pub price_note: Option<String>,
    /// Spot offerings without a spot price were estimated (see [`PriceTable::spot_estimate`]).
    pub spot_estimated: bool,
}

/// Plan `input` against `offerings`.
pub fn plan(
    input: &ClusterInput,
    offerings: &Offerings,
    allocatable: &AllocatableSettings,
) -> Result<PlanReport, crate::convert::ConvertError> {
    let placement = cluster::Placement::build(
        input,
        &offerings.instance_types,
        allocatable,
        SchedulerSettings {
            region: Some(offerings.region.clone()),
            ..SchedulerSettings::default()
        },
    )?;
    let plan = placement.complete(schedule(&placement.schedule));
    let price_note = match &offerings.price_gaps {
        None => Some(format!(
            "no prices for {}: the embedded list prices do not cover it and no --prices file \
             was given; nodes are ranked by size",
            offerings.region
        )),
        Some(gaps) => gaps.summary(),
    };
    Ok(PlanReport {
        plan,
        region: offerings.region.clone(),
        price_note,
        spot_estimated: offerings
            .price_gaps
            .as_ref()
            .is_some_and(|gaps| gaps.spot_estimated > 0),
    })
}

fn parse_error(path: &std::path::Path, source: CatalogError) -> CatalogLoadError {
    CatalogLoadError::Parse {
        path: path.to_path_buf(),
        error: source,
    }
}
