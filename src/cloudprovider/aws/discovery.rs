//! Subnets and security groups found by a node template's selectors.
//!
//! A selector is a map whose entries must all match: `KEY: VALUE` (tag equals), `KEY: "a,b"`
//! (tag is any of), `KEY: "*"` (tag present, any value), and `aws-ids: "id-1,id-2"` (by id).
//! Results are cached briefly; launches pick, per zone, the subnet with the most free addresses.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use super::ec2::{Ec2Api, Filter, SecurityGroup, Subnet};
use super::unavailable::UnavailableOfferings;
use crate::cloudprovider::clock::{Clock, expired};
use crate::cloudprovider::error::CloudProviderError;
use crate::sync::lock;

/// The selector key that lists resource ids instead of tags.
pub const AWS_IDS: &str = "aws-ids";

/// How long discovered subnets and security groups are reused.
pub const DISCOVERY_TTL: Duration = Duration::from_secs(60);

/// The EC2 filters for a selector; `id_filter` names the id filter (`subnet-id`, `group-id`).
pub fn selector_filters(selector: &BTreeMap<String, String>, id_filter: &str) -> Vec<Filter> {
    selector
        .iter()
        .map(|(key, value)| {
            if key == AWS_IDS {
                Filter::new(id_filter, split_list(value))
            } else if value.trim() == "*" {
                Filter::tag_key(key)
            } else {
                Filter::tag(key, split_list(value))
            }
        })
        .collect()
}

fn split_list(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_string)
        .collect()
}

/// Per zone, the subnet with the most free addresses (ties: the smaller id), leaving out
/// subnets that recently ran out of addresses.
pub fn subnet_per_zone(
    subnets: &[Subnet],
    unavailable: &UnavailableOfferings,
) -> BTreeMap<String, Subnet> {
    let mut best: BTreeMap<String, Subnet> = BTreeMap::new();
    for subnet in subnets
        .iter()
        .filter(|s| !unavailable.is_subnet_full(&s.id))
    {
        let better = match best.get(&subnet.zone) {
            None => true,
            Some(current) => {
                (
                    subnet.available_ip_address_count,
                    std::cmp::Reverse(&subnet.id),
                ) > (
                    current.available_ip_address_count,
                    std::cmp::Reverse(&current.id),
                )
            }
        };
        if better {
            best.insert(subnet.zone.clone(), subnet.clone());
        }
    }
    best
}

type Cached<T> = Mutex<HashMap<Vec<Filter>, (SystemTime, Vec<T>)>>;

/// Finds (and briefly caches) the subnets and security groups of selectors.
pub struct Discovery {
    ec2: Arc<dyn Ec2Api>,
    clock: Arc<dyn Clock>,
    ttl: Duration,
    subnets: Cached<Subnet>,
    security_groups: Cached<SecurityGroup>,
}

impl Discovery {
    pub fn new(ec2: Arc<dyn Ec2Api>, clock: Arc<dyn Clock>, ttl: Duration) -> Self {
        Self {
            ec2,
            clock,
            ttl,
            subnets: Mutex::new(HashMap::new()),
            security_groups: Mutex::new(HashMap::new()),
        }
    }

    /// The subnets a selector matches; an empty selector or no match is a configuration error.
    pub async fn subnets(
        &self,
        selector: &BTreeMap<String, String>,
    ) -> Result<Vec<Subnet>, CloudProviderError> {
        let filters = non_empty_filters(selector, "subnet-id", "subnetSelector")?;
        if let Some(hit) = self.cached(&self.subnets, &filters) {
            return Ok(hit);
        }
        let mut found = self.ec2.describe_subnets(filters.clone()).await?;
        if found.is_empty() {
            return Err(CloudProviderError::InvalidConfiguration(format!(
                "no subnets match subnetSelector {selector:?}"
            )));
        }
        found.sort_by(|a, b| a.id.cmp(&b.id));
        self.store(&self.subnets, filters, &found);
        Ok(found)
    }

