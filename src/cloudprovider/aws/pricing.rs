//! Prices per hour: a `--prices` file when one is given; otherwise on-demand list prices from the
//! AWS Pricing API (refreshed every 12 h; the embedded list prices when it cannot be asked or has
//! not answered yet) and spot prices from DescribeSpotPriceHistory (refreshed every 5 min). Whatever is missing is left to [`PriceTable::apply`]'s rules (spot
//! falls back to on-demand; types without any price rank by size), with one warning.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use aws_sdk_pricing::types::{Filter as PricingFilter, FilterType};
use nodewright_scheduling::catalog::PriceTable;

use super::ec2::{Ec2Api, Ec2Result};
use super::errors::Ec2Error;
use super::sdk::sdk_error;
use crate::cloudprovider::BoxFuture;
use crate::cloudprovider::clock::{Clock, expired};

pub const ON_DEMAND_PRICES_TTL: Duration = Duration::from_secs(12 * 60 * 60);
pub const SPOT_PRICES_TTL: Duration = Duration::from_secs(5 * 60);

/// On-demand list prices by instance type for a region.
pub trait PricingApi: Send + Sync {
    fn on_demand_prices(&self, region: String) -> BoxFuture<'_, Ec2Result<BTreeMap<String, f64>>>;
}

/// The AWS Pricing API (`GetProducts`, Linux, shared tenancy, no pre-installed software).
#[derive(Debug, Clone)]
pub struct SdkPricing {
    client: aws_sdk_pricing::Client,
}

impl SdkPricing {
    /// The Pricing API lives in a few regions only; us-east-1 serves every region's prices.
    pub fn new(config: &aws_config::SdkConfig) -> Self {
        let conf = aws_sdk_pricing::config::Builder::from(config)
            .region(aws_sdk_pricing::config::Region::new("us-east-1"))
            .build();
        Self {
            client: aws_sdk_pricing::Client::from_conf(conf),
        }
    }
}

impl PricingApi for SdkPricing {
    fn on_demand_prices(&self, region: String) -> BoxFuture<'_, Ec2Result<BTreeMap<String, f64>>> {
        Box::pin(async move {
            let terms = [
                ("regionCode", region.as_str()),
                ("operatingSystem", "Linux"),
                ("tenancy", "Shared"),
                ("preInstalledSw", "NA"),
                ("capacitystatus", "Used"),
                ("productFamily", "Compute Instance"),
            ];
            let filters = terms
                .iter()
                .map(|(field, value)| {
                    PricingFilter::builder()
                        .r#type(FilterType::TermMatch)
                        .field(*field)
                        .value(*value)
                        .build()
                        .map_err(|e| Ec2Error::permanent("GetProducts", e.to_string()))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let documents: Vec<String> = self
                .client
                .get_products()
                .service_code("AmazonEC2")
                .set_filters(Some(filters))
                .into_paginator()
                .items()
                .send()
                .try_collect()
                .await
                .map_err(|e| sdk_error("GetProducts", e))?;
            Ok(documents
                .iter()
                .filter_map(|doc| on_demand_price_of(doc))
                .collect())
        })
    }
}

/// The (instance type, USD per hour) of one Pricing API price-list document, when it has a
/// positive on-demand price.
pub fn on_demand_price_of(document: &str) -> Option<(String, f64)> {
    let doc: serde_json::Value = serde_json::from_str(document).ok()?;
    let instance_type = doc
        .pointer("/product/attributes/instanceType")?
        .as_str()?
        .to_string();
    let terms = doc.pointer("/terms/OnDemand")?.as_object()?;
    let price = terms
        .values()
        .filter_map(|term| term.get("priceDimensions")?.as_object())
        .flat_map(|dimensions| dimensions.values())
        .filter_map(|d| {
            d.pointer("/pricePerUnit/USD")?
                .as_str()?
                .parse::<f64>()
                .ok()
        })
        .find(|price| price.is_finite() && *price > 0.0)?;
    Some((instance_type, price))
}

type Timed<T> = Mutex<Option<(SystemTime, T)>>;

/// Assembles the price table the instance types are priced from.
pub struct Pricing {
    ec2: Arc<dyn Ec2Api>,
    api: Option<Arc<dyn PricingApi>>,
    clock: Arc<dyn Clock>,
    region: String,
    /// `--prices`: when set, the only source.
    file: Option<PriceTable>,
    on_demand: Timed<BTreeMap<String, f64>>,
    spot: Timed<BTreeMap<String, BTreeMap<String, f64>>>,
    warned: AtomicBool,
}

impl Pricing {
    pub fn new(
        ec2: Arc<dyn Ec2Api>,
        api: Option<Arc<dyn PricingApi>>,
        clock: Arc<dyn Clock>,
        region: &str,
        file: Option<PriceTable>,
    ) -> Self {
        Self {
            ec2,
            api,
            clock,
            region: region.to_string(),
            file,
            on_demand: Mutex::new(None),
            spot: Mutex::new(None),
            warned: AtomicBool::new(false),
        }
    }

    /// Whether spot prices come from an estimate rather than a price source.
    pub fn estimates_spot(&self) -> bool {
        self.file
            .as_ref()
            .is_some_and(|f| f.spot_estimate.is_some())
    }

