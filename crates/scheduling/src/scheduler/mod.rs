//! The scheduler: pending pods, existing nodes, provisioners and daemonsets in; a [`Plan`] out.
//!
//! Pipeline: compile the inputs ([`model`]), then pack them several ways ([`place`]: existing
//! nodes first, then in-flight machines, then new machines from provisioners by weight) and keep
//! the cheapest packing ([`finalize`]). The packings differ in the largest machine they let a
//! new node grow to: unbounded (Karpenter's behaviour: one machine grows while any type still
//! fits) and capped at each of the types that would cover the batch most cheaply. Smaller caps
//! keep nodes from drifting onto big types whose spot price is poor; each node is then launched
//! as the cheapest type that fits what it holds. Under a cap, the nodes that hostname
//! anti-affinity forces open ([`apart`]) are opened first, sized on their own, and filled by
//! the other pods before more nodes are bought ([`strategy`]).

pub(crate) mod apart;
pub(crate) mod columns;
pub(crate) mod finalize;
pub(crate) mod fit;
pub(crate) mod groups;
pub(crate) mod model;
pub(crate) mod patterns;
pub(crate) mod place;
pub(crate) mod provisioners;
pub(crate) mod state;
pub(crate) mod strategy;
pub(crate) mod target;
pub(crate) mod vector;

use serde::{Deserialize, Serialize};

use crate::node::ExistingNode;
use crate::plan::Plan;
use crate::pod::{DaemonSet, Pod};
use crate::provisioner::ProvisionerInput;

use model::Model;
use place::Stop;
use state::{NodeKind, PackState};
use strategy::{Strategy, group_order, strategies};

/// How new machines are packed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Packing {
    /// Try several node sizes and keep the cheapest plan.
    Cheapest,
    /// Karpenter's approach, for comparison: pods by cpu then memory, each machine grows while
    /// any type fits, the cheapest fitting type is launched.
    FirstFitDecreasing,
}

/// Knobs of a scheduling run, with Karpenter's defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct SchedulerSettings {
    /// The region nodes launch in (`topology.kubernetes.io/region` when the instance types do
    /// not carry it).
    pub region: Option<String>,
    /// Instance types handed to EC2 per machine (cheapest first).
    pub max_instance_types: usize,
    pub packing: Packing,
    /// Node-size caps tried besides the unbounded packing.
    pub size_strategies: usize,
}

impl Default for SchedulerSettings {
    fn default() -> Self {
        SchedulerSettings {
            region: None,
            max_instance_types: 60,
            packing: Packing::Cheapest,
            size_strategies: 3,
        }
    }
}

/// Everything one scheduling decision looks at.
#[derive(Debug, Clone, Default)]
pub struct ScheduleInput {
    /// Pods to place.
    pub pods: Vec<Pod>,
    /// Nodes (and in-flight machines) with the pods already on them.
    pub nodes: Vec<ExistingNode>,
    pub provisioners: Vec<ProvisionerInput>,
    pub daemonsets: Vec<DaemonSet>,
    pub settings: SchedulerSettings,
}

/// Decides where every pod goes. Deterministic: the same input gives the same plan.
pub fn schedule(input: &ScheduleInput) -> Plan {
    let model = Model::build(input);
    let strategies = strategies(&model, &input.settings);
    let mut best: Option<Packed<'_>> = None;
    let mut best_strategy = 0;
    for (i, strategy) in strategies.iter().enumerate() {
        let (state, stops) = pack(&model, strategy);
        let outcome = outcome(&state);
        // A batch that fits one machine gets one machine, as with Karpenter: splitting it
        // over smaller nodes is never worth the surprise.
        let single_machine = outcome.unplaced == 0 && outcome.machines <= 1;
        if best
            .as_ref()
            .is_none_or(|(b, _, _, _)| outcome.better_than(b))
        {
            best = Some((outcome, state, stops, strategy.name.clone()));
            best_strategy = i;
        }
        if single_machine {
            break;
        }
    }
    if let Some(packed) = &best
        && let Some(retry) = pinned_first(&model, &strategies[best_strategy], packed)
    {
        best = Some(retry);
    }
    match best {
        Some((_, state, stops, name)) => finalize::plan(&state, &stops, &name),
        None => {
            let state = PackState::new(&model, Vec::new());
            finalize::plan(&state, &vec![None; model.groups.len()], "none")
        }
    }
}

