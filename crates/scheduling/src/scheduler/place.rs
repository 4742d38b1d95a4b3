//! Placing one group's pods at one relaxation level.
//!
//! Pods go out in *chunks*. Each chunk has a target: for every non-hostname topology key the
//! group's constraints involve, the domain to use (the least-loaded one that keeps every skew,
//! affinity and anti-affinity rule) or the domains to avoid, and how many pods the target can
//! take before the counts must be looked at again. A chunk fills existing nodes first (first
//! fit, in node order: existing, in flight, then machines planned earlier), then opens new
//! machines from the provisioners in weight order. Each node takes as many pods at once as its
//! room, ports and hostname-level topology allow.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::labels;
use crate::requirements::{Requirements, ValueSet};
use crate::taints::tolerates_all;
use crate::topology::spread_room;

use super::groups::{Group, Level};
use super::provisioners::{KeyClass, ProvModel};
use super::state::{
    Domain, Machine, NodeKind, NodeState, PackState, domain_of, machine_domain, node_counts_for,
};
use super::vector::ResVec;

/// Hostnames of planned machines: not a valid DNS name, so never equal to a real node's.
pub(crate) const PLANNED_HOSTNAME_PREFIX: &str = "planned/";

/// What a chunk must do for one topology key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Rule {
    Pin(String),
    Avoid(BTreeSet<String>),
}

#[derive(Debug, Clone, Default)]
pub(crate) struct Target {
    pub rules: Vec<(String, Rule)>,
    pub cap: i64,
}

impl Target {
    fn signature(&self) -> String {
        if self.rules.is_empty() {
            String::new()
        } else {
            format!("{:?}", self.rules)
        }
    }
}

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

/// How many pods a node takes and the narrowed requirements a new machine would then have.
pub(crate) struct Fit {
    pub count: i64,
    pub work: Option<(Requirements, Vec<usize>)>,
}

/// Narrows a machine's requirements and candidates by `key ∈ set`; false when nothing is left.
pub(crate) fn narrow(
    p: &ProvModel,
    reqs: &mut Requirements,
    candidates: &mut Vec<usize>,
    key: &str,
    set: &ValueSet,
) -> bool {
    reqs.add(key, set);
    let Some(merged) = reqs.get(key) else {
        return true;
    };
    match p.key_class(key) {
        KeyClass::Offering => {
            if merged.no_present_value() {
                return false;
            }
            let mask = p.offer_mask(reqs);
            candidates.retain(|&t| p.type_offered(&p.types[t], mask, reqs));
        }
        KeyClass::TypeLabel => {
            let merged = merged.clone();
            candidates.retain(|&t| merged.allows(p.types[t].label(key)));
        }
        KeyClass::Hostname => return merged.allows_unlisted(),
        KeyClass::Fixed(value) => return merged.allows(Some(value)),
        KeyClass::Flexible => return !merged.is_empty(),
        KeyClass::Undefined => return merged.allows(None),
    }
    !candidates.is_empty()
}

