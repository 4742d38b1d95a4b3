//! A deterministic, in-process [`CloudProvider`] for controller tests and the simulator.
//!
//! It launches the cheapest allowed offering (spot first when allowed, as the AWS provider
//! does), names instances `i-00000000000000001`, `…2`, … in launch order (their nodes
//! `ip-192-168-0-4.ec2.internal`, … as EKS names them), and can be told that
//! offerings have no capacity, that the next calls fail, or that an instance drifted. Offerings
//! that failed for capacity are held out for the same 3 minutes as on AWS, on the injected clock.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};

use nodewright_scheduling::catalog::{Catalog, CatalogError, PriceTable};
use nodewright_scheduling::instance_type::{CapacityType, InstanceType};
use nodewright_scheduling::labels;

use super::aws::unavailable::{UNAVAILABLE_OFFERINGS_TTL, UnavailableOfferings};
use super::clock::Clock;
use super::error::OfferingKey;
use super::types::{
    DeleteStatus, DriftReason, InstanceState, LaunchRequest, LaunchedInstance, MachineId,
    NodeTemplate, instance_id_of, provider_id,
};
use super::{BoxFuture, CloudProvider, CloudProviderError, Result};
use crate::apis::node_template::{
    AmiStatus, AwsNodeTemplateStatus, SecurityGroupStatus, SubnetStatus,
};

/// Which call an injected failure applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FakeCall {
    Create,
    Delete,
    Get,
    List,
    InstanceTypes,
}

/// An injected failure: retryable with a provider code, or a launch configuration that cannot
/// work as written.
enum Fault {
    Retryable { code: String },
    InvalidConfiguration(String),
}

#[derive(Default)]
struct State {
    instances: BTreeMap<String, LaunchedInstance>,
    next_id: u64,
    no_capacity: HashSet<OfferingKey>,
    failures: HashMap<FakeCall, VecDeque<Fault>>,
    drifted: HashMap<String, DriftReason>,
    requests: Vec<LaunchRequest>,
    /// Create calls left that never answer.
    hanging_creates: usize,
    /// Times [`CloudProvider::delete_unused`] ran.
    cleanups: usize,
}

pub struct FakeCloudProvider {
    instance_types: Vec<InstanceType>,
    region: String,
    clock: Arc<dyn Clock>,
    unavailable: UnavailableOfferings,
    state: Mutex<State>,
    estimates_spot_prices: bool,
}

fn capacity_label(capacity_type: CapacityType) -> &'static str {
    match capacity_type {
        CapacityType::Spot => labels::CAPACITY_TYPE_SPOT,
        CapacityType::OnDemand => labels::CAPACITY_TYPE_ON_DEMAND,
    }
}

impl FakeCloudProvider {
    /// A provider offering exactly `instance_types`.
    pub fn new(instance_types: Vec<InstanceType>, region: &str, clock: Arc<dyn Clock>) -> Self {
        Self {
            instance_types,
            region: region.to_string(),
            unavailable: UnavailableOfferings::new(clock.clone(), UNAVAILABLE_OFFERINGS_TTL),
            clock,
            state: Mutex::new(State::default()),
            estimates_spot_prices: false,
        }
    }

    /// Says its spot prices are estimates (see [`CloudProvider::estimates_spot_prices`]).
    pub fn with_estimated_spot_prices(mut self, estimated: bool) -> Self {
        self.estimates_spot_prices = estimated;
        self
    }

