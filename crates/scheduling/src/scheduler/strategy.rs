//! The ways of packing tried for one batch, and the order groups go in under each.

use std::collections::BTreeMap;

use super::model::Model;
use super::provisioners::{ProvModel, TypeModel};
use super::vector::{CPU, MEMORY, PODS, ResVec};
use super::{Packing, SchedulerSettings, apart, is_free, pinned_domains, provisioners};

/// How many times smaller than the strategy's cap a zone's own cap may be.
const ZONE_CAP_SHRINK: i64 = 4;

/// One way of packing: a size cap per provisioner and the order groups go in.
#[derive(Clone)]
pub(crate) struct Strategy {
    pub(crate) name: String,
    pub(crate) caps: Vec<ResVec>,
    pub(crate) karpenter_order: bool,
    /// Pods with no topology ties go to pattern packing instead of first fit.
    pub(crate) patterns: bool,
    /// Groups whose node requirements pin them to the fewest domains go first.
    pub(crate) tight_first: bool,
    /// Per provisioner: the cap on machines opened for pods that keep themselves apart; those
    /// pods then go first.
    pub(crate) apart_caps: Option<Vec<ResVec>>,
    /// Per provisioner: the cap by zone for machines pinned to one (empty: `caps` only).
    pub(crate) zone_caps: Vec<BTreeMap<String, ResVec>>,
}

/// The packings tried, in order: unbounded, patterns when some pods are free, then capped at
/// each of the types that cover the batch most cheaply.
pub(crate) fn strategies(model: &Model<'_>, settings: &SchedulerSettings) -> Vec<Strategy> {
    let unbounded = vec![ResVec::UNBOUNDED; model.provs.len()];
    if settings.packing == Packing::FirstFitDecreasing {
        return vec![Strategy {
            name: "first fit decreasing (Karpenter)".to_string(),
            caps: unbounded,
            karpenter_order: true,
            patterns: false,
            tight_first: false,
            apart_caps: None,
            zone_caps: Vec::new(),
        }];
    }
    let mut out = vec![Strategy {
        name: "unbounded node size".to_string(),
        caps: unbounded.clone(),
        karpenter_order: false,
        patterns: false,
        tight_first: false,
        apart_caps: None,
        zone_caps: Vec::new(),
    }];
    if (0..model.groups.len()).any(|g| is_free(model, g)) {
        out.push(Strategy {
            name: "patterns priced by the lower bound".to_string(),
            caps: unbounded.clone(),
            karpenter_order: false,
            patterns: true,
            tight_first: false,
            apart_caps: None,
            zone_caps: Vec::new(),
        });
    }
    if model.groups.is_empty() {
        return out;
    }
    let mut demand = ResVec::ZERO;
    for group in &model.groups {
        demand = demand.add(&group.req.times(group.pods.len() as i64));
    }
    // Per provisioner: types by the cost of covering the whole batch with that type alone,
    // at its cheapest offering, and at its cheapest offering in each zone.
    let cheapest = |t: &TypeModel| {
        t.offerings
            .iter()
            .map(|o| provisioners::score(o.price, t))
            .fold(f64::INFINITY, f64::min)
    };
    let ranked: Vec<Vec<usize>> = model
        .provs
        .iter()
        .map(|p| rank_types(p, &demand, cheapest))
        .collect();
    let zone_ranked: Vec<Vec<(&str, Vec<usize>)>> = model
        .provs
        .iter()
        .map(|p| {
            p.zones
                .iter()
                .map(|z| {
                    let in_zone = |t: &TypeModel| {
                        t.offerings
                            .iter()
                            .filter(|o| o.zone == *z)
                            .map(|o| provisioners::score(o.price, t))
                            .fold(f64::INFINITY, f64::min)
                    };
                    (z.as_str(), rank_types(p, &demand, in_zone))
                })
                .collect()
        })
        .collect();
    // Pods that keep themselves apart force nodes open: those are sized apart, and the rest
    // fill them before new nodes are bought.
    let apart_caps = apart::caps(model, &demand);
    for rank in 0..settings.size_strategies {
        let caps: Vec<ResVec> = model
            .provs
            .iter()
            .zip(&ranked)
            .map(|(p, order)| {
                order
                    .get(rank)
                    .map_or(ResVec::UNBOUNDED, |&i| p.types[i].alloc)
            })
            .collect();
        if caps.iter().all(|c| *c == ResVec::UNBOUNDED) {
            break;
        }
        // A machine pinned to a zone is capped at the zone's best type of about the cap's
        // size: the batch-wide choice may be dear there, and much smaller nodes pack worse.
        let zone_caps: Vec<BTreeMap<String, ResVec>> = caps
            .iter()
            .zip(&model.provs)
            .zip(&zone_ranked)
            .map(|((cap, p), zones)| {
                let near = |t: &usize| {
                    let alloc = &p.types[*t].alloc;
                    [CPU, MEMORY]
                        .iter()
                        .all(|&d| alloc.0[d].saturating_mul(ZONE_CAP_SHRINK) >= cap.0[d])
                };
                zones
                    .iter()
                    .filter_map(|(z, order)| {
                        let t = order.iter().find(|t| near(t))?;
                        Some((z.to_string(), p.types[*t].alloc))
                    })
                    .collect()
            })
            .collect();
        let name = model
            .provs
            .iter()
            .zip(&ranked)
            .filter_map(|(p, order)| order.get(rank).map(|&i| p.types[i].name().to_string()))
            .collect::<Vec<_>>()
            .join(", ");
        // Only the first cap sizes forced nodes apart: it is the one that wins on mixes with
        // anti-affinity, and each strategy is a whole packing.
        let apart_caps = if rank == 0 { apart_caps.clone() } else { None };
        let name = match &apart_caps {
            Some(_) => {
                format!("nodes up to the size of {name}, those anti-affinity forces sized apart")
            }
            None => format!("nodes up to the size of {name}"),
        };
        out.push(Strategy {
            name,
            caps,
            karpenter_order: false,
            patterns: false,
            tight_first: false,
            apart_caps,
            zone_caps,
        });
    }
    out
}