/// A finished packing: how good it is, its state, why each group stopped, the strategy's name.
type Packed<'m> = (Outcome, PackState<'m>, Vec<Option<Stop>>, String);

/// Pods left pending may have lost their only domain to pods that had a choice: packs again
/// with the pods pinned to fewest domains first. The result wins when it leaves fewer pods
/// pending, or as many but more of the pinned ones placed (Karpenter's outcome: the pinned
/// pods place). Only runs when pods are pending and some are pinned.
fn pinned_first<'m>(
    model: &'m Model<'m>,
    strategy: &Strategy,
    best: &Packed<'m>,
) -> Option<Packed<'m>> {
    let (outcome_before, state_before, _, _) = best;
    if outcome_before.unplaced == 0 {
        return None;
    }
    let pinned: Vec<usize> = (0..model.groups.len())
        .filter(|&g| pinned_domains(model, g).is_some())
        .collect();
    if pinned.is_empty() {
        return None;
    }
    let placed_pinned = |s: &PackState<'_>| pinned.iter().map(|&g| s.placed[g]).sum::<usize>();
    let strategy = Strategy {
        tight_first: true,
        ..strategy.clone()
    };
    let (state, stops) = pack(model, &strategy);
    let retry = outcome(&state);
    let wins = retry.unplaced < outcome_before.unplaced
        || (retry.unplaced == outcome_before.unplaced
            && placed_pinned(&state) > placed_pinned(state_before));
    wins.then(|| {
        let name = format!("{}, pinned pods first", strategy.name);
        (retry, state, stops, name)
    })
}

/// How good a packing is, compared lexicographically.
struct Outcome {
    unplaced: usize,
    cost: f64,
    machines: usize,
}

impl Outcome {
    fn better_than(&self, other: &Outcome) -> bool {
        if self.unplaced != other.unplaced {
            return self.unplaced < other.unplaced;
        }
        // Costs within a hundredth of a cent are a tie; then fewer machines win.
        if (self.cost - other.cost).abs() > 1e-4 {
            return self.cost < other.cost;
        }
        self.machines < other.machines
    }
}

fn outcome(state: &PackState<'_>) -> Outcome {
    let model = state.model;
    let mut cost = 0.0;
    let mut machines = 0;
    for node in &state.nodes {
        if let NodeKind::New(machine) = &node.kind
            && !node.pods.is_empty()
        {
            machines += 1;
            cost += finalize::launch_score(&model.provs[machine.prov], machine);
        }
    }
    Outcome {
        unplaced: (0..model.groups.len()).map(|g| state.remaining(g)).sum(),
        cost,
        machines,
    }
}

/// How many domains the group's required node terms leave it for the non-hostname topology
/// keys it is counted by or counts by (the fewest over those keys; the widest term decides
/// within a key). `None` when they leave every such key open.
pub(crate) fn pinned_domains(model: &Model<'_>, g: usize) -> Option<usize> {
    let group = &model.groups[g];
    let level = group.levels.last()?;
    let own = level
        .spreads
        .iter()
        .map(|s| s.group)
        .chain(level.affinities.iter().map(|a| a.group))
        .chain(level.antis.iter().map(|a| a.group));
    let mut fewest: Option<usize> = None;
    for id in group.selected_by.iter().copied().chain(own) {
        let definition = &model.topology.get(id).definition;
        if definition.is_hostname() {
            continue;
        }
        let mut widest = Some(0);
        for term in &level.terms {
            widest = match (
                widest,
                term.get(&definition.key).and_then(|s| s.finite_values()),
            ) {
                (Some(w), Some(values)) => Some(w.max(values.len())),
                _ => None,
            };
        }
        if let Some(n) = widest {
            fewest = Some(fewest.map_or(n, |f| f.min(n)));
        }
    }
    fewest
}

