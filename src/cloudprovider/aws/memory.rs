//! An in-memory [`Ec2Api`] with the faults real EC2 has and moto does not: CreateFleet `Errors[]`
//! for offerings without capacity, full subnets, throttling and server errors on chosen calls,
//! and instances that DescribeInstances does not see yet (eventual consistency).
//!
//! CreateFleet launches the first override (in request order, which is cheapest first) that has
//! capacity, and honours the ClientToken like EC2: a repeated token returns the first answer.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use nodewright_scheduling::catalog::{Catalog, InstanceTypeInfo};
use nodewright_scheduling::instance_type::CapacityType;

use super::ec2::{
    Ec2Api, Ec2Result, Filter, FleetError, FleetInstance, FleetOutput, FleetRequest, Image,
    ImageQuery, Instance, InstanceQuery, LaunchTemplate, NewLaunchTemplate, SecurityGroup,
    SpotPrice, Subnet, TypeOffering,
};
use super::errors::{CAPACITY_ERROR_CODES, Ec2Error, SUBNET_FULL_CODE};
use crate::cloudprovider::BoxFuture;
use crate::cloudprovider::types::InstanceState;

#[derive(Default)]
struct State {
    subnets: Vec<Subnet>,
    security_groups: Vec<SecurityGroup>,
    images: Vec<Image>,
    parameters: HashMap<String, String>,
    launch_templates: BTreeMap<String, NewLaunchTemplate>,
    /// Instance and how many more DescribeInstances calls it stays invisible to.
    instances: BTreeMap<String, (Instance, usize)>,
    fleets_by_token: HashMap<String, FleetOutput>,
    no_capacity: HashSet<(String, String, CapacityType)>,
    full_subnets: HashSet<String>,
    faults: HashMap<&'static str, VecDeque<Ec2Error>>,
    invisible_describes: usize,
    instance_types: Vec<InstanceTypeInfo>,
    offerings: Vec<TypeOffering>,
    spot_prices: Vec<SpotPrice>,
    calls: Vec<&'static str>,
    fleet_requests: Vec<FleetRequest>,
    next_id: u64,
}

/// EC2 in memory. Set it up with the `with_*`/`add_*` methods, inject faults, then hand it to
/// the provider as `Arc<dyn Ec2Api>`.
#[derive(Default)]
pub struct InMemoryEc2 {
    state: Mutex<State>,
}

fn matches(tags: &BTreeMap<String, String>, id: &str, id_filter: &str, filter: &Filter) -> bool {
    if filter.name == id_filter {
        return filter.values.iter().any(|v| v == id);
    }
    if filter.name == "tag-key" {
        return filter.values.iter().any(|k| tags.contains_key(k));
    }
    if let Some(key) = filter.name.strip_prefix("tag:") {
        return tags.get(key).is_some_and(|v| filter.values.contains(v));
    }
    false
}

impl InMemoryEc2 {
    pub fn new() -> Self {
        Self::default()
    }

    /// Instance types and zone offerings of `region` from the embedded catalog.
    pub fn with_catalog(self, region: &str) -> Self {
        if let Ok(catalog) = Catalog::embedded() {
            let types = catalog.instance_types(region, None).unwrap_or_default();
            let mut state = self.lock();
            state.offerings = types
                .iter()
                .flat_map(|t| {
                    let zones: std::collections::BTreeSet<&str> =
                        t.offerings.iter().map(|o| o.zone.as_str()).collect();
                    zones
                        .into_iter()
                        .map(|zone| TypeOffering {
                            instance_type: t.name.clone(),
                            zone: zone.to_string(),
                        })
                        .collect::<Vec<_>>()
                })
                .collect();
            state.instance_types = catalog.records().to_vec();
        }
        self
    }

    pub fn add_subnet(&self, subnet: Subnet) {
        self.lock().subnets.push(subnet);
    }

    pub fn add_security_group(&self, group: SecurityGroup) {
        self.lock().security_groups.push(group);
    }

    pub fn add_image(&self, image: Image) {
        self.lock().images.push(image);
    }

    pub fn set_parameter(&self, name: &str, value: &str) {
        self.lock()
            .parameters
            .insert(name.to_string(), value.to_string());
    }

