//! Pattern packing for pods with no topology ties: choose node contents for the batch as a
//! whole, the way cutting-stock problems are solved.
//!
//! The LP lower bound over the provisioner's types gives a price per cpu and per byte of
//! memory (its dual values). A pod is *worth* what its requests cost at those prices, and a
//! node's *efficiency* is the worth of its pods over its price: no node can beat 1, and a plan
//! whose nodes are all at 1 meets the bound. So, repeatedly: for each of the most promising
//! types, fill a node greedily from the pods left; price the fill as the cheapest type that
//! holds it; keep the most efficient fill and repeat it for as long as the pods it uses last.
//! Few distinct fills cover thousands of pods, so the work follows the number of pod shapes.

use crate::cost::{CoverOption, lower_bound_solution};
use crate::instance_type::CapacityType;
use crate::labels;
use crate::requirements::Requirements;

use super::place::within_limits;
use super::provisioners::{ProvModel, ct_index, score};
use super::state::{Machine, NodeKind, NodeState, PackState};
use super::vector::{CPU, MEMORY, ResVec};

/// Types tried for each fill: the ones the LP prices closest to their cost.
const CANDIDATE_TYPES: usize = 16;

/// Pods of one provisioner and node requirement term, waiting for pattern packing.
#[derive(Debug, Clone)]
pub(crate) struct Pool {
    pub prov: usize,
    pub reqs: Requirements,
    pub types: Vec<usize>,
    /// (group, pods left)
    pub groups: Vec<(usize, usize)>,
}

/// One node's contents, repeated `repeats` times: (index into the pool's groups, count).
pub(crate) struct Layout {
    pub pattern: Vec<(usize, usize)>,
    pub used: ResVec,
    pub repeats: usize,
}

/// Everything the fills need about one pool.
pub(crate) struct PoolPrices<'a> {
    pub p: &'a ProvModel,
    /// (expected launch price, type) for the pool's types, cheapest first.
    pub by_price: Vec<(f64, usize)>,
}

impl PoolPrices<'_> {
    /// The price of the cheapest type that holds `used`.
    pub(crate) fn cheapest_holding(&self, used: &ResVec) -> Option<f64> {
        self.by_price
            .iter()
            .find(|(_, t)| used.fits(&self.p.types[*t].alloc))
            .map(|(c, _)| *c)
    }
}

/// The types whose capacity a valuation prices closest to their cost.
fn candidate_types(
    prices: &PoolPrices<'_>,
    cover: &[CoverOption],
    duals: (f64, f64),
) -> Vec<usize> {
    let mut ranked: Vec<(f64, usize)> = prices
        .by_price
        .iter()
        .zip(cover)
        .map(|(&(_, t), o)| {
            (
                (duals.0 * o.cpu + duals.1 * o.memory) / o.price.max(1e-12),
                t,
            )
        })
        .collect();
    ranked.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    ranked.iter().take(CANDIDATE_TYPES).map(|r| r.1).collect()
}

/// How memory is valued against cpu: the LP's own dual prices, then a sweep of mixes, since
/// the LP can buy memory from nodes too small to hold the pods that need it.
const VALUE_MIXES: [f64; 7] = [0.0, 0.2, 0.35, 0.5, 0.65, 0.8, 1.0];