    /// The security groups a selector matches, sorted by id.
    pub async fn security_groups(
        &self,
        selector: &BTreeMap<String, String>,
    ) -> Result<Vec<SecurityGroup>, CloudProviderError> {
        let filters = non_empty_filters(selector, "group-id", "securityGroupSelector")?;
        if let Some(hit) = self.cached(&self.security_groups, &filters) {
            return Ok(hit);
        }
        let mut found = self.ec2.describe_security_groups(filters.clone()).await?;
        if found.is_empty() {
            return Err(CloudProviderError::InvalidConfiguration(format!(
                "no security groups match securityGroupSelector {selector:?}"
            )));
        }
        found.sort_by(|a, b| a.id.cmp(&b.id));
        self.store(&self.security_groups, filters, &found);
        Ok(found)
    }

    /// Forgets everything, e.g. after a subnet ran out of addresses.
    pub fn invalidate(&self) {
        lock(&self.subnets).clear();
        lock(&self.security_groups).clear();
    }

    fn cached<T: Clone>(&self, cache: &Cached<T>, filters: &[Filter]) -> Option<Vec<T>> {
        let now = self.clock.now();
        let cache = lock(cache);
        let (at, found) = cache.get(filters)?;
        (!expired(*at, self.ttl, now)).then(|| found.clone())
    }

    fn store<T: Clone>(&self, cache: &Cached<T>, filters: Vec<Filter>, found: &[T]) {
        lock(cache).insert(filters, (self.clock.now(), found.to_vec()));
    }
}

fn non_empty_filters(
    selector: &BTreeMap<String, String>,
    id_filter: &str,
    field: &str,
) -> Result<Vec<Filter>, CloudProviderError> {
    let filters = selector_filters(selector, id_filter);
    if filters.is_empty() || filters.iter().any(|f| f.values.is_empty()) {
        return Err(CloudProviderError::InvalidConfiguration(format!(
            "{field} must name at least one tag or id, got {selector:?}"
        )));
    }
    Ok(filters)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloudprovider::aws::unavailable::UNAVAILABLE_OFFERINGS_TTL;
    use crate::cloudprovider::clock::ManualClock;

    fn selector(entries: &[(&str, &str)]) -> BTreeMap<String, String> {
        entries
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn selectors_become_tag_key_and_id_filters() {
        let filters = selector_filters(
            &selector(&[
                ("karpenter.sh/discovery", "my-cluster"),
                ("tier", "private, internal"),
                ("team", "*"),
                ("aws-ids", "subnet-1,subnet-2"),
            ]),
            "subnet-id",
        );
        assert_eq!(
            filters,
            vec![
                Filter::new("subnet-id", ["subnet-1", "subnet-2"]),
                Filter::tag("karpenter.sh/discovery", ["my-cluster"]),
                Filter::tag_key("team"),
                Filter::tag("tier", ["private", "internal"]),
            ]
        );
    }

    fn subnet(id: &str, zone: &str, free: i64) -> Subnet {
        Subnet {
            id: id.into(),
            zone: zone.into(),
            vpc_id: None,
            available_ip_address_count: free,
            tags: BTreeMap::new(),
        }
    }

    #[test]
    fn each_zone_gets_its_subnet_with_the_most_free_addresses() {
        let clock = Arc::new(ManualClock::fixed());
        let unavailable = UnavailableOfferings::new(clock, UNAVAILABLE_OFFERINGS_TTL);
        let subnets = [
            subnet("subnet-a1", "us-east-1a", 10),
            subnet("subnet-a2", "us-east-1a", 200),
            subnet("subnet-b1", "us-east-1b", 5),
            subnet("subnet-b0", "us-east-1b", 5),
        ];
        let chosen = subnet_per_zone(&subnets, &unavailable);
        assert_eq!(chosen["us-east-1a"].id, "subnet-a2");
        assert_eq!(chosen["us-east-1b"].id, "subnet-b0");

        unavailable.mark_subnet_full("subnet-a2");
        let chosen = subnet_per_zone(&subnets, &unavailable);
        assert_eq!(chosen["us-east-1a"].id, "subnet-a1");
    }
}