fn intersect_into(acc: &mut Option<BTreeSet<String>>, values: impl IntoIterator<Item = String>) {
    let values: BTreeSet<String> = values.into_iter().collect();
    *acc = Some(match acc.take() {
        Some(current) => current.intersection(&values).cloned().collect(),
        None => values,
    });
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

    fn choose_target(
        &self,
        group: &Group,
        lvl: &Level,
        excluded: &BTreeSet<(String, String)>,
    ) -> Result<Target, Stop> {
        let topo = &self.topology;
        if lvl.spreads.is_empty()
            && lvl.affinities.is_empty()
            && lvl.antis.is_empty()
            && group.inverse_blocked.is_empty()
        {
            return Ok(Target {
                rules: Vec::new(),
                cap: i64::MAX,
            });
        }
        for a in &lvl.affinities {
            if !a.self_matching && topo.get(a.group).matching.total() == 0 {
                return Err(Stop::AwaitingAffinity(a.group));
            }
        }
        #[derive(Default)]
        struct KeyPlan<'a> {
            spreads: Vec<&'a super::groups::SpreadRef>,
            affinities: Vec<super::groups::AffinityRef>,
            antis: Vec<super::groups::AffinityRef>,
            inverse: Vec<usize>,
        }
        let mut plans: BTreeMap<&str, KeyPlan<'_>> = BTreeMap::new();
        let key_of = |id: usize| topo.get(id).definition.key.as_str();
        for s in &lvl.spreads {
            plans.entry(key_of(s.group)).or_default().spreads.push(s);
        }
        for a in &lvl.affinities {
            plans
                .entry(key_of(a.group))
                .or_default()
                .affinities
                .push(*a);
        }
        for a in &lvl.antis {
            plans.entry(key_of(a.group)).or_default().antis.push(*a);
        }
        for &id in &group.inverse_blocked {
            plans.entry(key_of(id)).or_default().inverse.push(id);
        }
        let mut target = Target {
            rules: Vec::new(),
            cap: i64::MAX,
        };
        for (key, plan) in plans {
            if key == labels::HOSTNAME {
                continue;
            }
            let mut forbidden: BTreeSet<String> = BTreeSet::new();
            for a in &plan.antis {
                forbidden.extend(
                    topo.get(a.group)
                        .matching
                        .occupied()
                        .into_iter()
                        .map(str::to_string),
                );
            }
            for &id in &plan.inverse {
                forbidden.extend(
                    topo.get(id)
                        .owners
                        .occupied()
                        .into_iter()
                        .map(str::to_string),
                );
            }
            let self_anti = plan.antis.iter().any(|a| a.self_matching);
            let mut candidates: Option<BTreeSet<String>> = None;
            let mut first_of_affinity = false;
            for s in &plan.spreads {
                intersect_into(&mut candidates, s.domains.iter().cloned());
            }
            for a in &plan.affinities {
                let occupied = topo.get(a.group).matching.occupied();
                if occupied.is_empty() {
                    if !a.self_matching {
                        return Err(Stop::AwaitingAffinity(a.group));
                    }
                    first_of_affinity = true;
                } else {
                    intersect_into(&mut candidates, occupied.into_iter().map(str::to_string));
                }
            }
            for (k, v) in excluded {
                if k == key {
                    forbidden.insert(v.clone());
                }
            }
            if self_anti || first_of_affinity {
                target.cap = target.cap.min(1);
            }
            let Some(candidates) = candidates else {
                target.rules.push((key.to_string(), Rule::Avoid(forbidden)));
                continue;
            };
            let mut best: Option<(i64, &String, i64)> = None;
            for value in candidates.iter().filter(|v| !forbidden.contains(*v)) {
                let mut room = i64::MAX;
                let mut load = 0;
                for s in &plan.spreads {
                    let tg = topo.get(s.group);
                    let min = tg.min_count(s.domains.iter().map(String::as_str), s.min_domains);
                    let count = tg.matching.get(value);
                    room = room.min(spread_room(count, min, s.max_skew, s.self_matching));
                    load += count;
                }
                if room > 0 && best.is_none_or(|(l, _, _)| load < l) {
                    best = Some((load, value, room));
                }
            }
            match best {
                Some((_, value, room)) => {
                    target
                        .rules
                        .push((key.to_string(), Rule::Pin(value.clone())));
                    target.cap = target.cap.min(room);
                }
                None => {
                    let culprit = plan
                        .spreads
                        .first()
                        .map(|s| s.group)
                        .or(plan.affinities.first().map(|a| a.group))
                        .or(plan.antis.first().map(|a| a.group))
                        .or(plan.inverse.first().copied())
                        .unwrap_or(0);
                    return Err(Stop::Topology(culprit));
                }
            }
        }
        Ok(target)
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
            let (mut reqs, mut candidates) = (reqs, candidates);
            if let Err(reject) =
                self.apply_pins(p, &mut reqs, &mut candidates, &hostname, group, target)
            {
                *refusal = Some(reject);
                continue;
            }
            let mut cap = self.caps[prov];
            if !group.req.fits(&cap) {
                cap = ResVec::UNBOUNDED;
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

    /// How many of the group's pods `node` takes now (at most `want`), or why none.
    pub(crate) fn evaluate(
        &self,
        node: &NodeState,
        group: &Group,
        level: usize,
        target: &Target,
        want: i64,
    ) -> Result<Fit, Reject> {
        let model = self.model;
        let lvl = &group.levels[level];
        if !group.req.fits(&node.room) {
            return Err(Reject::Room);
        }
        let mut cap = want;
        let ports = group.host_ports(model.pods);
        if !ports.is_empty() {
            if node
                .ports
                .iter()
                .any(|used| ports.iter().any(|p| p.conflicts_with(used)))
            {
                return Err(Reject::HostPort);
            }
            cap = 1;
        }
        cap = cap.min(self.hostname_cap(node, group, lvl)?);
        match &node.kind {
            NodeKind::Existing(i) => {
                let existing = &model.existing[*i];
                if existing.unschedulable {
                    return Err(Reject::Cordoned);
                }
                if !tolerates_all(&existing.taints, group.tolerations(model.pods)) {
                    return Err(Reject::Taint);
                }
                if !lvl.terms.iter().any(|t| t.matches(&existing.labels)) {
                    return Err(Reject::Requirements);
                }
                for (key, rule) in &target.rules {
                    let domain = existing.domain(key);
                    let ok = match rule {
                        Rule::Pin(v) => domain == Some(v.as_str()),
                        Rule::Avoid(set) => domain.is_none_or(|d| !set.contains(d)),
                    };
                    if !ok {
                        return Err(Reject::Topology(None));
                    }
                }
                let room = existing.alloc.sub(&node.used);
                cap = cap.min(group.req.copies_in(&room));
                if cap == 0 {
                    return Err(Reject::Room);
                }
                Ok(Fit {
                    count: cap,
                    work: None,
                })
            }
            NodeKind::New(machine) => self.evaluate_machine(node, machine, group, lvl, target, cap),
        }
    }

    fn evaluate_machine(
        &self,
        node: &NodeState,
        machine: &Machine,
        group: &Group,
        lvl: &Level,
        target: &Target,
        mut cap: i64,
    ) -> Result<Fit, Reject> {
        let model = self.model;
        if !group.tolerates[machine.prov] {
            return Err(Reject::Taint);
        }
        let p = &model.provs[machine.prov];
        let mut work: Option<(Requirements, Vec<usize>)> = None;
        let mut matched = false;
        for term in &lvl.terms {
            let implied = term.iter().all(|(k, set)| {
                machine
                    .reqs
                    .get(k)
                    .is_some_and(|mine| mine.intersect(set) == *mine)
            });
            if implied {
                matched = true;
                break;
            }
            let mut reqs = machine.reqs.clone();
            let mut candidates = machine.candidates.clone();
            if term
                .iter()
                .all(|(k, set)| narrow(p, &mut reqs, &mut candidates, k, set))
            {
                work = Some((reqs, candidates));
                matched = true;
                break;
            }
        }
        if !matched {
            return Err(Reject::Requirements);
        }
        if self.needs_pins(p, machine, &node.hostname, group, target)? {
            let (mut reqs, mut candidates) = match work.take() {
                Some(w) => w,
                None => (machine.reqs.clone(), machine.candidates.clone()),
            };
            self.apply_pins(p, &mut reqs, &mut candidates, &node.hostname, group, target)?;
            work = Some((reqs, candidates));
        }
        let (candidates, largest) = match &work {
            Some((_, c)) => (
                c,
                c.iter()
                    .fold(ResVec::ZERO, |acc, &t| acc.max(&p.types[t].alloc)),
            ),
            None => (&machine.candidates, machine.largest),
        };
        // No type holds more than the componentwise largest; stop once one reaches that.
        let ceiling = cap.min(
            group
                .req
                .copies_in(&largest.min(&machine.cap).sub(&node.used)),
        );
        let mut best = 0;
        for &t in candidates {
            let room = p.types[t].alloc.min(&machine.cap).sub(&node.used);
            best = best.max(group.req.copies_in(&room));
            if best >= ceiling {
                break;
            }
        }
        cap = cap.min(best);
        if cap == 0 {
            return Err(Reject::Room);
        }
        Ok(Fit { count: cap, work })
    }

    /// The keys a machine must have one value for: the target's, then every key a topology
    /// group counts the group's pods by.
    fn pin_keys<'a>(
        &'a self,
        group: &'a Group,
        target: &'a Target,
    ) -> impl Iterator<Item = (&'a str, Option<&'a BTreeSet<String>>, Option<&'a str>)> + 'a {
        let counted = group.selected_by.iter().filter_map(move |&id| {
            let key = self.topology.get(id).definition.key.as_str();
            (key != labels::HOSTNAME && !target.rules.iter().any(|(k, _)| k == key))
                .then_some((key, None, None))
        });
        let rules = target.rules.iter().map(|(k, r)| match r {
            Rule::Pin(v) => (k.as_str(), None, Some(v.as_str())),
            Rule::Avoid(set) => (k.as_str(), Some(set), None),
        });
        rules.chain(counted)
    }

    /// Whether the machine must be narrowed to meet the pins (an error when it cannot).
    fn needs_pins(
        &self,
        p: &ProvModel,
        machine: &Machine,
        hostname: &str,
        group: &Group,
        target: &Target,
    ) -> Result<bool, Reject> {
        for (key, avoid, pin) in self.pin_keys(group, target) {
            let choice = self.pin_choice(
                p,
                &machine.reqs,
                &machine.candidates,
                hostname,
                key,
                avoid,
                pin,
            )?;
            if choice.is_some() {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Narrows requirements and candidates in place to meet the pins.
    fn apply_pins(
        &self,
        p: &ProvModel,
        reqs: &mut Requirements,
        candidates: &mut Vec<usize>,
        hostname: &str,
        group: &Group,
        target: &Target,
    ) -> Result<(), Reject> {
        for (key, avoid, pin) in self.pin_keys(group, target) {
            if let Some(choice) = self.pin_choice(p, reqs, candidates, hostname, key, avoid, pin)?
                && !narrow(p, reqs, candidates, key, &ValueSet::one(choice))
            {
                return Err(Reject::Topology(None));
            }
        }
        Ok(())
    }

    /// The value a machine must be narrowed to for `key` under a rule (`pin`, or values to
    /// `avoid`), `None` when it already complies.
    #[allow(clippy::too_many_arguments)]
    fn pin_choice(
        &self,
        p: &ProvModel,
        reqs: &Requirements,
        candidates: &[usize],
        hostname: &str,
        key: &str,
        avoid: Option<&BTreeSet<String>>,
        pin: Option<&str>,
    ) -> Result<Option<String>, Reject> {
        let domain = machine_domain(p, reqs, candidates, hostname, key);
        match (domain, pin) {
            (Domain::Known(d), Some(v)) if d == v => Ok(None),
            (Domain::Known(_), Some(_)) | (Domain::Absent, Some(_)) => Err(Reject::Topology(None)),
            (Domain::Known(d), None) if avoid.is_some_and(|set| set.contains(d)) => {
                Err(Reject::Topology(None))
            }
            (Domain::Known(_) | Domain::Absent, None) => Ok(None),
            (Domain::Open, Some(v)) => Ok(Some(v.to_string())),
            (Domain::Open, None) => {
                let options = p
                    .domain_options(key, reqs, candidates.iter().copied())
                    .ok_or(Reject::Topology(None))?;
                options
                    .into_iter()
                    .filter(|(v, _)| avoid.is_none_or(|set| !set.contains(v)))
                    .min_by(|a, b| a.1.total_cmp(&b.1).then_with(|| a.0.cmp(&b.0)))
                    .map(|(v, _)| Some(v))
                    .ok_or(Reject::Topology(None))
            }
        }
    }

    /// The most pods of the group this node may hold under hostname-keyed rules.
    fn hostname_cap(&self, node: &NodeState, group: &Group, lvl: &Level) -> Result<i64, Reject> {
        let topo = &self.topology;
        let host = node.hostname.as_str();
        let mut cap = i64::MAX;
        for s in &lvl.spreads {
            let tg = topo.get(s.group);
            if tg.definition.is_hostname() {
                let room = spread_room(tg.matching.get(host), 0, s.max_skew, s.self_matching);
                if room == 0 {
                    return Err(Reject::Topology(Some(s.group)));
                }
                cap = cap.min(room);
            }
        }
        for a in &lvl.affinities {
            let tg = topo.get(a.group);
            if tg.definition.is_hostname()
                && tg.matching.get(host) == 0
                && !(a.self_matching && tg.matching.total() == 0)
            {
                return Err(Reject::Topology(Some(a.group)));
            }
        }
        for a in &lvl.antis {
            let tg = topo.get(a.group);
            if tg.definition.is_hostname() {
                if tg.matching.get(host) > 0 {
                    return Err(Reject::Topology(Some(a.group)));
                }
                if a.self_matching {
                    cap = cap.min(1);
                }
            }
        }
        for &id in &group.inverse_blocked {
            let tg = topo.get(id);
            if tg.definition.is_hostname() && tg.owners.get(host) > 0 {
                return Err(Reject::Topology(Some(id)));
            }
        }
        Ok(cap)
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

/// Whether `capacity` stays within `headroom` on every resource the provisioner limits.
pub(crate) fn within_limits(
    p: &ProvModel,
    capacity: &crate::resources::Resources,
    headroom: &crate::resources::Resources,
) -> bool {
    p.limits
        .keys()
        .all(|name| capacity.get(name) <= headroom.get(name))
}
