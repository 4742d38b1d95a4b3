//! Choosing where the next chunk of a group's pods goes: for each non-hostname topology key
//! its constraints involve, the least-loaded domain that keeps every skew, affinity and
//! anti-affinity rule, or the domains to avoid, and how many pods the choice can take before
//! the counts must be looked at again.

use std::collections::{BTreeMap, BTreeSet};

use crate::labels;
use crate::topology::spread_room;

use super::groups::{Group, Level};
use super::place::Stop;
use super::state::PackState;

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
    pub(crate) fn signature(&self) -> String {
        if self.rules.is_empty() {
            String::new()
        } else {
            format!("{:?}", self.rules)
        }
    }
}

fn intersect_into(acc: &mut Option<BTreeSet<String>>, values: impl IntoIterator<Item = String>) {
    let values: BTreeSet<String> = values.into_iter().collect();
    *acc = Some(match acc.take() {
        Some(current) => current.intersection(&values).cloned().collect(),
        None => values,
    });
}

impl<'m> PackState<'m> {
    pub(crate) fn choose_target(
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
}