impl<'m> PackState<'m> {
    /// Packs a pool onto new machines. Pods that cannot be placed (limits) stay pending.
    pub(crate) fn pack_pool(&mut self, pool: &Pool) {
        let model = self.model;
        let p = &model.provs[pool.prov];
        let spot_allowed = pool
            .reqs
            .get(labels::CAPACITY_TYPE)
            .is_none_or(|s| s.allows(Some(labels::CAPACITY_TYPE_SPOT)));
        // The price a node of each type is expected to launch at.
        let mut by_price: Vec<(f64, usize)> = pool
            .types
            .iter()
            .filter_map(|&t| {
                let ty = &p.types[t];
                let offer = if spot_allowed {
                    ty.best_offer[ct_index(CapacityType::Spot)]
                        .or(ty.best_offer[ct_index(CapacityType::OnDemand)])
                } else {
                    ty.best_offer[ct_index(CapacityType::OnDemand)]
                }?;
                Some((score(ty.offerings[offer].price, ty), t))
            })
            .collect();
        by_price.sort_by(|a, b| a.0.total_cmp(&b.0).then_with(|| a.1.cmp(&b.1)));
        let prices = PoolPrices { p, by_price };
        let demand = pool.groups.iter().fold(ResVec::ZERO, |acc, &(g, n)| {
            acc.add(&model.groups[g].req.times(n as i64))
        });
        let cover: Vec<CoverOption> = prices
            .by_price
            .iter()
            .map(|&(price, t)| CoverOption {
                price,
                cpu: p.types[t].alloc.0[CPU] as f64,
                memory: p.types[t].alloc.0[MEMORY] as f64,
            })
            .collect();
        let (cpu, memory) = (demand.0[CPU] as f64, demand.0[MEMORY] as f64);
        let Some(solution) = lower_bound_solution(&cover, cpu, memory) else {
            return;
        };
        let mut valuations = vec![solution.duals];
        for mix in VALUE_MIXES {
            // Weights per unit so that the whole demand is split `mix` : `1 − mix`, scaled so
            // the best type is worth exactly its price.
            let raw = (mix / cpu.max(1.0), (1.0 - mix) / memory.max(1.0));
            let scale = cover
                .iter()
                .map(|o| (raw.0 * o.cpu + raw.1 * o.memory) / o.price.max(1e-12))
                .fold(0.0, f64::max);
            if scale > 0.0 {
                valuations.push((raw.0 / scale, raw.1 / scale));
            }
        }
        let model = self.model;
        let worth_of = |duals: (f64, f64)| -> Vec<f64> {
            pool.groups
                .iter()
                .map(|&(g, _)| {
                    let req = &model.groups[g].req;
                    duals.0 * req.0[CPU] as f64 + duals.1 * req.0[MEMORY] as f64
                })
                .collect()
        };
        let mut best: Option<(f64, Vec<Layout>)> = None;
        let mut all_candidates: Vec<usize> = Vec::new();
        for duals in valuations {
            let candidates = candidate_types(&prices, &cover, duals);
            let (cost, layouts) =
                self.layouts(&pool.groups, &prices, &candidates, &worth_of(duals));
            for t in candidates {
                if !all_candidates.contains(&t) {
                    all_candidates.push(t);
                }
            }
            if best.as_ref().is_none_or(|(c, _)| cost < *c - 1e-9) {
                best = Some((cost, layouts));
            }
        }
        // Column generation over the same types, rounded and completed greedily; kept when
        // cheaper.
        let worth = worth_of(solution.duals);
        let seeds: &[Layout] = best.as_ref().map_or(&[], |(_, l)| l.as_slice());
        if let Some((cost, layouts)) =
            self.column_layouts(pool, &prices, &all_candidates, &worth, seeds)
            && best.as_ref().is_none_or(|(c, _)| cost < *c - 1e-9)
        {
            best = Some((cost, layouts));
        }
        let Some((_, layouts)) = best else { return };
        let mut left: Vec<(usize, usize)> = pool.groups.clone();
        for layout in layouts {
            for _ in 0..layout.repeats {
                if !self.open_pattern_machine(pool, &layout.pattern, &left, layout.used) {
                    return;
                }
                for &(i, n) in &layout.pattern {
                    left[i].1 -= n;
                }
            }
        }
    }

    /// Greedy pattern packing of the pods `start` with a worth per pool group: the cost and
    /// the layouts.
    pub(crate) fn layouts(
        &self,
        start: &[(usize, usize)],
        prices: &PoolPrices<'_>,
        candidates: &[usize],
        worth: &[f64],
    ) -> (f64, Vec<Layout>) {
        let p = prices.p;
        let mut left: Vec<(usize, usize)> = start.to_vec();
        let mut layouts = Vec::new();
        let mut total = 0.0;
        while left.iter().any(|&(_, n)| n > 0) {
            // (efficiency, cost, pattern, requests)
            type Choice = (f64, f64, Vec<(usize, usize)>, ResVec);
            let mut best: Option<Choice> = None;
            for &t in candidates {
                for fill in [Fill::Balance, Fill::Worth] {
                    let (pattern, used) = self.fill(&p.types[t].alloc, &left, fill, worth);
                    if pattern.is_empty() {
                        continue;
                    }
                    let Some(cost) = prices.cheapest_holding(&used) else {
                        continue;
                    };
                    let value: f64 = pattern.iter().map(|&(i, n)| worth[i] * n as f64).sum();
                    let efficiency = value / cost.max(1e-12);
                    if best
                        .as_ref()
                        .is_none_or(|(e, _, _, _)| efficiency > *e + 1e-12)
                    {
                        best = Some((efficiency, cost, pattern, used));
                    }
                }
            }
            let Some((_, cost, pattern, used)) = best else {
                // Nothing fits any candidate: leave the rest to first fit.
                break;
            };
            let repeats = pattern
                .iter()
                .map(|&(i, n)| left[i].1 / n)
                .min()
                .unwrap_or(1)
                .max(1);
            for &(i, n) in &pattern {
                left[i].1 -= n * repeats;
            }
            total += cost * repeats as f64;
            layouts.push(Layout {
                pattern,
                used,
                repeats,
            });
        }
        let unplaced: usize = left.iter().map(|&(_, n)| n).sum();
        // A valuation that strands pods loses to any that places them.
        (total + unplaced as f64 * 1e9, layouts)
    }

