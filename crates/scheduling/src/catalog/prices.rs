//! Prices per hour, read from a `--prices` file, and their application to offerings.
//!
//! File format: `{"region", "source"?, "onDemand": {type: usd}, "spot": {zone: {type: usd}}}`.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::CatalogError;
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
}

/// What a price table did not cover, so a caller can warn once rather than per offering.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PriceGaps {
    /// Types with no on-demand price: their on-demand offerings (and spot offerings without a
    /// spot price) have no price, and the scheduler ranks them by size.
    pub missing_on_demand: Vec<String>,
    /// (type, zone) spot offerings priced at the on-demand price for want of a spot price.
    pub spot_from_on_demand: Vec<(String, String)>,
}

impl PriceGaps {
    pub fn is_empty(&self) -> bool {
        self.missing_on_demand.is_empty() && self.spot_from_on_demand.is_empty()
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
        Ok(table)
    }

    pub fn on_demand_price(&self, instance_type: &str) -> Option<f64> {
        self.on_demand.get(instance_type).copied()
    }

    /// The spot price in `zone`, without any fallback.
    pub fn spot_price(&self, instance_type: &str, zone: &str) -> Option<f64> {
        self.spot.get(zone)?.get(instance_type).copied()
    }

    /// The price of an offering: spot falls back to on-demand; `None` when neither is known.
    pub fn price(
        &self,
        instance_type: &str,
        zone: &str,
        capacity_type: CapacityType,
    ) -> Option<f64> {
        match capacity_type {
            CapacityType::OnDemand => self.on_demand_price(instance_type),
            CapacityType::Spot => self
                .spot_price(instance_type, zone)
                .or_else(|| self.on_demand_price(instance_type)),
        }
    }

    /// Sets `price_per_hour` on every offering and reports what was missing.
    pub fn apply(&self, instance_types: &mut [InstanceType]) -> PriceGaps {
        let mut gaps = PriceGaps::default();
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
                    gaps.spot_from_on_demand
                        .push((it.name.clone(), offering.zone.clone()));
                }
            }
        }
        gaps
    }
}
