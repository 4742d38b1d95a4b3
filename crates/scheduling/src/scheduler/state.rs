//! The mutable side of one packing run: nodes with what they hold, topology counts, limits
//! reservations and what is left of each group.

use std::collections::HashMap;

use crate::labels;
use crate::pod::HostPort;
use crate::requirements::{Requirements, ValueSet};
use crate::resources::Resources;
use crate::topology::{Topology, TopologyKind};

use super::model::Model;
use super::provisioners::{KeyClass, ProvModel};
use super::vector::ResVec;

/// A machine that does not exist yet.
#[derive(Debug, Clone)]
pub(crate) struct Machine {
    /// Index into `Model::provs`.
    pub prov: usize,
    pub reqs: Requirements,
    /// Indices into the provisioner's types that still fit and meet `reqs`, largest first.
    pub candidates: Vec<usize>,
    /// The strategy's size cap on what the machine may hold.
    pub cap: ResVec,
    /// What this machine holds against the provisioner's limits: the largest capacity among
    /// its candidates, per limited resource.
    pub reservation: Resources,
    /// The largest allocatable among its candidates, per resource.
    pub largest: ResVec,
}

#[derive(Debug, Clone)]
pub(crate) enum NodeKind {
    Existing(usize),
    New(Box<Machine>),
}

#[derive(Debug, Clone)]
pub(crate) struct NodeState {
    pub kind: NodeKind,
    pub used: ResVec,
    /// An upper bound of the room left (exact for existing nodes).
    pub room: ResVec,
    pub hostname: String,
    pub ports: Vec<HostPort>,
    /// Pending pods placed here (indices into the input pods).
    pub pods: Vec<usize>,
}

/// A node's value for a topology key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Domain<'a> {
    Known(&'a str),
    /// The node will not carry the label.
    Absent,
    /// A new machine that could still take several values.
    Open,
}

const BLOCK: usize = 32;

#[derive(Clone)]
pub(crate) struct PackState<'m> {
    pub model: &'m Model<'m>,
    pub nodes: Vec<NodeState>,
    /// Per block of nodes: an upper bound of the room of any node in it.
    block_room: Vec<ResVec>,
    pub topology: Topology,
    /// How many pods of each group are placed (they are taken in order).
    pub placed: Vec<usize>,
    pub level: Vec<usize>,
    /// Per provisioner: reservations of the machines planned so far.
    pub reserved: Vec<Resources>,
    /// Per provisioner: the strategy's cap on what one new machine holds.
    pub caps: Vec<ResVec>,
    /// Per provisioner: the cap on a machine opened for pods that keep themselves apart, when
    /// the strategy sizes those apart.
    pub apart_caps: Option<Vec<ResVec>>,
    /// Per provisioner: the cap by zone for a machine pinned to one (empty: none).
    pub zone_caps: Vec<std::collections::BTreeMap<String, ResVec>>,
    pub new_machines: usize,
    /// False while only existing and already planned nodes may take pods.
    pub open_new: bool,
    /// Fresh-machine templates by (group, level, provisioner).
    pub templates: HashMap<(usize, usize, usize), super::model::BaseTemplate>,
}