    /// A provider offering the embedded catalog's types of `region`, priced from `prices`.
    pub fn from_catalog(
        region: &str,
        prices: Option<&PriceTable>,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, CatalogError> {
        let types = Catalog::embedded()?.instance_types(region, prices)?;
        let estimated = prices.is_some_and(|p| p.spot_estimate.is_some());
        Ok(Self::new(types, region, clock).with_estimated_spot_prices(estimated))
    }

    /// Launches of this offering fail with `InsufficientInstanceCapacity` until cleared.
    pub fn set_no_capacity(&self, instance_type: &str, zone: &str, capacity_type: CapacityType) {
        self.lock().no_capacity.insert(OfferingKey {
            instance_type: instance_type.to_string(),
            zone: zone.to_string(),
            capacity_type,
        });
    }

    pub fn clear_no_capacity(&self) {
        self.lock().no_capacity.clear();
    }

    /// Forgets the failures still queued for `call`.
    pub fn clear_failures(&self, call: FakeCall) {
        self.lock().failures.remove(&call);
    }

    /// The next `times` calls of `call` fail with a retryable error carrying `code`.
    pub fn fail_next(&self, call: FakeCall, code: &str, times: usize) {
        let mut state = self.lock();
        let queue = state.failures.entry(call).or_default();
        for _ in 0..times {
            queue.push_back(Fault::Retryable {
                code: code.to_string(),
            });
        }
    }

    /// How many times leftover resources were cleaned up.
    pub fn cleanups(&self) -> usize {
        self.lock().cleanups
    }

    /// The next `times` create calls never answer, as a connection that hangs.
    pub fn hang_next_creates(&self, times: usize) {
        self.lock().hanging_creates += times;
    }

    /// The next call of `call` fails as a launch configuration that cannot work (no retry fixes
    /// it), saying `message`.
    pub fn fail_next_invalid(&self, call: FakeCall, message: &str) {
        self.lock()
            .failures
            .entry(call)
            .or_default()
            .push_back(Fault::InvalidConfiguration(message.to_string()));
    }

    /// `is_drifted` reports `reason` for this instance.
    pub fn set_drifted(&self, instance_id: &str, reason: DriftReason) {
        self.lock().drifted.insert(instance_id.to_string(), reason);
    }

    /// The instance disappears as if EC2 reclaimed it (e.g. a spot interruption).
    pub fn reclaim(&self, instance_id: &str) {
        if let Some(instance) = self.lock().instances.get_mut(instance_id) {
            instance.state = InstanceState::Terminated;
        }
    }

    /// Every launch request received, in order.
    pub fn requests(&self) -> Vec<LaunchRequest> {
        self.lock().requests.clone()
    }

    /// Every instance ever launched, terminated ones included.
    pub fn all_instances(&self) -> Vec<LaunchedInstance> {
        self.lock().instances.values().cloned().collect()
    }

    pub fn unavailable_offerings(&self) -> &UnavailableOfferings {
        &self.unavailable
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn injected(&self, call: FakeCall) -> Result<()> {
        match self
            .lock()
            .failures
            .get_mut(&call)
            .and_then(VecDeque::pop_front)
        {
            Some(Fault::Retryable { code }) => Err(CloudProviderError::Retryable {
                operation: format!("{call:?}"),
                message: format!("injected {code}"),
                code: Some(code),
            }),
            Some(Fault::InvalidConfiguration(message)) => {
                Err(CloudProviderError::InvalidConfiguration(message))
            }
            None => Ok(()),
        }
    }

    fn find_live(&self, machine: &MachineId) -> Option<LaunchedInstance> {
        let state = self.lock();
        let live = |i: &&LaunchedInstance| i.state != InstanceState::Terminated;
        match machine.provider_id.as_deref().and_then(instance_id_of) {
            Some(id) => state.instances.get(id).filter(live).cloned(),
            None => state
                .instances
                .values()
                .filter(live)
                .find(|i| i.machine_name.as_deref() == Some(machine.name.as_str()))
                .cloned(),
        }
    }

    /// Allowed offerings of the requested types for `capacity_type`, cheapest first.
    fn candidates(
        &self,
        request: &LaunchRequest,
        capacity_type: CapacityType,
    ) -> Vec<(&InstanceType, String, Option<f64>)> {
        let wanted: BTreeSet<&str> = request.instance_types.iter().map(String::as_str).collect();
        let mut found: Vec<(&InstanceType, String, Option<f64>)> = self
            .instance_types
            .iter()
            .filter(|t| wanted.contains(t.name.as_str()))
            .flat_map(|t| {
                t.offerings
                    .iter()
                    .filter(|o| o.capacity_type == capacity_type && o.available)
                    .filter(|o| request.zones.is_empty() || request.zones.contains(&o.zone))
                    .filter(|o| {
                        !self
                            .unavailable
                            .is_unavailable(&t.name, &o.zone, capacity_type)
                    })
                    .map(move |o| (t, o.zone.clone(), o.price_per_hour))
            })
            .collect();
        found.sort_by(|a, b| {
            let price = |p: Option<f64>| p.unwrap_or(f64::INFINITY);
            price(a.2)
                .total_cmp(&price(b.2))
                .then_with(|| a.0.capacity.cpu_millis.cmp(&b.0.capacity.cpu_millis))
                .then_with(|| a.0.capacity.memory_bytes.cmp(&b.0.capacity.memory_bytes))
                .then_with(|| a.0.name.cmp(&b.0.name))
                .then_with(|| a.1.cmp(&b.1))
        });
        found
    }

    fn launch(&self, request: &LaunchRequest) -> Result<LaunchedInstance> {
        self.injected(FakeCall::Create)?;
        if request.instance_types.is_empty() {
            return Err(CloudProviderError::InvalidConfiguration(format!(
                "machine {} names no instance types",
                request.machine_name
            )));
        }
        self.lock().requests.push(request.clone());
        if let Some(existing) = self.find_live(&MachineId::new(&request.machine_name, None)) {
            return Ok(existing);
        }
        let allows = |ct| request.capacity_types.is_empty() || request.capacity_types.contains(&ct);
        let mut held_out = Vec::new();
        for capacity_type in [CapacityType::Spot, CapacityType::OnDemand] {
            if !allows(capacity_type) {
                continue;
            }
            for (instance_type, zone, _) in self.candidates(request, capacity_type) {
                let key = OfferingKey {
                    instance_type: instance_type.name.clone(),
                    zone: zone.clone(),
                    capacity_type,
                };
                if self.lock().no_capacity.contains(&key) {
                    self.unavailable
                        .mark_unavailable(&key.instance_type, &key.zone, capacity_type);
                    held_out.push(key);
                    continue;
                }
                return Ok(self.record(request, instance_type, &zone, capacity_type));
            }
        }
        Err(CloudProviderError::InsufficientCapacity {
            message: format!(
                "no offering of {:?} could be launched for machine {}",
                request.instance_types, request.machine_name
            ),
            offerings: held_out,
        })
    }

    fn record(
        &self,
        request: &LaunchRequest,
        instance_type: &InstanceType,
        zone: &str,
        capacity_type: CapacityType,
    ) -> LaunchedInstance {
        let mut state = self.lock();
        state.next_id += 1;
        let id = format!("i-{:017x}", state.next_id);
        let mut node_labels = instance_type.labels.clone();
        node_labels.insert(labels::ZONE.to_string(), zone.to_string());
        node_labels.insert(labels::REGION.to_string(), self.region.clone());
        node_labels.insert(
            labels::CAPACITY_TYPE.to_string(),
            capacity_label(capacity_type).to_string(),
        );
        node_labels.insert(
            labels::PROVISIONER_NAME.to_string(),
            request.provisioner_name.clone(),
        );
        let tags = BTreeMap::from([
            (
                labels::MACHINE_NAME.to_string(),
                request.machine_name.clone(),
            ),
            (
                labels::PROVISIONER_NAME.to_string(),
                request.provisioner_name.clone(),
            ),
        ]);
        let instance = LaunchedInstance {
            provider_id: provider_id(zone, &id),
            instance_id: id.clone(),
            instance_type: instance_type.name.clone(),
            zone: zone.to_string(),
            capacity_type,
            image_id: Some("ami-fake".to_string()),
            subnet_id: Some(format!("subnet-{zone}")),
            state: InstanceState::Running,
            launch_time: Some(self.clock.now()),
            machine_name: Some(request.machine_name.clone()),
            provisioner_name: Some(request.provisioner_name.clone()),
            capacity: instance_type.capacity.clone(),
            labels: node_labels,
            tags,
            // The simulated kubelet registers the node under this name, as EKS names nodes.
            hostname: Some(private_dns_name(&self.region, zone, state.next_id)),
        };
        state.instances.insert(id, instance.clone());
        instance
    }

    fn terminate(&self, machine: &MachineId) -> Result<DeleteStatus> {
        self.injected(FakeCall::Delete)?;
        let Some(found) = self.find_live(machine) else {
            return Ok(DeleteStatus::Gone);
        };
        if let Some(instance) = self.lock().instances.get_mut(&found.instance_id) {
            instance.state = InstanceState::Terminated;
        }
        Ok(DeleteStatus::Terminating)
    }

    /// The types on offer; offerings held out after a failed launch are unavailable (an
    /// offering without capacity is only discovered by launching, as on AWS).
    fn offered_types(&self) -> Result<Vec<InstanceType>> {
        self.injected(FakeCall::InstanceTypes)?;
        let mut types = self.instance_types.clone();
        self.unavailable.mark(&mut types);
        Ok(types)
    }
}

impl CloudProvider for FakeCloudProvider {
    fn create<'a>(&'a self, request: &'a LaunchRequest) -> BoxFuture<'a, Result<LaunchedInstance>> {
        let hangs = {
            let mut state = self.lock();
            let hangs = state.hanging_creates > 0;
            state.hanging_creates = state.hanging_creates.saturating_sub(1);
            hangs
        };
        if hangs {
            return Box::pin(std::future::pending());
        }
        Box::pin(std::future::ready(self.launch(request)))
    }

    fn delete<'a>(&'a self, machine: &'a MachineId) -> BoxFuture<'a, Result<DeleteStatus>> {
        Box::pin(std::future::ready(self.terminate(machine)))
    }

    fn get<'a>(&'a self, machine: &'a MachineId) -> BoxFuture<'a, Result<LaunchedInstance>> {
        let result = self.injected(FakeCall::Get).and_then(|()| {
            self.find_live(machine)
                .ok_or_else(|| CloudProviderError::NotFound {
                    what: format!("instance of machine {}", machine.name),
                    code: None,
                })
        });
        Box::pin(std::future::ready(result))
    }

    fn list(&self) -> BoxFuture<'_, Result<Vec<LaunchedInstance>>> {
        let result = self.injected(FakeCall::List).map(|()| {
            self.lock()
                .instances
                .values()
                .filter(|i| i.state != InstanceState::Terminated)
                .cloned()
                .collect()
        });
        Box::pin(std::future::ready(result))
    }

    fn instance_types<'a>(
        &'a self,
        _template: &'a NodeTemplate,
    ) -> BoxFuture<'a, Result<Vec<InstanceType>>> {
        Box::pin(std::future::ready(self.offered_types()))
    }

    fn is_drifted<'a>(
        &'a self,
        instance: &'a LaunchedInstance,
        _template: &'a NodeTemplate,
    ) -> BoxFuture<'a, Result<Option<DriftReason>>> {
        let reason = self.lock().drifted.get(&instance.instance_id).cloned();
        Box::pin(std::future::ready(Ok(reason)))
    }

    fn template_status<'a>(
        &'a self,
        _template: &'a NodeTemplate,
    ) -> BoxFuture<'a, Result<AwsNodeTemplateStatus>> {
        // One subnet per zone on offer, one security group, one image per architecture.
        let zones: BTreeSet<&str> = self
            .instance_types
            .iter()
            .flat_map(|t| t.offerings.iter().map(|o| o.zone.as_str()))
            .collect();
        let arches: BTreeSet<&str> = self
            .instance_types
            .iter()
            .filter_map(|t| t.labels.get(labels::ARCH).map(String::as_str))
            .collect();
        let status = AwsNodeTemplateStatus {
            subnets: zones
                .into_iter()
                .map(|zone| SubnetStatus {
                    id: format!("subnet-{zone}"),
                    zone: zone.to_string(),
                })
                .collect(),
            security_groups: vec![SecurityGroupStatus {
                id: "sg-fake".to_string(),
                name: Some("nodes".to_string()),
            }],
            amis: arches
                .into_iter()
                .map(|arch| AmiStatus {
                    id: format!("ami-fake-{arch}"),
                    name: Some(format!("fake-node-{arch}")),
                    requirements: vec![k8s_openapi::api::core::v1::NodeSelectorRequirement {
                        key: labels::ARCH.to_string(),
                        operator: "In".to_string(),
                        values: Some(vec![arch.to_string()]),
                    }],
                })
                .collect(),
        };
        Box::pin(std::future::ready(Ok(status)))
    }

    fn delete_unused(&self) -> BoxFuture<'_, Result<Vec<String>>> {
        self.lock().cleanups += 1;
        Box::pin(std::future::ready(Ok(Vec::new())))
    }

    fn name(&self) -> &'static str {
        "fake"
    }

    fn estimates_spot_prices(&self) -> bool {
        self.estimates_spot_prices
    }
}

/// EC2's private DNS name for the `index`th instance in `zone`: an address in the zone's /19 of
/// 192.168.0.0/16 (eksctl's layout), named `ip-A-B-C-D.ec2.internal` in us-east-1 and
/// `ip-A-B-C-D.<region>.compute.internal` elsewhere.
fn private_dns_name(region: &str, zone: &str, index: u64) -> String {
    let zone_index = zone
        .bytes()
        .last()
        .filter(u8::is_ascii_lowercase)
        .map_or(0, |letter| u64::from(letter - b'a') % 8);
    // Hosts 4..=253 of each /24 (EC2 keeps the first four and the last of a subnet).
    let host = index.saturating_sub(1);
    let third = zone_index * 32 + (host / 250) % 32;
    let fourth = host % 250 + 4;
    let domain = if region == "us-east-1" {
        "ec2.internal".to_string()
    } else {
        format!("{region}.compute.internal")
    };
    format!("ip-192-168-{third}-{fourth}.{domain}")
}

#[cfg(test)]
mod tests;
