//! Placing one group's pods at one relaxation level.
//!
//! Pods go out in *chunks*. Each chunk has a target: for every non-hostname topology key the
//! group's constraints involve, the domain to use (the least-loaded one that keeps every skew,
//! affinity and anti-affinity rule) or the domains to avoid, and how many pods the target can
//! take before the counts must be looked at again. A chunk fills existing nodes first (first
//! fit, in node order: existing, in flight, then machines planned earlier), then opens new
//! machines from the provisioners in weight order. Each node takes as many pods at once as its
//! room, ports and hostname-level topology allow.

use std::collections::{BTreeSet, HashMap};

use crate::labels;
use crate::requirements::Requirements;

use super::state::{
    Domain, Machine, NodeKind, NodeState, PackState, domain_of, machine_domain, node_counts_for,
};
pub(crate) use super::target::{Rule, Target};
use super::vector::ResVec;

pub(crate) use super::fit::{Fit, Pinning, within_limits};

/// Hostnames of planned machines: not a valid DNS name, so never equal to a real node's.
pub(crate) const PLANNED_HOSTNAME_PREFIX: &str = "planned/";

/// Why a node (or a fresh machine of a provisioner) cannot take a pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Reject {
    Room,
    HostPort,
    Taint,
    Requirements,
    Cordoned,
    Limits,
    /// A topology rule (by topology group id, when one rule is to blame).
    Topology(Option<usize>),
    /// The provisioner has no type for the pod (see the explanation for detail).
    NoType(String),
}

/// Why a group stopped short.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Stop {
    /// A required pod affinity names pods not placed anywhere yet.
    AwaitingAffinity(usize),
    /// No domain keeps the topology rules.
    Topology(usize),
    /// Nodes and provisioners refused; per provisioner, the last refusal.
    NoNode(Vec<Option<Reject>>),
}

impl<'m> PackState<'m> {
    /// Places as many of the group's remaining pods as the level allows. `None` when all went.
    pub(crate) fn place_group(&mut self, g: usize, level: usize) -> Option<Stop> {
        let model = self.model;
        let group = &model.groups[g];
        let lvl = &group.levels[level];
        let mut excluded: BTreeSet<(String, String)> = BTreeSet::new();
        let mut cursors: HashMap<String, usize> = HashMap::new();
        while self.remaining(g) > 0 {
            let target = match self.choose_target(group, lvl, &excluded) {
                Ok(target) => target,
                Err(stop) => return Some(stop),
            };
            let want = (self.remaining(g) as i64).min(target.cap);
            let cursor = cursors.entry(target.signature()).or_insert(0);
            let (placed, refusals) = self.place_chunk(g, level, &target, want, cursor);
            if placed > 0 {
                continue;
            }
            // Nothing fit this target: try the next domain, else give up.
            let pinned: Vec<(String, String)> = target
                .rules
                .iter()
                .filter_map(|(k, r)| match r {
                    Rule::Pin(v) => Some((k.clone(), v.clone())),
                    Rule::Avoid(_) => None,
                })
                .collect();
            if pinned.is_empty() || pinned.iter().all(|p| excluded.contains(p)) {
                return Some(Stop::NoNode(refusals));
            }
            excluded.extend(pinned);
        }
        None
    }

    /// Places up to `want` pods under `target`; returns how many, and per provisioner why it
    /// could not open a machine (when it was asked).
    fn place_chunk(
        &mut self,
        g: usize,
        level: usize,
        target: &Target,
        want: i64,
        cursor: &mut usize,
    ) -> (i64, Vec<Option<Reject>>) {
        let model = self.model;
        let group = &model.groups[g];
        let mut placed = 0;
        while placed < want {
            let Some(i) = self.next_node(*cursor, &group.req) else {
                break;
            };
            match self.evaluate(&self.nodes[i], group, level, target, want - placed) {
                Ok(fit) => {
                    let full = fit.count < want - placed;
                    placed += fit.count;
                    self.commit(i, g, fit);
                    if full {
                        *cursor = i + 1;
                    }
                }
                Err(_) => *cursor = i + 1,
            }
        }
        let mut refusals = vec![None; model.provs.len()];
        while placed < want && self.open_new {
            match self.open_machine(g, level, target, want - placed, &mut refusals) {
                Some(count) => placed += count,
                None => break,
            }
        }
        (placed, refusals)
    }

