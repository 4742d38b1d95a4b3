//! Fixtures for scheduler tests: small, realistic instance types, pods, provisioners and
//! clusters, built with methods that read like sentences.
#![allow(dead_code)]

pub mod real;

use std::collections::BTreeMap;
use std::sync::Arc;

use nodewright_scheduling::allocatable::AllocatableSettings;
use nodewright_scheduling::instance_type::{CapacityType, InstanceType, Offering};
use nodewright_scheduling::labels;
use nodewright_scheduling::node::ExistingNode;
use nodewright_scheduling::pod::{
    DaemonSet, HostPort, LabelSelector, Pod, PodAffinityTerm, PreferredSchedulingTerm,
    TopologySpreadConstraint, WeightedPodAffinityTerm, WhenUnsatisfiable,
};
use nodewright_scheduling::provisioner::{Provisioner, ProvisionerInput};
use nodewright_scheduling::requirements::{NodeSelectorRequirement, Operator};
use nodewright_scheduling::resources::{Resources, parse_quantity};
use nodewright_scheduling::scheduler::{ScheduleInput, SchedulerSettings};
use nodewright_scheduling::taints::{Taint, TaintEffect, Toleration};
use nodewright_scheduling::{Plan, schedule};

pub const GIB: i64 = 1024 * 1024 * 1024;
pub const ZONES: [&str; 3] = ["us-east-1a", "us-east-1b", "us-east-1c"];

/// `instance("m5.large").vcpus(2).memory_gib(8).on_demand(0.096).spot(0.035)`.
#[derive(Clone)]
pub struct InstanceBuilder {
    it: InstanceType,
    zones: Vec<String>,
    on_demand: Option<f64>,
    spot: Option<f64>,
    priced: bool,
}

