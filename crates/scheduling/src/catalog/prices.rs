//! Prices per hour, read from a `--prices` file or the embedded list prices, and their
//! application to offerings.
//!
//! File format: `{"region", "source"?, "onDemand": {type: usd}, "spot": {zone: {type: usd}},
//! "spotEstimate"?: fraction}`.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::{CatalogError, embedded_json};
use crate::instance_type::{CapacityType, InstanceType};

/// US dollars per hour by instance type (on-demand) and by zone and type (spot), for one region.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PriceTable {
    pub region: String,
    /// Where the figures came from (free text).
    #[serde(default)]
    pub source: Option<String>,
    #[serde(default)]
    pub on_demand: BTreeMap<String, f64>,
    /// zone → instance type → price.
    #[serde(default)]
    pub spot: BTreeMap<String, BTreeMap<String, f64>>,
    /// A spot offering without a spot price is estimated at this fraction of its on-demand
    /// price; without one, it is priced at on-demand.
    #[serde(default)]
    pub spot_estimate: Option<f64>,
}

/// AWS's public on-demand list prices; regenerate with `python3 hack/gen-prices.py`.
const EMBEDDED_GZIP: &[u8] = include_bytes!("../../data/ec2-ondemand-prices.json.gz");

/// Offline, spot is estimated at 40% of on-demand: our own round figure, inside the savings
/// AWS advertises for spot ("up to 90%"). A flat rule keeps spot offerings in on-demand's order.
pub const SPOT_ESTIMATE_OF_ON_DEMAND: f64 = 0.4;

/// The embedded file's shape (see `hack/gen-prices.py`).
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct EmbeddedPrices {
    source: String,
    regions: BTreeMap<String, BTreeMap<String, f64>>,
}

/// What a price table did not cover, so a caller can warn once rather than per offering.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PriceGaps {
    /// Types with no on-demand price: their on-demand offerings (and spot offerings without a
    /// spot price) have no price, and the scheduler ranks them by size.
    pub missing_on_demand: Vec<String>,
    /// (type, zone) spot offerings priced at the on-demand price for want of a spot price.
    pub spot_from_on_demand: Vec<(String, String)>,
    /// Spot offerings priced by the table's `spotEstimate` for want of a spot price.
    pub spot_estimated: usize,
    /// That estimate, as a fraction of on-demand.
    pub spot_estimate: Option<f64>,
}

impl PriceGaps {
    pub fn is_empty(&self) -> bool {
        self.missing_on_demand.is_empty()
            && self.spot_from_on_demand.is_empty()
            && self.spot_estimated == 0
    }

    /// One line for a log or a table footer; `None` when nothing is missing.
    pub fn summary(&self) -> Option<String> {
        if self.is_empty() {
            return None;
        }
        let mut parts = Vec::new();
        if !self.missing_on_demand.is_empty() {
            parts.push(format!(
                "{} instance types have no on-demand price ({}), ranked by size",
                self.missing_on_demand.len(),
                abbreviate(&self.missing_on_demand)
            ));
        }
        if !self.spot_from_on_demand.is_empty() {
            parts.push(format!(
                "{} spot offerings have no spot price and use the on-demand price",
                self.spot_from_on_demand.len()
            ));
        }
        if self.spot_estimated > 0 {
            parts.push(format!(
                "{} spot offerings have no spot price and are estimated at {:.0}% of on-demand",
                self.spot_estimated,
                self.spot_estimate.unwrap_or(1.0) * 100.0
            ));
        }
        Some(parts.join("; "))
    }
}

fn abbreviate(names: &[String]) -> String {
    const SHOWN: usize = 5;
    let mut text = names
        .iter()
        .take(SHOWN)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > SHOWN {
        text.push_str(&format!(", … {} more", names.len() - SHOWN));
    }
    text
}

impl PriceTable {
    /// The embedded on-demand list prices of `region`, spot estimated by
    /// [`SPOT_ESTIMATE_OF_ON_DEMAND`]; `None` for a region the table lacks.
    pub fn embedded(region: &str) -> Result<Option<PriceTable>, CatalogError> {
        let mut embedded: EmbeddedPrices = embedded_json(EMBEDDED_GZIP, "embedded price table")?;
        Ok(embedded.regions.remove(region).map(|on_demand| PriceTable {
            region: region.to_string(),
            source: Some(embedded.source),
            on_demand,
            spot: BTreeMap::new(),
            spot_estimate: Some(SPOT_ESTIMATE_OF_ON_DEMAND),
        }))
    }

    /// Parses a `--prices` file; every price must be a finite, non-negative number.
    pub fn from_json(json: &str) -> Result<PriceTable, CatalogError> {
        let table: PriceTable =
            serde_json::from_str(json).map_err(|source| CatalogError::Json {
                what: "price table",
                source,
            })?;
        let spot = table
            .spot
            .iter()
            .flat_map(|(zone, prices)| prices.iter().map(move |(t, p)| (t, Some(zone), *p)));
        let on_demand = table.on_demand.iter().map(|(t, p)| (t, None, *p));
        if let Some((instance_type, zone, price)) = on_demand
            .chain(spot)
            .find(|(_, _, price)| !(price.is_finite() && *price >= 0.0))
        {
            return Err(CatalogError::InvalidPrice {
                instance_type: instance_type.clone(),
                zone: zone.cloned(),
                price,
            });
        }
        if let Some(fraction) = table.spot_estimate
            && !(0.0..=1.0).contains(&fraction)
        {
            return Err(CatalogError::InvalidSpotEstimate(fraction));
        }
        Ok(table)
    }

    pub fn on_demand_price(&self, instance_type: &str) -> Option<f64> {
        self.on_demand.get(instance_type).copied()
    }

    /// The spot price in `zone`, without any fallback.
    pub fn spot_price(&self, instance_type: &str, zone: &str) -> Option<f64> {
        self.spot.get(zone)?.get(instance_type).copied()
    }

    /// The price of an offering: spot falls back to the estimate, then to on-demand; `None`
    /// when neither is known.
    pub fn price(
        &self,
        instance_type: &str,
        zone: &str,
        capacity_type: CapacityType,
    ) -> Option<f64> {
        match capacity_type {
            CapacityType::OnDemand => self.on_demand_price(instance_type),
            CapacityType::Spot => self.spot_price(instance_type, zone).or_else(|| {
                let on_demand = self.on_demand_price(instance_type)?;
                Some(on_demand * self.spot_estimate.unwrap_or(1.0))
            }),
        }
    }

    /// Sets `price_per_hour` on every offering and reports what was missing.
    pub fn apply(&self, instance_types: &mut [InstanceType]) -> PriceGaps {
        let mut gaps = PriceGaps {
            spot_estimate: self.spot_estimate,
            ..PriceGaps::default()
        };
        for it in instance_types.iter_mut() {
            if self.on_demand_price(&it.name).is_none() {
                gaps.missing_on_demand.push(it.name.clone());
            }
            for offering in &mut it.offerings {
                offering.price_per_hour =
                    self.price(&it.name, &offering.zone, offering.capacity_type);
                if offering.capacity_type == CapacityType::Spot
                    && self.spot_price(&it.name, &offering.zone).is_none()
                    && offering.price_per_hour.is_some()
                {
                    if self.spot_estimate.is_some() {
                        gaps.spot_estimated += 1;
                    } else {
                        gaps.spot_from_on_demand
                            .push((it.name.clone(), offering.zone.clone()));
                    }
                }
            }
        }
        gaps
    }
}
