//! Whether and how many of a group's pods one node takes: requests, host ports, taints, node
//! requirements, topology pins and hostname-level rules. New machines are narrowed (zone,
//! capacity type, instance types) to whatever the pods need.

use std::collections::BTreeSet;

use crate::labels;
use crate::requirements::{Requirements, ValueSet};
use crate::taints::tolerates_all;
use crate::topology::spread_room;

use super::groups::{Group, Level};
use super::place::Reject;
use super::provisioners::{KeyClass, ProvModel};
use super::state::{Domain, Machine, NodeKind, NodeState, PackState, machine_domain};
use super::target::{Rule, Target};
use super::vector::{CPU, MEMORY, ResVec};

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

impl<'m> PackState<'m> {
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
        // Before room: a cordoned node has none, and "cordoned" is the reason a user needs.
        if let NodeKind::Existing(i) = &node.kind
            && model.existing[*i].unschedulable
        {
            return Err(Reject::Cordoned);
        }
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
            let pin = Pinning {
                hostname: &node.hostname,
                cap: &machine.cap,
            };
            self.apply_pins(p, &mut reqs, &mut candidates, &pin, group, target)?;
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
            // An open value always needs a pin; which one (or that none is left) is for
            // `apply_pins` to find, once, on the node that takes the pods.
            if machine_domain(p, &machine.reqs, &machine.candidates, hostname, key) == Domain::Open
            {
                return Ok(true);
            }
            let pinning = Pinning {
                hostname,
                cap: &machine.cap,
            };
            let choice = self.pin_choice(
                p,
                &machine.reqs,
                &machine.candidates,
                &pinning,
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
    pub(crate) fn apply_pins(
        &self,
        p: &ProvModel,
        reqs: &mut Requirements,
        candidates: &mut Vec<usize>,
        pinning: &Pinning<'_>,
        group: &Group,
        target: &Target,
    ) -> Result<(), Reject> {
        for (key, avoid, pin) in self.pin_keys(group, target) {
            if let Some(choice) = self.pin_choice(p, reqs, candidates, pinning, key, avoid, pin)?
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
        pinning: &Pinning<'_>,
        key: &str,
        avoid: Option<&BTreeSet<String>>,
        pin: Option<&str>,
    ) -> Result<Option<String>, Reject> {
        let domain = machine_domain(p, reqs, candidates, pinning.hostname, key);
        match (domain, pin) {
            (Domain::Known(d), Some(v)) if d == v => Ok(None),
            (Domain::Known(_), Some(_)) | (Domain::Absent, Some(_)) => Err(Reject::Topology(None)),
            (Domain::Known(d), None) if avoid.is_some_and(|set| set.contains(d)) => {
                Err(Reject::Topology(None))
            }
            (Domain::Known(_) | Domain::Absent, None) => Ok(None),
            (Domain::Open, Some(v)) => Ok(Some(v.to_string())),
            (Domain::Open, None) => {
                let cheapest = |types: &[usize]| {
                    p.domain_options(key, reqs, types.iter().copied())?
                        .into_iter()
                        .filter(|(v, _)| avoid.is_none_or(|set| !set.contains(v)))
                        .min_by(|a, b| a.1.total_cmp(&b.1).then_with(|| a.0.cmp(&b.0)))
                        .map(|(v, _)| v)
                };
                // A capped machine fills up to its cap: price the value by the types that
                // hold that much, not by the smallest type that holds its first pods.
                let cap = pinning.cap;
                let full: Vec<usize> = if *cap == ResVec::UNBOUNDED {
                    Vec::new()
                } else {
                    let holds = |t: usize| {
                        let alloc = &p.types[t].alloc;
                        alloc.0[CPU] >= cap.0[CPU] && alloc.0[MEMORY] >= cap.0[MEMORY]
                    };
                    candidates.iter().copied().filter(|&t| holds(t)).collect()
                };
                cheapest(&full)
                    .or_else(|| cheapest(candidates))
                    .map(Some)
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
}

/// What a machine's pins depend on besides its requirements: its hostname, and its cap
/// (the size it is expected to fill up to).
pub(crate) struct Pinning<'a> {
    pub hostname: &'a str,
    pub cap: &'a ResVec,
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