impl<'m> PackState<'m> {
    pub(crate) fn new(model: &'m Model<'m>, caps: Vec<ResVec>) -> PackState<'m> {
        let mut state = PackState {
            model,
            nodes: Vec::new(),
            block_room: Vec::new(),
            topology: model.topology.clone(),
            placed: vec![0; model.groups.len()],
            level: vec![0; model.groups.len()],
            reserved: vec![Resources::default(); model.provs.len()],
            caps,
            apart_caps: None,
            zone_caps: Vec::new(),
            new_machines: 0,
            open_new: true,
            templates: HashMap::new(),
        };
        for (i, node) in model.existing.iter().enumerate() {
            let room = if node.unschedulable {
                ResVec::ZERO
            } else {
                node.alloc.sub(&node.used)
            };
            state.push(NodeState {
                kind: NodeKind::Existing(i),
                used: node.used,
                room,
                hostname: node.hostname.clone(),
                ports: node.ports.clone(),
                pods: Vec::new(),
            });
        }
        state
    }

    pub(crate) fn remaining(&self, group: usize) -> usize {
        self.model.groups[group].pods.len() - self.placed[group]
    }

    pub(crate) fn push(&mut self, node: NodeState) -> usize {
        let index = self.nodes.len();
        if index.is_multiple_of(BLOCK) {
            self.block_room.push(node.room);
        } else if let Some(last) = self.block_room.last_mut() {
            *last = last.max(&node.room);
        }
        self.nodes.push(node);
        index
    }

    /// The first node at or after `from` whose room (by its upper bound) holds `req`. Blocks
    /// found without such a node get their bound tightened.
    pub(crate) fn next_node(&mut self, from: usize, req: &ResVec) -> Option<usize> {
        let mut block = from / BLOCK;
        let mut start = from;
        while block < self.block_room.len() {
            if req.fits(&self.block_room[block]) {
                let end = ((block + 1) * BLOCK).min(self.nodes.len());
                if let Some(i) = (start..end).find(|&i| req.fits(&self.nodes[i].room)) {
                    return Some(i);
                }
                let first = block * BLOCK;
                self.block_room[block] = self.nodes[first..end]
                    .iter()
                    .fold(ResVec::ZERO, |acc, n| acc.max(&n.room));
            }
            block += 1;
            start = block * BLOCK;
        }
        None
    }

    /// What a provisioner may still launch: limits less usage less reservations.
    pub(crate) fn headroom(&self, prov: usize) -> Option<Resources> {
        let p = &self.model.provs[prov];
        if p.limits.is_empty() {
            return None;
        }
        let mut headroom = Resources::default();
        for (name, limit) in &p.limits {
            headroom.set(
                name,
                limit - p.usage.get(name) - self.reserved[prov].get(name),
            );
        }
        Some(headroom)
    }

    /// Recomputes a machine's room, and when its candidates changed, its largest type and
    /// its reservation.
    pub(crate) fn refresh_machine(&mut self, index: usize, candidates_changed: bool) {
        let model = self.model;
        let node = &mut self.nodes[index];
        let NodeKind::New(machine) = &mut node.kind else {
            return;
        };
        let p = &model.provs[machine.prov];
        if candidates_changed {
            machine.largest = machine
                .candidates
                .iter()
                .fold(ResVec::ZERO, |acc, &t| acc.max(&p.types[t].alloc));
        }
        node.room = machine.largest.min(&machine.cap).sub(&node.used);
        if candidates_changed && !p.limits.is_empty() {
            let reservation = reservation_of(p, &machine.candidates);
            let previous = std::mem::replace(&mut machine.reservation, reservation.clone());
            let prov = machine.prov;
            self.reserved[prov] = &(&self.reserved[prov] - &previous) + &reservation;
        }
    }
}

/// The largest capacity among `candidates`, for each resource the provisioner limits.
pub(crate) fn reservation_of(p: &ProvModel, candidates: &[usize]) -> Resources {
    let mut out = Resources::default();
    for name in p.limits.keys() {
        let largest = candidates
            .iter()
            .map(|&t| p.types[t].capacity.get(name))
            .max()
            .unwrap_or(0);
        out.set(name, largest);
    }
    out
}

pub(crate) fn domain_of<'a>(model: &'a Model<'_>, node: &'a NodeState, key: &str) -> Domain<'a> {
    match &node.kind {
        NodeKind::Existing(i) => match model.existing[*i].domain(key) {
            Some(value) => Domain::Known(value),
            None => Domain::Absent,
        },
        NodeKind::New(machine) => machine_domain(
            &model.provs[machine.prov],
            &machine.reqs,
            &machine.candidates,
            &node.hostname,
            key,
        ),
    }
}

/// A new machine's value for `key`, given its requirements and candidate types.
pub(crate) fn machine_domain<'a>(
    p: &'a ProvModel,
    reqs: &'a Requirements,
    candidates: &[usize],
    hostname: &'a str,
    key: &str,
) -> Domain<'a> {
    if key == labels::HOSTNAME {
        return Domain::Known(hostname);
    }
    match p.key_class(key) {
        KeyClass::Fixed(value) => Domain::Known(value),
        KeyClass::Undefined => Domain::Absent,
        KeyClass::Hostname => Domain::Known(hostname),
        KeyClass::Offering | KeyClass::Flexible => single_value(reqs.get(key)),
        KeyClass::TypeLabel => {
            let mut values = candidates.iter().map(|&t| p.types[t].label(key));
            match values.next() {
                Some(first) if values.all(|v| v == first) => match first {
                    Some(v) => Domain::Known(v),
                    None => Domain::Absent,
                },
                _ => Domain::Open,
            }
        }
    }
}

fn single_value(set: Option<&ValueSet>) -> Domain<'_> {
    match set.and_then(ValueSet::finite_values) {
        Some(values) if values.len() == 1 => values
            .iter()
            .next()
            .map_or(Domain::Open, |v| Domain::Known(v.as_str())),
        _ => Domain::Open,
    }
}

/// Whether a pod placed on this node counts for a spread group's node filter.
pub(crate) fn node_counts_for(
    model: &Model<'_>,
    node: &NodeState,
    topology: &Topology,
    id: usize,
) -> bool {
    let definition = &topology.get(id).definition;
    if !matches!(definition.kind, TopologyKind::Spread { .. }) || definition.node_filter.is_empty()
    {
        return true;
    }
    match &node.kind {
        NodeKind::Existing(i) => definition.node_counts(&model.existing[*i].labels),
        NodeKind::New(machine) => definition
            .node_filter
            .iter()
            .any(|t| t.is_compatible(&machine.reqs)),
    }
}