/// Packs every group under one strategy. A group that fails relaxes a level and retries at
/// once, except while its pod affinity waits for pods not placed yet: those wait for a pass in
/// which nothing else moves, and only then relax. Groups with topology constraints retry after
/// every pass that placed something, since counts elsewhere may have opened room.
fn pack<'m>(model: &'m Model<'m>, strategy: &Strategy) -> (PackState<'m>, Vec<Option<Stop>>) {
    let mut state = PackState::new(model, strategy.caps.clone());
    state.apart_caps = strategy.apart_caps.clone();
    state.zone_caps = strategy.zone_caps.clone();
    let mut stops: Vec<Option<Stop>> = vec![None; model.groups.len()];
    let order = group_order(model, strategy);
    let has_topology = |g: usize, level: usize| {
        let l = &model.groups[g].levels[level];
        !(l.spreads.is_empty() && l.affinities.is_empty() && l.antis.is_empty())
    };
    let mut relaxed_while_waiting = vec![false; model.groups.len()];
    let mut pass = 0;
    loop {
        let mut progress = false;
        for &g in &order {
            let group = &model.groups[g];
            if state.remaining(g) == 0 || group.invalid.is_some() {
                continue;
            }
            if pass > 0
                && !has_topology(g, state.level[g])
                && group.inverse_blocked.is_empty()
                && !std::mem::take(&mut relaxed_while_waiting[g])
            {
                continue;
            }
            let pooled = strategy.patterns && is_free(model, g);
            state.open_new = !pooled;
            loop {
                let before = state.remaining(g);
                let stop = state.place_group(g, state.level[g]);
                if pooled {
                    break;
                }
                progress |= state.remaining(g) < before;
                stops[g] = stop;
                match &stops[g] {
                    None | Some(Stop::AwaitingAffinity(_)) => break,
                    Some(_) if state.level[g] + 1 < group.levels.len() => state.level[g] += 1,
                    Some(_) => break,
                }
            }
        }
        state.open_new = true;
        pass += 1;
        if pass == 1 && strategy.patterns {
            pack_pools(&mut state, &order);
            for &g in &order {
                if is_free(model, g) && state.remaining(g) > 0 {
                    stops[g] = state.place_group(g, 0);
                }
            }
        }
        if progress {
            continue;
        }
        // Nothing moved: pods still waiting on an affinity give up that preference, if they can.
        let mut relaxed = false;
        for g in 0..model.groups.len() {
            if state.remaining(g) > 0
                && matches!(stops[g], Some(Stop::AwaitingAffinity(_)))
                && state.level[g] + 1 < model.groups[g].levels.len()
            {
                state.level[g] += 1;
                relaxed_while_waiting[g] = true;
                relaxed = true;
            }
        }
        if !relaxed {
            break;
        }
    }
    (state, stops)
}

/// Whether a group has nothing tying it to other pods or to particular nodes beyond one node
/// requirement term: it can be packed by patterns.
pub(crate) fn is_free(model: &Model<'_>, g: usize) -> bool {
    let group = &model.groups[g];
    let [level] = group.levels.as_slice() else {
        return false;
    };
    level.spreads.is_empty()
        && level.affinities.is_empty()
        && level.antis.is_empty()
        && level.terms.len() == 1
        && group.selected_by.is_empty()
        && group.inverse_blocked.is_empty()
        && group.owns_required_anti.is_empty()
        && group.host_ports(model.pods).is_empty()
        && group.invalid.is_none()
}

/// Pattern-packs the free pods left after existing and planned nodes took what they could,
/// pooled by the first provisioner that can take them and its requirements.
fn pack_pools(state: &mut PackState<'_>, order: &[usize]) {
    let model = state.model;
    let mut pools: Vec<patterns::Pool> = Vec::new();
    for &g in order {
        if !is_free(model, g) || state.remaining(g) == 0 {
            continue;
        }
        let group = &model.groups[g];
        let term = &group.levels[0].terms[0];
        let chosen = (0..model.provs.len()).find_map(|prov| {
            if !group.tolerates[prov] {
                return None;
            }
            let (reqs, types) = model.base_template(prov, term).ok()?;
            let p = &model.provs[prov];
            types
                .iter()
                .any(|&t| group.req.fits(&p.types[t].alloc))
                .then_some((prov, reqs, types))
        });
        let Some((prov, reqs, types)) = chosen else {
            continue;
        };
        let left = state.remaining(g);
        match pools
            .iter_mut()
            .find(|pool| pool.prov == prov && pool.reqs == reqs)
        {
            Some(pool) => pool.groups.push((g, left)),
            None => pools.push(patterns::Pool {
                prov,
                reqs,
                types,
                groups: vec![(g, left)],
            }),
        }
    }
    for pool in &pools {
        state.pack_pool(pool);
    }
}