    pub fn set_spot_price(&self, instance_type: &str, zone: &str, price: f64) {
        self.lock().spot_prices.push(SpotPrice {
            instance_type: instance_type.to_string(),
            zone: zone.to_string(),
            price,
            timestamp: None,
        });
    }

    /// CreateFleet reports `InsufficientInstanceCapacity` for this offering until cleared.
    pub fn set_no_capacity(&self, instance_type: &str, zone: &str, capacity_type: CapacityType) {
        self.lock().no_capacity.insert((
            instance_type.to_string(),
            zone.to_string(),
            capacity_type,
        ));
    }

    pub fn clear_no_capacity(&self) {
        self.lock().no_capacity.clear();
    }

    /// CreateFleet reports `InsufficientFreeAddressesInSubnet` for this subnet.
    pub fn set_subnet_full(&self, subnet_id: &str) {
        self.lock().full_subnets.insert(subnet_id.to_string());
    }

    /// The next `times` calls of `operation` (e.g. `"CreateFleet"`) fail with `error`.
    pub fn fail_next(&self, operation: &'static str, error: Ec2Error, times: usize) {
        let mut state = self.lock();
        let queue = state.faults.entry(operation).or_default();
        queue.extend(std::iter::repeat_n(error, times));
    }

    /// Instances launched from now on stay invisible to the next `describes` DescribeInstances
    /// calls, as right after a real launch.
    pub fn hide_new_instances_for(&self, describes: usize) {
        self.lock().invisible_describes = describes;
    }

