//! What the controller knows of the instance types it may launch, as Karpenter v0.31's AWS
//! provider exports it: vCPUs and memory per type, and the hourly price of each offering.

use std::collections::BTreeMap;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::Mutex;

use nodewright_scheduling::catalog::region_of_zone;
use nodewright_scheduling::instance_type::{CapacityType, InstanceType};
use nodewright_scheduling::labels;
use prometheus::{GaugeVec, Opts, Registry};

use crate::sync::lock;

#[derive(Debug)]
pub struct InstanceTypeMetrics {
    cpu_cores: GaugeVec,
    memory_bytes: GaugeVec,
    price: GaugeVec,
    /// A digest of what was last set: the resolved types repeat every pass, and thousands of
    /// series need not be set again when nothing changed.
    last: Mutex<Option<u64>>,
}

impl InstanceTypeMetrics {
    pub(super) fn register(registry: &Registry) -> Result<InstanceTypeMetrics, prometheus::Error> {
        let gauge = |name: &str, help: &str, labels: &[&str]| {
            let metric = GaugeVec::new(Opts::new(name, help), labels)?;
            registry.register(Box::new(metric.clone()))?;
            Ok::<_, prometheus::Error>(metric)
        };
        Ok(InstanceTypeMetrics {
            cpu_cores: gauge(
                "karpenter_cloudprovider_instance_type_cpu_cores",
                "VCPUs of each instance type.",
                &["instance_type"],
            )?,
            memory_bytes: gauge(
                "karpenter_cloudprovider_instance_type_memory_bytes",
                "Memory of each instance type, in bytes.",
                &["instance_type"],
            )?,
            price: gauge(
                "karpenter_cloudprovider_instance_type_price_estimate",
                "US dollars per hour of each offering (zone empty for on-demand).",
                &["instance_type", "capacity_type", "region", "zone"],
            )?,
            last: Mutex::new(None),
        })
    }

    /// Sets the series from `types` (each type once, however many provisioners offer it),
    /// replacing those of types no longer offered.
    pub fn set<'a>(&self, region: &str, types: impl IntoIterator<Item = &'a InstanceType>) {
        let by_name: BTreeMap<&str, &InstanceType> =
            types.into_iter().map(|t| (t.name.as_str(), t)).collect();
        let mut hasher = DefaultHasher::new();
        region.hash(&mut hasher);
        for (name, it) in &by_name {
            name.hash(&mut hasher);
            it.capacity.cpu_millis.hash(&mut hasher);
            for offering in &it.offerings {
                offering.zone.hash(&mut hasher);
                offering.price_per_hour.map(f64::to_bits).hash(&mut hasher);
            }
        }
        let digest = hasher.finish();
        let mut last = lock(&self.last);
        if *last == Some(digest) {
            return;
        }
        *last = Some(digest);
        self.cpu_cores.reset();
        self.memory_bytes.reset();
        self.price.reset();
        for (name, it) in by_name {
            self.cpu_cores
                .with_label_values(&[name])
                .set(it.capacity.cpu_millis as f64 / 1000.0);
            self.memory_bytes
                .with_label_values(&[name])
                .set(it.capacity.memory_bytes as f64);
            for offering in &it.offerings {
                let Some(price) = offering.price_per_hour else {
                    continue;
                };
                // Without a configured region, the zone's tells it.
                let region = match region {
                    "" => region_of_zone(&offering.zone).unwrap_or_default(),
                    known => known,
                };
                let (capacity_type, zone) = match offering.capacity_type {
                    CapacityType::OnDemand => (labels::CAPACITY_TYPE_ON_DEMAND, ""),
                    CapacityType::Spot => (labels::CAPACITY_TYPE_SPOT, offering.zone.as_str()),
                };
                self.price
                    .with_label_values(&[name, capacity_type, region, zone])
                    .set(price);
            }
        }
    }
}