/// The order groups are packed in: the hardest to place first (one pod per node, then other
/// topology), each class largest first.
pub(crate) fn group_order(model: &Model<'_>, strategy: &Strategy) -> Vec<usize> {
    let reference = strategy
        .caps
        .first()
        .copied()
        .filter(|c| *c != ResVec::UNBOUNDED)
        .or_else(|| {
            model
                .provs
                .first()
                .and_then(|p| p.types.first())
                .map(|t| t.alloc)
        })
        .unwrap_or(ResVec::UNBOUNDED);
    let share = |req: &ResVec| {
        [CPU, MEMORY]
            .iter()
            .map(|&d| {
                if reference.0[d] > 0 && reference.0[d] < i64::MAX {
                    req.0[d] as f64 / reference.0[d] as f64
                } else {
                    req.0[d] as f64
                }
            })
            .fold(0.0, f64::max)
    };
    let class = |g: usize| {
        let level = &model.groups[g].levels[0];
        let topology = &model.topology;
        let per_node = level
            .antis
            .iter()
            .any(|a| a.self_matching && topology.get(a.group).definition.is_hostname())
            || level
                .spreads
                .iter()
                .any(|s| topology.get(s.group).definition.is_hostname());
        if per_node {
            0
        } else if !level.spreads.is_empty()
            || !level.affinities.is_empty()
            || !level.antis.is_empty()
        {
            1
        } else {
            2
        }
    };
    let mut order: Vec<usize> = (0..model.groups.len()).collect();
    if strategy.karpenter_order {
        order.sort_by(|&a, &b| {
            let (ra, rb) = (&model.groups[a].req, &model.groups[b].req);
            rb.0[CPU]
                .cmp(&ra.0[CPU])
                .then_with(|| rb.0[MEMORY].cmp(&ra.0[MEMORY]))
                .then_with(|| a.cmp(&b))
        });
    } else {
        order.sort_by(|&a, &b| {
            class(a)
                .cmp(&class(b))
                .then_with(|| share(&model.groups[b].req).total_cmp(&share(&model.groups[a].req)))
                .then_with(|| a.cmp(&b))
        });
    }
    if strategy.apart_caps.is_some() {
        // Stable: the nodes they force open first, for the rest to fill.
        order.sort_by_key(|&g| !apart::keeps_itself_apart(model, g));
    }
    if strategy.tight_first {
        // Stable: within a tightness, the order above.
        order.sort_by_key(|&g| pinned_domains(model, g).unwrap_or(usize::MAX));
    }
    order
}

/// A provisioner's types by the cost of covering `demand` with that type alone at `price`,
/// one per distinct allocatable; types without a price are left out.
fn rank_types(p: &ProvModel, demand: &ResVec, price: impl Fn(&TypeModel) -> f64) -> Vec<usize> {
    let mut order: Vec<(f64, usize)> = p
        .types
        .iter()
        .enumerate()
        .filter_map(|(i, t)| {
            let nodes = [CPU, MEMORY, PODS]
                .iter()
                .map(|&d| {
                    if demand.0[d] <= 0 {
                        0.0
                    } else if t.alloc.0[d] <= 0 {
                        f64::INFINITY
                    } else {
                        (demand.0[d] as f64 / t.alloc.0[d] as f64).ceil()
                    }
                })
                .fold(0.0, f64::max);
            let price = price(t);
            price.is_finite().then_some((nodes * price, i))
        })
        .collect();
    order.sort_by(|a, b| a.0.total_cmp(&b.0).then_with(|| a.1.cmp(&b.1)));
    let mut seen: Vec<ResVec> = Vec::new();
    order
        .into_iter()
        .map(|(_, i)| i)
        .filter(|&i| {
            let alloc = p.types[i].alloc;
            let fresh = !seen.contains(&alloc);
            seen.push(alloc);
            fresh
        })
        .collect()
}