    /// Every call made, in order, by operation name.
    pub fn calls(&self) -> Vec<&'static str> {
        self.lock().calls.clone()
    }

    pub fn fleet_requests(&self) -> Vec<FleetRequest> {
        self.lock().fleet_requests.clone()
    }

    pub fn launch_template_names(&self) -> Vec<String> {
        self.lock().launch_templates.keys().cloned().collect()
    }

    /// Every instance ever launched, terminated ones included, regardless of visibility.
    pub fn all_instances(&self) -> Vec<Instance> {
        self.lock()
            .instances
            .values()
            .map(|(i, _)| i.clone())
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records a call and returns an injected fault for it, if any.
    fn enter(&self, operation: &'static str) -> Ec2Result<std::sync::MutexGuard<'_, State>> {
        let mut state = self.lock();
        state.calls.push(operation);
        match state
            .faults
            .get_mut(operation)
            .and_then(VecDeque::pop_front)
        {
            Some(err) => Err(err),
            None => Ok(state),
        }
    }

    fn fleet(&self, state: &mut State, request: &FleetRequest) -> FleetOutput {
        let mut output = FleetOutput::default();
        for config in &request.configs {
            for o in &config.overrides {
                let failure = if state.full_subnets.contains(&o.subnet_id) {
                    Some(SUBNET_FULL_CODE)
                } else if state.no_capacity.contains(&(
                    o.instance_type.clone(),
                    o.zone.clone(),
                    request.capacity_type,
                )) {
                    Some(CAPACITY_ERROR_CODES[0])
                } else {
                    None
                };
                if let Some(code) = failure {
                    output.errors.push(FleetError {
                        code: code.to_string(),
                        message: format!(
                            "no {} capacity for {} in {}",
                            code, o.instance_type, o.zone
                        ),
                        instance_type: Some(o.instance_type.clone()),
                        subnet_id: Some(o.subnet_id.clone()),
                        zone: Some(o.zone.clone()),
                        capacity_type: Some(request.capacity_type),
                    });
                    continue;
                }
                let Some(template) = state.launch_templates.get(&config.launch_template_name)
                else {
                    output.errors.push(FleetError {
                        code: "InvalidLaunchTemplateName.NotFoundException".to_string(),
                        message: format!("{} does not exist", config.launch_template_name),
                        instance_type: None,
                        subnet_id: None,
                        zone: None,
                        capacity_type: None,
                    });
                    break;
                };
                state.next_id += 1;
                let id = format!("i-{:017x}", state.next_id);
                let instance = Instance {
                    id: id.clone(),
                    instance_type: o.instance_type.clone(),
                    zone: o.zone.clone(),
                    subnet_id: Some(o.subnet_id.clone()),
                    image_id: Some(template.data.image_id.clone()),
                    capacity_type: request.capacity_type,
                    state: InstanceState::Pending,
                    launch_time: Some(SystemTime::UNIX_EPOCH + Duration::from_secs(state.next_id)),
                    security_group_ids: template.data.security_group_ids.clone(),
                    tags: request.tags.clone(),
                    private_dns_name: Some(format!("ip-10-0-0-{}.ec2.internal", state.next_id)),
                };
                let hidden = state.invisible_describes;
                state.instances.insert(id.clone(), (instance, hidden));
                output.instances.push(FleetInstance {
                    instance_ids: vec![id],
                    instance_type: o.instance_type.clone(),
                    subnet_id: Some(o.subnet_id.clone()),
                    zone: Some(o.zone.clone()),
                    capacity_type: request.capacity_type,
                });
                return output;
            }
        }
        output
    }
}

fn ready<T: Send + 'static>(result: Ec2Result<T>) -> BoxFuture<'static, Ec2Result<T>> {
    Box::pin(std::future::ready(result))
}

impl Ec2Api for InMemoryEc2 {
    fn describe_subnets(&self, filters: Vec<Filter>) -> BoxFuture<'_, Ec2Result<Vec<Subnet>>> {
        ready(self.enter("DescribeSubnets").map(|state| {
            state
                .subnets
                .iter()
                .filter(|s| {
                    filters
                        .iter()
                        .all(|f| matches(&s.tags, &s.id, "subnet-id", f))
                })
                .cloned()
                .collect()
        }))
    }

    fn describe_security_groups(
        &self,
        filters: Vec<Filter>,
    ) -> BoxFuture<'_, Ec2Result<Vec<SecurityGroup>>> {
        ready(self.enter("DescribeSecurityGroups").map(|state| {
            state
                .security_groups
                .iter()
                .filter(|g| {
                    filters
                        .iter()
                        .all(|f| matches(&g.tags, &g.id, "group-id", f))
                })
                .cloned()
                .collect()
        }))
    }

    fn describe_images(&self, query: ImageQuery) -> BoxFuture<'_, Ec2Result<Vec<Image>>> {
        ready(self.enter("DescribeImages").map(|state| {
            state
                .images
                .iter()
                .filter(|i| query.image_ids.is_empty() || query.image_ids.contains(&i.id))
                .filter(|i| {
                    query.filters.iter().all(|f| {
                        if f.name == "name" {
                            i.name.as_ref().is_some_and(|n| f.values.contains(n))
                        } else {
                            matches(&i.tags, &i.id, "image-id", f)
                        }
                    })
                })
                .cloned()
                .collect()
        }))
    }

    fn get_parameter(&self, name: String) -> BoxFuture<'_, Ec2Result<String>> {
        ready(self.enter("GetParameter").and_then(|state| {
            state.parameters.get(&name).cloned().ok_or_else(|| {
                Ec2Error::service(
                    "GetParameter",
                    "ParameterNotFound",
                    format!("{name} not found"),
                )
            })
        }))
    }

    fn describe_launch_templates(
        &self,
        filters: Vec<Filter>,
    ) -> BoxFuture<'_, Ec2Result<Vec<LaunchTemplate>>> {
        ready(self.enter("DescribeLaunchTemplates").map(|state| {
            state
                .launch_templates
                .values()
                .filter(|t| {
                    filters
                        .iter()
                        .all(|f| matches(&t.tags, &t.name, "launch-template-name", f))
                })
                .map(|t| LaunchTemplate {
                    id: format!("lt-{}", t.name.len()),
                    name: t.name.clone(),
                    tags: t.tags.clone(),
                })
                .collect()
        }))
    }

    fn create_launch_template(
        &self,
        template: NewLaunchTemplate,
    ) -> BoxFuture<'_, Ec2Result<LaunchTemplate>> {
        ready(self.enter("CreateLaunchTemplate").and_then(|mut state| {
            if state.launch_templates.contains_key(&template.name) {
                return Err(Ec2Error::service(
                    "CreateLaunchTemplate",
                    "InvalidLaunchTemplateName.AlreadyExistsException",
                    "Launch template name already in use.",
                ));
            }
            let created = LaunchTemplate {
                id: format!("lt-{}", template.name.len()),
                name: template.name.clone(),
                tags: template.tags.clone(),
            };
            state
                .launch_templates
                .insert(template.name.clone(), template);
            Ok(created)
        }))
    }

    fn delete_launch_template(&self, name: String) -> BoxFuture<'_, Ec2Result<()>> {
        ready(self.enter("DeleteLaunchTemplate").and_then(|mut state| {
            state
                .launch_templates
                .remove(&name)
                .map(|_| ())
                .ok_or_else(|| {
                    Ec2Error::service(
                        "DeleteLaunchTemplate",
                        "InvalidLaunchTemplateName.NotFoundException",
                        format!("{name} does not exist"),
                    )
                })
        }))
    }

    fn create_fleet(&self, request: FleetRequest) -> BoxFuture<'_, Ec2Result<FleetOutput>> {
        ready(self.enter("CreateFleet").map(|mut state| {
            state.fleet_requests.push(request.clone());
            if let Some(previous) = state.fleets_by_token.get(&request.client_token) {
                return previous.clone();
            }
            let output = self.fleet(&mut state, &request);
            state
                .fleets_by_token
                .insert(request.client_token.clone(), output.clone());
            output
        }))
    }

    fn describe_instances(&self, query: InstanceQuery) -> BoxFuture<'_, Ec2Result<Vec<Instance>>> {
        ready(self.enter("DescribeInstances").and_then(|mut state| {
            let mut found = Vec::new();
            for (instance, hidden) in state.instances.values_mut() {
                let wanted =
                    query.instance_ids.is_empty() || query.instance_ids.contains(&instance.id);
                let state_name = match instance.state {
                    InstanceState::Pending => "pending",
                    InstanceState::Running => "running",
                    InstanceState::ShuttingDown => "shutting-down",
                    InstanceState::Terminated => "terminated",
                    InstanceState::Stopping => "stopping",
                    InstanceState::Stopped => "stopped",
                    InstanceState::Unknown => "unknown",
                };
                let filtered = query.filters.iter().all(|f| {
                    if f.name == "instance-state-name" {
                        f.values.iter().any(|v| v == state_name)
                    } else {
                        matches(&instance.tags, &instance.id, "instance-id", f)
                    }
                });
                if !(wanted && filtered) {
                    continue;
                }
                if *hidden > 0 {
                    *hidden -= 1;
                    continue;
                }
                found.push(instance.clone());
            }
            let missing = query
                .instance_ids
                .iter()
                .find(|id| !found.iter().any(|i| &&i.id == id));
            if let Some(id) = missing {
                return Err(Ec2Error::service(
                    "DescribeInstances",
                    "InvalidInstanceID.NotFound",
                    format!("The instance ID '{id}' does not exist"),
                ));
            }
            Ok(found)
        }))
    }

    fn terminate_instances(&self, instance_ids: Vec<String>) -> BoxFuture<'_, Ec2Result<()>> {
        ready(self.enter("TerminateInstances").and_then(|mut state| {
            if let Some(id) = instance_ids
                .iter()
                .find(|id| !state.instances.contains_key(*id))
            {
                return Err(Ec2Error::service(
                    "TerminateInstances",
                    "InvalidInstanceID.NotFound",
                    format!("The instance ID '{id}' does not exist"),
                ));
            }
            for id in &instance_ids {
                if let Some((instance, _)) = state.instances.get_mut(id) {
                    instance.state = InstanceState::Terminated;
                }
            }
            Ok(())
        }))
    }

    fn describe_instance_types(&self) -> BoxFuture<'_, Ec2Result<Vec<InstanceTypeInfo>>> {
        ready(
            self.enter("DescribeInstanceTypes")
                .map(|state| state.instance_types.clone()),
        )
    }

    fn describe_instance_type_offerings(&self) -> BoxFuture<'_, Ec2Result<Vec<TypeOffering>>> {
        ready(
            self.enter("DescribeInstanceTypeOfferings")
                .map(|state| state.offerings.clone()),
        )
    }

    fn describe_spot_price_history(
        &self,
        _start_time: SystemTime,
    ) -> BoxFuture<'_, Ec2Result<Vec<SpotPrice>>> {
        ready(
            self.enter("DescribeSpotPriceHistory")
                .map(|state| state.spot_prices.clone()),
        )
    }
}