    /// Opens a machine from the first provisioner that can take pods of the group.
    fn open_machine(
        &mut self,
        g: usize,
        level: usize,
        target: &Target,
        want: i64,
        refusals: &mut [Option<Reject>],
    ) -> Option<i64> {
        let model = self.model;
        let group = &model.groups[g];
        for (prov, refusal) in refusals.iter_mut().enumerate() {
            if !group.tolerates[prov] {
                *refusal = Some(Reject::Taint);
                continue;
            }
            let (reqs, mut candidates) = match self.template(g, level, prov) {
                Ok(t) => t,
                Err(reject) => {
                    *refusal = Some(reject);
                    continue;
                }
            };
            let p = &model.provs[prov];
            if let Some(headroom) = self.headroom(prov) {
                candidates.retain(|&t| within_limits(p, &p.types[t].capacity, &headroom));
                if candidates.is_empty() {
                    *refusal = Some(Reject::Limits);
                    continue;
                }
            }
            let hostname = format!("{PLANNED_HOSTNAME_PREFIX}{}", self.new_machines);
            let forced = self.apart_caps.is_some() && super::apart::keeps_itself_apart(model, g);
            let mut cap = match &self.apart_caps {
                Some(caps) if forced => caps[prov],
                _ => self.caps[prov],
            };
            if !group.req.fits(&cap) {
                cap = ResVec::UNBOUNDED;
            }
            let (mut reqs, mut candidates) = (reqs, candidates);
            let pinning = Pinning {
                hostname: &hostname,
                cap: &cap,
            };
            if let Err(reject) =
                self.apply_pins(p, &mut reqs, &mut candidates, &pinning, group, target)
            {
                *refusal = Some(reject);
                continue;
            }
            if !forced
                && let Domain::Known(zone) =
                    machine_domain(p, &reqs, &candidates, &hostname, labels::ZONE)
                && let Some(zone_cap) = self.zone_caps.get(prov).and_then(|z| z.get(zone))
                && group.req.fits(zone_cap)
            {
                cap = *zone_cap;
            }
            let largest = candidates
                .iter()
                .fold(ResVec::ZERO, |acc, &t| acc.max(&p.types[t].alloc));
            let node = NodeState {
                kind: NodeKind::New(Box::new(Machine {
                    prov,
                    reqs,
                    candidates,
                    cap,
                    reservation: Default::default(),
                    largest,
                })),
                used: ResVec::ZERO,
                room: largest.min(&cap),
                hostname,
                ports: Vec::new(),
                pods: Vec::new(),
            };
            match self.evaluate(&node, group, level, target, want) {
                Ok(fit) if fit.count > 0 => {
                    let count = fit.count;
                    let index = self.push(node);
                    self.new_machines += 1;
                    self.refresh_machine(index, true);
                    self.commit(index, g, fit);
                    return Some(count);
                }
                Ok(_) => *refusal = Some(Reject::Room),
                Err(reject) => *refusal = Some(reject),
            }
        }
        None
    }

    /// Requirements and candidate types of a fresh machine of `prov` for the group's pods.
    fn template(
        &mut self,
        g: usize,
        level: usize,
        prov: usize,
    ) -> Result<(Requirements, Vec<usize>), Reject> {
        let model = self.model;
        if let Some(cached) = self.templates.get(&(g, level, prov)) {
            return cached.clone().map_err(Reject::NoType);
        }
        let group = &model.groups[g];
        let mut result = Err(String::from("requirements"));
        for term in &group.levels[level].terms {
            let base = model.base_template(prov, term);
            match base {
                Ok((reqs, all)) => {
                    let p = &model.provs[prov];
                    let fitting: Vec<usize> = all
                        .iter()
                        .copied()
                        .filter(|&t| group.req.fits(&p.types[t].alloc))
                        .collect();
                    if fitting.is_empty() {
                        result = Err(String::from("resources"));
                    } else {
                        result = Ok((reqs, fitting));
                        break;
                    }
                }
                Err(reason) => {
                    if result.is_err() {
                        result = Err(reason);
                    }
                }
            }
        }
        self.templates.insert((g, level, prov), result.clone());
        result.map_err(Reject::NoType)
    }

    /// Puts `fit.count` pods of group `g` on node `index` and updates every count.
    fn commit(&mut self, index: usize, g: usize, fit: Fit) {
        let model = self.model;
        let group = &model.groups[g];
        let k = fit.count;
        let node = &mut self.nodes[index];
        node.used = node.used.add(&group.req.times(k));
        let start = self.placed[g];
        node.pods
            .extend_from_slice(&group.pods[start..start + k as usize]);
        self.placed[g] += k as usize;
        node.ports
            .extend(group.host_ports(model.pods).iter().cloned());
        let changed = match &mut node.kind {
            NodeKind::Existing(_) => {
                node.room = node.room.sub(&group.req.times(k));
                None
            }
            NodeKind::New(machine) => {
                let before = machine.candidates.len();
                let narrowed = fit.work.is_some();
                if let Some((reqs, candidates)) = fit.work {
                    machine.reqs = reqs;
                    machine.candidates = candidates;
                }
                let p = &model.provs[machine.prov];
                let used = node.used;
                machine.candidates.retain(|&t| used.fits(&p.types[t].alloc));
                Some(narrowed || machine.candidates.len() != before)
            }
        };
        if let Some(changed) = changed {
            self.refresh_machine(index, changed);
        }
        let node = &self.nodes[index];
        let mut records: Vec<(usize, String, bool)> = Vec::new();
        for &id in &group.selected_by {
            let key = &self.topology.get(id).definition.key;
            if let Domain::Known(d) = domain_of(model, node, key)
                && node_counts_for(model, node, &self.topology, id)
            {
                records.push((id, d.to_string(), false));
            }
        }
        for &id in &group.owns_required_anti {
            let key = &self.topology.get(id).definition.key;
            if let Domain::Known(d) = domain_of(model, node, key) {
                records.push((id, d.to_string(), true));
            }
        }
        for (id, domain, owner) in records {
            let tg = self.topology.get_mut(id);
            if owner {
                tg.owners.add(&domain, k);
            } else {
                tg.matching.add(&domain, k);
            }
        }
    }
}
