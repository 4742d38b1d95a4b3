//! Pods that required hostname anti-affinity keeps apart.
//!
//! A group *keeps itself apart* when it owns a required anti-affinity term on the hostname
//! that selects its own pods: no two of them share a node. Two such groups keep apart from
//! each other when one's term selects the other's pods. A set of groups that pairwise keep
//! apart needs a node per pod, which is what the cost bound counts.

use crate::cost::{Apart, CoverOption, lower_bound};

use super::model::Model;
use super::provisioners::score;
use super::vector::{CPU, MEMORY, ResVec};

/// Whether no two pods of group `g` may share a node.
pub(crate) fn keeps_itself_apart(model: &Model<'_>, g: usize) -> bool {
    let group = &model.groups[g];
    group
        .owns_required_anti
        .iter()
        .any(|&id| group.selected_by.contains(&id) && is_hostname(model, id))
}

/// Whether a pod of group `a` and one of `b` may not share a node.
pub(crate) fn keep_apart(model: &Model<'_>, a: usize, b: usize) -> bool {
    let blocks = |owner: usize, other: usize| {
        model.groups[owner]
            .owns_required_anti
            .iter()
            .any(|&id| model.groups[other].selected_by.contains(&id) && is_hostname(model, id))
    };
    blocks(a, b) || blocks(b, a)
}

fn is_hostname(model: &Model<'_>, id: usize) -> bool {
    model.topology.get(id).definition.is_hostname()
}

/// Seeds tried when growing sets of groups that keep apart (the largest groups first).
const MAX_SEEDS: usize = 8;

/// Sets of `apart` groups that pairwise keep apart, grown greedily from each of the largest
/// (by `size`).
fn apart_sets(
    model: &Model<'_>,
    apart: &[usize],
    size: impl Fn(usize) -> usize,
) -> Vec<Vec<usize>> {
    let mut apart = apart.to_vec();
    apart.sort_by(|&a, &b| size(b).cmp(&size(a)).then_with(|| a.cmp(&b)));
    let mut sets: Vec<Vec<usize>> = Vec::new();
    for &seed in apart.iter().take(MAX_SEEDS) {
        let mut set = vec![seed];
        for &g in &apart {
            if g != seed && set.iter().all(|&h| keep_apart(model, g, h)) {
                set.push(g);
            }
        }
        set.sort_unstable();
        if !sets.contains(&set) {
            sets.push(set);
        }
    }
    sets
}

/// The node counts pods on new machines force, as constraints for
/// [`crate::cost::lower_bound_apart`]. `on_new[g]` is how many pods of group `g` went to new
/// machines; `holds(g, o)` whether cover option `o` can hold a pod of `g`.
///
/// Sets of groups that pairwise keep apart are grown greedily from each of the largest such
/// groups. Within a set, the pods of every group whose options are among group `s`'s need
/// that many distinct nodes of `s`'s options.
pub(crate) fn constraints(
    model: &Model<'_>,
    on_new: &[usize],
    options: usize,
    holds: impl Fn(usize, usize) -> bool,
) -> Vec<Apart> {
    let apart: Vec<usize> = (0..model.groups.len())
        .filter(|&g| on_new[g] > 0 && keeps_itself_apart(model, g))
        .collect();
    let sets = apart_sets(model, &apart, |g| on_new[g]);
    let mut out: Vec<Apart> = Vec::new();
    for set in sets {
        let marks: Vec<Vec<bool>> = set
            .iter()
            .map(|&g| (0..options).map(|o| holds(g, o)).collect())
            .collect();
        for (i, mark) in marks.iter().enumerate() {
            let within = |other: &Vec<bool>| other.iter().zip(mark).all(|(o, m)| !o || *m);
            let nodes: usize = set
                .iter()
                .zip(&marks)
                .filter(|(_, other)| within(other))
                .map(|(&g, _)| on_new[g])
                .sum();
            let constraint = Apart {
                nodes: nodes as f64,
                holds: mark.clone(),
            };
            debug_assert!(nodes >= on_new[set[i]]);
            if !out.contains(&constraint) {
                out.push(constraint);
            }
        }
    }
    out
}

/// Per provisioner: the cap for machines that pods keeping themselves apart force open: the
/// type that covers the batch cheapest when every forced node is of that type and the rest
/// of the demand is bought at the lower bound. `None` when no group keeps itself apart.
pub(crate) fn caps(model: &Model<'_>, demand: &ResVec) -> Option<Vec<ResVec>> {
    let apart: Vec<usize> = (0..model.groups.len())
        .filter(|&g| keeps_itself_apart(model, g))
        .collect();
    let forced = apart_sets(model, &apart, |g| model.groups[g].pods.len())
        .iter()
        .map(|set| {
            set.iter()
                .map(|&g| model.groups[g].pods.len())
                .sum::<usize>()
        })
        .max()? as f64;
    let (cpu, memory) = (demand.0[CPU] as f64, demand.0[MEMORY] as f64);
    let caps = model
        .provs
        .iter()
        .map(|p| {
            let priced: Vec<(usize, CoverOption)> = (0..p.types.len())
                .filter_map(|t| {
                    let ty = &p.types[t];
                    let price = ty
                        .offerings
                        .iter()
                        .map(|o| score(o.price, ty))
                        .fold(f64::INFINITY, f64::min);
                    let option = CoverOption {
                        price,
                        cpu: ty.alloc.0[CPU] as f64,
                        memory: ty.alloc.0[MEMORY] as f64,
                    };
                    price.is_finite().then_some((t, option))
                })
                .collect();
            let options: Vec<CoverOption> = priced.iter().map(|(_, o)| *o).collect();
            priced
                .iter()
                .filter(|(t, _)| {
                    apart
                        .iter()
                        .any(|&g| model.groups[g].req.fits(&p.types[*t].alloc))
                })
                .filter_map(|(t, o)| {
                    let rest = lower_bound(
                        &options,
                        (cpu - forced * o.cpu).max(0.0),
                        (memory - forced * o.memory).max(0.0),
                    )?;
                    Some((forced * o.price + rest, *t))
                })
                .min_by(|a, b| a.0.total_cmp(&b.0).then_with(|| a.1.cmp(&b.1)))
                .map_or(ResVec::UNBOUNDED, |(_, t)| p.types[t].alloc)
        })
        .collect();
    Some(caps)
}
