//! Offerings (instance type × zone × capacity type) and subnets held out after EC2 said they have
//! no capacity or no free addresses. Entries expire after a TTL (3 minutes, as Karpenter's), so a
//! pool that recovers is used again.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use nodewright_scheduling::instance_type::{CapacityType, InstanceType};

use crate::cloudprovider::clock::Clock;
use crate::cloudprovider::error::OfferingKey;
use crate::sync::lock;

/// How long an offering stays out after an insufficient-capacity error.
pub const UNAVAILABLE_OFFERINGS_TTL: Duration = Duration::from_secs(3 * 60);

#[derive(Debug)]
pub struct UnavailableOfferings {
    clock: Arc<dyn Clock>,
    ttl: Duration,
    /// Expiry per offering.
    offerings: Mutex<HashMap<OfferingKey, SystemTime>>,
    /// Expiry per subnet id.
    subnets: Mutex<HashMap<String, SystemTime>>,
}

impl UnavailableOfferings {
    pub fn new(clock: Arc<dyn Clock>, ttl: Duration) -> Self {
        Self {
            clock,
            ttl,
            offerings: Mutex::new(HashMap::new()),
            subnets: Mutex::new(HashMap::new()),
        }
    }

    /// Holds an offering out for the TTL, counting from now.
    pub fn mark_unavailable(&self, instance_type: &str, zone: &str, capacity_type: CapacityType) {
        let key = OfferingKey {
            instance_type: instance_type.to_string(),
            zone: zone.to_string(),
            capacity_type,
        };
        let until = self.clock.now() + self.ttl;
        lock(&self.offerings).insert(key, until);
    }

    /// Marks every offering of `types` that is held out as unavailable.
    pub fn mark(&self, types: &mut [InstanceType]) {
        for instance_type in types {
            for offering in &mut instance_type.offerings {
                if self.is_unavailable(&instance_type.name, &offering.zone, offering.capacity_type)
                {
                    offering.available = false;
                }
            }
        }
    }

    pub fn is_unavailable(
        &self,
        instance_type: &str,
        zone: &str,
        capacity_type: CapacityType,
    ) -> bool {
        let key = OfferingKey {
            instance_type: instance_type.to_string(),
            zone: zone.to_string(),
            capacity_type,
        };
        let now = self.clock.now();
        let mut offerings = lock(&self.offerings);
        match offerings.get(&key) {
            Some(until) if *until > now => true,
            Some(_) => {
                offerings.remove(&key);
                false
            }
            None => false,
        }
    }

    /// Holds a subnet out (it ran out of addresses) for the TTL.
    pub fn mark_subnet_full(&self, subnet_id: &str) {
        let until = self.clock.now() + self.ttl;
        lock(&self.subnets).insert(subnet_id.to_string(), until);
    }

    pub fn is_subnet_full(&self, subnet_id: &str) -> bool {
        let now = self.clock.now();
        let mut subnets = lock(&self.subnets);
        match subnets.get(subnet_id) {
            Some(until) if *until > now => true,
            Some(_) => {
                subnets.remove(subnet_id);
                false
            }
            None => false,
        }
    }

    /// The offerings held out now, sorted.
    pub fn offerings(&self) -> Vec<OfferingKey> {
        let now = self.clock.now();
        let mut held: Vec<OfferingKey> = lock(&self.offerings)
            .iter()
            .filter(|(_, until)| **until > now)
            .map(|(key, _)| key.clone())
            .collect();
        held.sort();
        held
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloudprovider::clock::ManualClock;

    #[test]
    fn an_offering_is_held_out_for_the_ttl_then_returns() {
        let clock = Arc::new(ManualClock::fixed());
        let cache = UnavailableOfferings::new(clock.clone(), UNAVAILABLE_OFFERINGS_TTL);
        cache.mark_unavailable("m5.large", "us-east-1a", CapacityType::Spot);
        assert!(cache.is_unavailable("m5.large", "us-east-1a", CapacityType::Spot));
        // Only that exact offering is out.
        assert!(!cache.is_unavailable("m5.large", "us-east-1a", CapacityType::OnDemand));
        assert!(!cache.is_unavailable("m5.large", "us-east-1b", CapacityType::Spot));
        clock.advance(Duration::from_secs(179));
        assert!(cache.is_unavailable("m5.large", "us-east-1a", CapacityType::Spot));
        clock.advance(Duration::from_secs(1));
        assert!(!cache.is_unavailable("m5.large", "us-east-1a", CapacityType::Spot));
        assert!(cache.offerings().is_empty());
    }

    #[test]
    fn marking_again_restarts_the_hold() {
        let clock = Arc::new(ManualClock::fixed());
        let cache = UnavailableOfferings::new(clock.clone(), UNAVAILABLE_OFFERINGS_TTL);
        cache.mark_unavailable("c5.xlarge", "us-east-1c", CapacityType::OnDemand);
        clock.advance(Duration::from_secs(120));
        cache.mark_unavailable("c5.xlarge", "us-east-1c", CapacityType::OnDemand);
        clock.advance(Duration::from_secs(120));
        assert!(cache.is_unavailable("c5.xlarge", "us-east-1c", CapacityType::OnDemand));
    }

    #[test]
    fn full_subnets_are_held_out_separately() {
        let clock = Arc::new(ManualClock::fixed());
        let cache = UnavailableOfferings::new(clock.clone(), UNAVAILABLE_OFFERINGS_TTL);
        cache.mark_subnet_full("subnet-1");
        assert!(cache.is_subnet_full("subnet-1"));
        assert!(!cache.is_subnet_full("subnet-2"));
        clock.advance(UNAVAILABLE_OFFERINGS_TTL);
        assert!(!cache.is_subnet_full("subnet-1"));
    }
}