pub fn instance(name: &str) -> InstanceBuilder {
    let (family, size) = name.split_once('.').unwrap_or((name, ""));
    let category: String = family
        .chars()
        .take_while(|c| c.is_ascii_alphabetic())
        .collect();
    let generation: String = family
        .chars()
        .skip_while(|c| c.is_ascii_alphabetic())
        .take_while(|c| c.is_ascii_digit())
        .collect();
    let labels: BTreeMap<String, String> = [
        (labels::INSTANCE_TYPE, name),
        (labels::ARCH, labels::ARCH_AMD64),
        (labels::OS, labels::OS_LINUX),
        (labels::INSTANCE_FAMILY, family),
        (labels::INSTANCE_CATEGORY, category.as_str()),
        (labels::INSTANCE_GENERATION, generation.as_str()),
        (labels::INSTANCE_SIZE, size),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    InstanceBuilder {
        it: InstanceType {
            name: name.to_string(),
            labels,
            capacity: Resources {
                ephemeral_storage_bytes: 20 * GIB,
                ..Resources::default()
            },
            max_enis: 3,
            ipv4_per_eni: 10,
            offerings: Vec::new(),
        },
        zones: ZONES.iter().map(|z| z.to_string()).collect(),
        on_demand: None,
        spot: None,
        priced: true,
    }
}

impl InstanceBuilder {
    pub fn vcpus(mut self, n: i64) -> Self {
        self.it.capacity.cpu_millis = n * 1000;
        self.it
            .labels
            .insert(labels::INSTANCE_CPU.into(), n.to_string());
        // ENIs grow with size, as on EC2.
        let (enis, ips) = match n {
            0..=2 => (3, 10),
            3..=4 => (4, 15),
            5..=16 => (4, 15),
            _ => (8, 30),
        };
        self.it.max_enis = enis;
        self.it.ipv4_per_eni = ips;
        self
    }

    pub fn memory_gib(mut self, n: i64) -> Self {
        self.it.capacity.memory_bytes = n * GIB;
        self.it
            .labels
            .insert(labels::INSTANCE_MEMORY.into(), (n * 1024).to_string());
        self
    }

    pub fn arm64(mut self) -> Self {
        self.it
            .labels
            .insert(labels::ARCH.into(), labels::ARCH_ARM64.into());
        self
    }

    pub fn gpus(mut self, n: i64) -> Self {
        self.it.capacity.set(labels::RESOURCE_NVIDIA_GPU, n);
        self.it
            .labels
            .insert(labels::INSTANCE_GPU_COUNT.into(), n.to_string());
        self
    }

    pub fn on_demand(mut self, price: f64) -> Self {
        self.on_demand = Some(price);
        self
    }

    pub fn spot(mut self, price: f64) -> Self {
        self.spot = Some(price);
        self
    }

    pub fn unpriced(mut self) -> Self {
        self.priced = false;
        self
    }

    pub fn in_zones(mut self, zones: &[&str]) -> Self {
        self.zones = zones.iter().map(|z| z.to_string()).collect();
        self
    }

    pub fn build(mut self) -> Arc<InstanceType> {
        self.it.capacity.pods = self.it.max_enis * (self.it.ipv4_per_eni - 1) + 2;
        self.it.labels.insert(
            labels::INSTANCE_PODS.into(),
            self.it.capacity.pods.to_string(),
        );
        for zone in &self.zones {
            for (capacity_type, price) in [
                (CapacityType::OnDemand, self.on_demand),
                (CapacityType::Spot, self.spot),
            ] {
                if let Some(price) = price {
                    self.it.offerings.push(Offering {
                        zone: zone.clone(),
                        capacity_type,
                        price_per_hour: self.priced.then_some(price),
                        available: true,
                    });
                }
            }
        }
        Arc::new(self.it)
    }
}

/// c5, m5 and r5 from large to 4xlarge, with us-east-1 on-demand prices and spot at ~35%.
pub fn general_purpose_types() -> Vec<Arc<InstanceType>> {
    let table: [(&str, i64, i64, f64); 12] = [
        ("c5.large", 2, 4, 0.085),
        ("c5.xlarge", 4, 8, 0.17),
        ("c5.2xlarge", 8, 16, 0.34),
        ("c5.4xlarge", 16, 32, 0.68),
        ("m5.large", 2, 8, 0.096),
        ("m5.xlarge", 4, 16, 0.192),
        ("m5.2xlarge", 8, 32, 0.384),
        ("m5.4xlarge", 16, 64, 0.768),
        ("r5.large", 2, 16, 0.126),
        ("r5.xlarge", 4, 32, 0.252),
        ("r5.2xlarge", 8, 64, 0.504),
        ("r5.4xlarge", 16, 128, 1.008),
    ];
    table
        .iter()
        .map(|&(name, cpu, mem, price)| {
            instance(name)
                .vcpus(cpu)
                .memory_gib(mem)
                .on_demand(price)
                .spot((price * 0.35 * 10000.0).round() / 10000.0)
                .build()
        })
        .collect()
}

/// A GPU type that only has on-demand offerings.
pub fn gpu_type() -> Arc<InstanceType> {
    instance("g4dn.xlarge")
        .vcpus(4)
        .memory_gib(16)
        .gpus(1)
        .on_demand(0.526)
        .build()
}

/// `pod("web-1").cpu("500m").memory("1Gi").label("app", "web")`.
#[derive(Clone)]
pub struct PodBuilder(Pod);

pub fn pod(name: &str) -> PodBuilder {
    PodBuilder(Pod {
        namespace: "default".into(),
        name: name.into(),
        uid: format!("uid-{name}"),
        requests: Resources {
            pods: 1,
            ..Resources::default()
        },
        ..Pod::default()
    })
}

fn quantity(text: &str) -> nodewright_scheduling::resources::Quantity {
    parse_quantity(text).expect("fixture quantities are valid")
}

impl PodBuilder {
    pub fn cpu(mut self, q: &str) -> Self {
        self.0.requests.cpu_millis = quantity(q).millis();
        self
    }

    pub fn memory(mut self, q: &str) -> Self {
        self.0.requests.memory_bytes = quantity(q).units();
        self
    }

    pub fn gpus(mut self, n: i64) -> Self {
        self.0.requests.set(labels::RESOURCE_NVIDIA_GPU, n);
        self
    }

    pub fn namespace(mut self, ns: &str) -> Self {
        self.0.namespace = ns.into();
        self
    }

    pub fn label(mut self, key: &str, value: &str) -> Self {
        std::sync::Arc::make_mut(&mut self.0.labels).insert(key.into(), value.into());
        self
    }

    pub fn node_selector(mut self, key: &str, value: &str) -> Self {
        self.0
            .placement_mut()
            .node_selector
            .insert(key.into(), value.into());
        self
    }

    /// Adds a required node affinity term (terms are ORed).
    pub fn requires_one_of(mut self, term: Vec<NodeSelectorRequirement>) -> Self {
        self.0.placement_mut().required_node_affinity.push(term);
        self
    }

    pub fn requires(self, key: &str, operator: Operator, values: &[&str]) -> Self {
        self.requires_one_of(vec![requirement(key, operator, values)])
    }

    pub fn prefers(mut self, weight: i32, key: &str, operator: Operator, values: &[&str]) -> Self {
        self.0
            .placement_mut()
            .preferred_node_affinity
            .push(PreferredSchedulingTerm {
                weight,
                preference: vec![requirement(key, operator, values)],
            });
        self
    }

    pub fn tolerates(mut self, toleration: Toleration) -> Self {
        self.0.placement_mut().tolerations.push(toleration);
        self
    }

    pub fn host_port(mut self, port: i32) -> Self {
        self.0.placement_mut().host_ports.push(HostPort::tcp(port));
        self
    }

    pub fn spread(mut self, key: &str, max_skew: i32, selector: &[(&str, &str)]) -> Self {
        self.0
            .placement_mut()
            .topology_spread
            .push(TopologySpreadConstraint {
                max_skew,
                topology_key: key.into(),
                when_unsatisfiable: WhenUnsatisfiable::DoNotSchedule,
                label_selector: LabelSelector::labels(selector.iter().copied()),
                min_domains: None,
            });
        self
    }

    pub fn soft_spread(mut self, key: &str, max_skew: i32, selector: &[(&str, &str)]) -> Self {
        self = self.spread(key, max_skew, selector);
        if let Some(last) = self.0.placement_mut().topology_spread.last_mut() {
            last.when_unsatisfiable = WhenUnsatisfiable::ScheduleAnyway;
        }
        self
    }

    pub fn min_domains(mut self, n: i32) -> Self {
        if let Some(last) = self.0.placement_mut().topology_spread.last_mut() {
            last.min_domains = Some(n);
        }
        self
    }

    pub fn affinity(mut self, key: &str, selector: &[(&str, &str)]) -> Self {
        self.0
            .placement_mut()
            .pod_affinity
            .push(affinity_term(key, selector));
        self
    }

    pub fn anti_affinity(mut self, key: &str, selector: &[(&str, &str)]) -> Self {
        self.0
            .placement_mut()
            .pod_anti_affinity
            .push(affinity_term(key, selector));
        self
    }

    pub fn prefers_anti_affinity(
        mut self,
        weight: i32,
        key: &str,
        selector: &[(&str, &str)],
    ) -> Self {
        self.0
            .placement_mut()
            .preferred_pod_anti_affinity
            .push(WeightedPodAffinityTerm {
                weight,
                term: affinity_term(key, selector),
            });
        self
    }

    pub fn prefers_affinity(mut self, weight: i32, key: &str, selector: &[(&str, &str)]) -> Self {
        self.0
            .placement_mut()
            .preferred_pod_affinity
            .push(WeightedPodAffinityTerm {
                weight,
                term: affinity_term(key, selector),
            });
        self
    }

    pub fn build(self) -> Pod {
        self.0
    }

    /// `n` copies named `<name>-0` … `<name>-{n-1}`.
    pub fn times(self, n: usize) -> Vec<Pod> {
        (0..n)
            .map(|i| {
                let mut p = self.0.clone();
                p.name = format!("{}-{i}", self.0.name);
                p.uid = format!("{}-{i}", self.0.uid);
                p
            })
            .collect()
    }
}

pub fn affinity_term(key: &str, selector: &[(&str, &str)]) -> PodAffinityTerm {
    PodAffinityTerm {
        label_selector: LabelSelector::labels(selector.iter().copied()),
        topology_key: key.into(),
        ..PodAffinityTerm::default()
    }
}

pub fn requirement(key: &str, operator: Operator, values: &[&str]) -> NodeSelectorRequirement {
    NodeSelectorRequirement::new(key, operator, values.iter().copied())
}

/// `provisioner("default").requires(CAPACITY_TYPE, In, &["spot"]).limit_cpu(1000)`.
#[derive(Clone)]
pub struct ProvisionerBuilder(Provisioner);

pub fn provisioner(name: &str) -> ProvisionerBuilder {
    ProvisionerBuilder(Provisioner {
        name: name.into(),
        ..Provisioner::default()
    })
}

impl ProvisionerBuilder {
    pub fn requires(mut self, key: &str, operator: Operator, values: &[&str]) -> Self {
        self.0.requirements.push(requirement(key, operator, values));
        self
    }

    pub fn spot_only(self) -> Self {
        self.requires(
            labels::CAPACITY_TYPE,
            Operator::In,
            &[labels::CAPACITY_TYPE_SPOT],
        )
    }

    pub fn weight(mut self, weight: i32) -> Self {
        self.0.weight = weight;
        self
    }

    pub fn label(mut self, key: &str, value: &str) -> Self {
        self.0.labels.insert(key.into(), value.into());
        self
    }

    pub fn taint(mut self, key: &str, value: &str, effect: TaintEffect) -> Self {
        self.0.taints.push(Taint::new(key, value, effect));
        self
    }

    pub fn startup_taint(mut self, key: &str, value: &str) -> Self {
        self.0
            .startup_taints
            .push(Taint::new(key, value, TaintEffect::NoSchedule));
        self
    }

    pub fn limit(mut self, resource: &str, amount: i64) -> Self {
        self.0.limits.insert(resource.into(), amount);
        self
    }

    pub fn limit_cpu(self, cores: i64) -> Self {
        self.limit(labels::RESOURCE_CPU, cores * 1000)
    }

    pub fn build(self) -> Provisioner {
        self.0
    }

    /// The provisioner with these types, allocatable computed by the AWS rules.
    pub fn with_types(self, types: &[Arc<InstanceType>]) -> ProvisionerInput {
        ProvisionerInput::new(self.0, types, &AllocatableSettings::default())
    }
}

/// An existing node built from an instance type: `node("n1", &m5_large, "us-east-1a")`.
pub fn node(name: &str, it: &InstanceType, zone: &str) -> ExistingNode {
    let mut labels = it.labels.clone();
    labels.insert(labels::ZONE.into(), zone.into());
    labels.insert(labels::HOSTNAME.into(), name.into());
    ExistingNode {
        name: name.into(),
        labels,
        allocatable: it.allocatable(&Default::default(), &AllocatableSettings::default()),
        capacity: it.capacity.clone(),
        ..ExistingNode::default()
    }
}

pub fn daemonset(name: &str, cpu: &str, memory: &str) -> DaemonSet {
    let template = pod(name).cpu(cpu).memory(memory).build();
    DaemonSet::from_template("kube-system", name, &template)
}

/// A cluster to schedule: `cluster().pods(..).provisioner(..).plan()`.
#[derive(Clone, Default)]
pub struct Cluster(pub ScheduleInput);

pub fn cluster() -> Cluster {
    Cluster(ScheduleInput {
        settings: SchedulerSettings::default(),
        ..ScheduleInput::default()
    })
}

impl Cluster {
    pub fn pods(mut self, pods: impl IntoIterator<Item = Pod>) -> Self {
        self.0.pods.extend(pods);
        self
    }

    pub fn pod(mut self, pod: Pod) -> Self {
        self.0.pods.push(pod);
        self
    }

    pub fn provisioner(mut self, p: ProvisionerInput) -> Self {
        self.0.provisioners.push(p);
        self
    }

    pub fn node(mut self, node: ExistingNode) -> Self {
        self.0.nodes.push(node);
        self
    }

    pub fn daemonset(mut self, ds: DaemonSet) -> Self {
        self.0.daemonsets.push(ds);
        self
    }

    pub fn settings(mut self, f: impl FnOnce(&mut SchedulerSettings)) -> Self {
        f(&mut self.0.settings);
        self
    }

    pub fn plan(&self) -> Plan {
        schedule(&self.0)
    }
}

/// Which node (new node index or existing node name) each pod landed on.
pub fn placement(plan: &Plan) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for (i, n) in plan.nodes.iter().enumerate() {
        for p in &n.pods {
            out.insert(p.clone(), format!("new-{i}"));
        }
    }
    for e in &plan.existing {
        for p in &e.pods {
            out.insert(p.clone(), e.node.clone());
        }
    }
    out
}

/// Pods per zone over new nodes.
pub fn pods_per_zone(plan: &Plan) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for n in &plan.nodes {
        *out.entry(n.zone.clone()).or_insert(0) += n.pods.len();
    }
    out
}