    /// The current price table for the region.
    pub async fn table(&self) -> PriceTable {
        if let Some(file) = &self.file {
            return file.clone();
        }
        PriceTable {
            region: self.region.clone(),
            source: Some("AWS Pricing API and DescribeSpotPriceHistory".to_string()),
            on_demand: self.on_demand().await,
            spot: self.spot().await,
            spot_estimate: None,
        }
    }

    /// Warns once, for the life of the provider, that some prices are missing.
    pub fn warn_once(&self, what: &str) {
        if !self.warned.swap(true, Ordering::Relaxed) {
            tracing::warn!(region = %self.region, "incomplete prices: {what}");
        }
    }

    async fn on_demand(&self) -> BTreeMap<String, f64> {
        if let Some(fresh) = self.fresh(&self.on_demand, ON_DEMAND_PRICES_TTL) {
            return fresh;
        }
        let Some(api) = &self.api else {
            // An isolated VPC: no Pricing API to ask. Kept like an answer, not decoded per call.
            let prices = self.list_prices();
            self.store(&self.on_demand, prices.clone());
            return prices;
        };
        match api.on_demand_prices(self.region.clone()).await {
            Ok(prices) => {
                self.store(&self.on_demand, prices.clone());
                prices
            }
            Err(err) => {
                tracing::warn!(error = %err, "on-demand prices unavailable; keeping the last known, else the embedded list prices");
                self.last(&self.on_demand)
                    .unwrap_or_else(|| self.list_prices())
            }
        }
    }

    /// The embedded on-demand list prices of the region (empty for a region they lack).
    fn list_prices(&self) -> BTreeMap<String, f64> {
        match PriceTable::embedded(&self.region) {
            Ok(table) => table.map(|t| t.on_demand).unwrap_or_default(),
            Err(error) => {
                tracing::error!(%error, "the embedded price table cannot be read");
                BTreeMap::new()
            }
        }
    }

    async fn spot(&self) -> BTreeMap<String, BTreeMap<String, f64>> {
        if let Some(fresh) = self.fresh(&self.spot, SPOT_PRICES_TTL) {
            return fresh;
        }
        match self.ec2.describe_spot_price_history(self.clock.now()).await {
            Ok(history) => {
                // The newest price of each (zone, type) wins.
                let mut newest: BTreeMap<(String, String), (Option<SystemTime>, f64)> =
                    BTreeMap::new();
                for entry in history
                    .into_iter()
                    .filter(|p| p.price.is_finite() && p.price >= 0.0)
                {
                    let key = (entry.zone, entry.instance_type);
                    let replace = newest
                        .get(&key)
                        .is_none_or(|(at, _)| entry.timestamp >= *at);
                    if replace {
                        newest.insert(key, (entry.timestamp, entry.price));
                    }
                }
                let mut by_zone: BTreeMap<String, BTreeMap<String, f64>> = BTreeMap::new();
                for ((zone, instance_type), (_, price)) in newest {
                    by_zone
                        .entry(zone)
                        .or_default()
                        .insert(instance_type, price);
                }
                self.store(&self.spot, by_zone.clone());
                by_zone
            }
            Err(err) => {
                tracing::warn!(error = %err, "spot prices unavailable; keeping the last known");
                self.last(&self.spot).unwrap_or_default()
            }
        }
    }

    fn fresh<T: Clone>(&self, slot: &Timed<T>, ttl: Duration) -> Option<T> {
        let now = self.clock.now();
        let slot = slot.lock().unwrap_or_else(|p| p.into_inner());
        let (at, value) = slot.as_ref()?;
        (!expired(*at, ttl, now)).then(|| value.clone())
    }

    fn last<T: Clone>(&self, slot: &Timed<T>) -> Option<T> {
        let slot = slot.lock().unwrap_or_else(|p| p.into_inner());
        slot.as_ref().map(|(_, value)| value.clone())
    }

    fn store<T>(&self, slot: &Timed<T>, value: T) {
        *slot.lock().unwrap_or_else(|p| p.into_inner()) = Some((self.clock.now(), value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn price_list_documents_yield_the_on_demand_hourly_price() {
        let doc = r#"{
          "product": {"productFamily": "Compute Instance",
                      "attributes": {"instanceType": "m5.large", "regionCode": "us-east-1"}},
          "terms": {"OnDemand": {"ABC.JRTCKXETXF": {"priceDimensions": {
              "ABC.JRTCKXETXF.6YS6EN2CT7": {"unit": "Hrs", "pricePerUnit": {"USD": "0.0960000000"}}}}}}
        }"#;
        assert_eq!(
            on_demand_price_of(doc),
            Some(("m5.large".to_string(), 0.096))
        );
    }

    #[test]
    fn documents_without_a_positive_price_are_skipped() {
        let zero = r#"{"product": {"attributes": {"instanceType": "m5.large"}},
            "terms": {"OnDemand": {"T": {"priceDimensions": {"D": {"pricePerUnit": {"USD": "0.0000000000"}}}}}}}"#;
        assert_eq!(on_demand_price_of(zero), None);
        assert_eq!(on_demand_price_of("not json"), None);
        assert_eq!(on_demand_price_of(r#"{"terms": {}}"#), None);
    }
}