    /// A greedy fill of one node of capacity `capacity` from the pods `left`: (index into
    /// `left`, count) pairs and the total requests.
    pub(crate) fn fill(
        &self,
        capacity: &ResVec,
        left: &[(usize, usize)],
        fill: Fill,
        worth: &[f64],
    ) -> (Vec<(usize, usize)>, ResVec) {
        let groups = &self.model.groups;
        let mut taken = vec![0usize; left.len()];
        let mut room = *capacity;
        let mut fill = fill;
        if let Fill::Seeded(i) = fill {
            let req = &groups[left[i].0].req;
            let n = (req.copies_in(&room) as usize).min(left[i].1);
            taken[i] = n;
            room = room.sub(&req.times(n as i64));
            fill = Fill::Worth;
        }
        loop {
            let mut best: Option<(f64, usize)> = None;
            for (i, &(g, n)) in left.iter().enumerate() {
                let req = &groups[g].req;
                if taken[i] >= n || !req.fits(&room) {
                    continue;
                }
                let score = match fill {
                    // Favour pods that use what the node has most of.
                    Fill::Balance => [CPU, MEMORY]
                        .iter()
                        .map(|&d| {
                            let c = capacity.0[d].max(1) as f64;
                            (req.0[d] as f64 / c) * (room.0[d] as f64 / c)
                        })
                        .sum::<f64>(),
                    Fill::Worth | Fill::Seeded(_) => worth[i],
                };
                if best.is_none_or(|(s, _)| score > s) {
                    best = Some((score, i));
                }
            }
            let Some((_, i)) = best else { break };
            let req = &groups[left[i].0].req;
            // Take as many as fit while they stay the best choice is costly to decide; take
            // one, except for a pod that uses a small share of the node, where a run of them
            // changes the balance little.
            let fits = req.copies_in(&room) as usize;
            let run = (fits / 4).max(1).min(left[i].1 - taken[i]);
            taken[i] += run;
            room = room.sub(&req.times(run as i64));
        }
        let pattern: Vec<(usize, usize)> = taken
            .iter()
            .enumerate()
            .filter(|(_, n)| **n > 0)
            .map(|(i, n)| (i, *n))
            .collect();
        let used = capacity.sub(&room);
        (pattern, used)
    }

    /// Opens one machine holding `pattern`; false when limits leave no type for it.
    fn open_pattern_machine(
        &mut self,
        pool: &Pool,
        pattern: &[(usize, usize)],
        left: &[(usize, usize)],
        used: ResVec,
    ) -> bool {
        let model = self.model;
        let p: &ProvModel = &model.provs[pool.prov];
        let mut candidates: Vec<usize> = pool
            .types
            .iter()
            .copied()
            .filter(|&t| used.fits(&p.types[t].alloc))
            .collect();
        if let Some(headroom) = self.headroom(pool.prov) {
            candidates.retain(|&t| within_limits(p, &p.types[t].capacity, &headroom));
        }
        if candidates.is_empty() {
            return false;
        }
        let mut pods = Vec::new();
        for &(i, n) in pattern {
            let g = left[i].0;
            let start = self.placed[g];
            pods.extend_from_slice(&model.groups[g].pods[start..start + n]);
            self.placed[g] += n;
        }
        let index = self.push(NodeState {
            kind: NodeKind::New(Box::new(Machine {
                prov: pool.prov,
                reqs: pool.reqs.clone(),
                candidates,
                cap: ResVec::UNBOUNDED,
                reservation: Default::default(),
                largest: ResVec::ZERO,
            })),
            used,
            room: ResVec::ZERO,
            hostname: format!(
                "{}{}",
                super::place::PLANNED_HOSTNAME_PREFIX,
                self.new_machines
            ),
            ports: Vec::new(),
            pods,
        });
        self.new_machines += 1;
        self.refresh_machine(index, true);
        true
    }
}

#[derive(Clone, Copy)]
pub(crate) enum Fill {
    Balance,
    Worth,
    /// As many pods of one group (index into `left`) as fit, then by worth.
    Seeded(usize),
}
