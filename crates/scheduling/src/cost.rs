//! The cost yardstick: the linear-programming lower bound on what any set of nodes covering a
//! demand of cpu and memory must cost.
//!
//! With fractional node counts and two constraints (cpu, memory), an optimal solution uses at
//! most two instance types, so enumerating every single type and every pair finds the optimum
//! exactly.

/// One offering's price and the capacity it brings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CoverOption {
    pub price: f64,
    pub cpu: f64,
    pub memory: f64,
}

/// `min Σ price·x` subject to `Σ cpu·x ≥ cpu`, `Σ memory·x ≥ memory`, `x ≥ 0`. `None` when no
/// option has capacity. Zero demand costs zero.
pub fn lower_bound(options: &[CoverOption], cpu: f64, memory: f64) -> Option<f64> {
    lower_bound_solution(options, cpu, memory).map(|s| s.cost)
}

/// The optimum of [`lower_bound`] with its dual values.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LowerBound {
    pub cost: f64,
    /// The price the optimum puts on one unit of cpu and of memory: no option is cheaper than
    /// its capacity at these prices, and the demand at these prices is `cost`.
    pub duals: (f64, f64),
}

/// Solves the lower-bound LP and returns its dual prices too.
pub fn lower_bound_solution(options: &[CoverOption], cpu: f64, memory: f64) -> Option<LowerBound> {
    if cpu <= 0.0 && memory <= 0.0 {
        return Some(LowerBound {
            cost: 0.0,
            duals: (0.0, 0.0),
        });
    }
    let usable = pareto_front(options);
    let mut best: Option<LowerBound> = None;
    let mut consider = |cost: f64, duals: (f64, f64)| {
        if cost.is_finite() && cost >= 0.0 && best.is_none_or(|b| cost < b.cost) {
            best = Some(LowerBound {
                cost,
                duals: (duals.0.max(0.0), duals.1.max(0.0)),
            });
        }
    };
    for o in &usable {
        let (by_cpu, by_memory) = (ratio(cpu, o.cpu), ratio(memory, o.memory));
        let duals = if by_cpu > by_memory {
            (o.price / o.cpu, 0.0)
        } else if by_memory > by_cpu {
            (0.0, o.price / o.memory)
        } else {
            (o.price / (2.0 * o.cpu), o.price / (2.0 * o.memory))
        };
        consider(by_cpu.max(by_memory) * o.price, duals);
    }
    for (i, a) in usable.iter().enumerate() {
        for b in &usable[i + 1..] {
            let det = a.cpu * b.memory - b.cpu * a.memory;
            if det.abs() < f64::EPSILON {
                continue;
            }
            let xa = (cpu * b.memory - b.cpu * memory) / det;
            let xb = (a.cpu * memory - cpu * a.memory) / det;
            if xa >= 0.0 && xb >= 0.0 {
                let duals = (
                    (a.price * b.memory - b.price * a.memory) / det,
                    (a.cpu * b.price - b.cpu * a.price) / det,
                );
                consider(xa * a.price + xb * b.price, duals);
            }
        }
    }
    best
}

/// Nodes some pods force apart: pods that may not share a node (hostname anti-affinity) need
/// at least `nodes` nodes, each of an option marked in `holds` (by index into the options).
#[derive(Debug, Clone, PartialEq)]
pub struct Apart {
    pub nodes: f64,
    pub holds: Vec<bool>,
}

/// Halvings of the search for the best price per forced node: the interval shrinks to a
/// billionth of the cheapest price, far below a cent.
const SEARCH_STEPS: usize = 45;

/// [`lower_bound`] that also buys, for each [`Apart`], its `nodes` nodes among the options it
/// marks (one constraint at a time; the strongest wins). Those nodes still count towards the
/// cpu and memory, so pods with room to spare on them cost nothing extra. Never below
/// [`lower_bound`].
///
/// The LP `min Σ price·x` s.t. cpu, memory and `Σ_{holds} x ≥ nodes` is solved through its
/// dual: for a price λ per forced node, `λ·nodes + lower_bound` with the marked options λ
/// cheaper is a valid bound for every λ in `[0, cheapest marked price]`, and it is concave in
/// λ, so a golden-section search finds the best.
pub fn lower_bound_apart(
    options: &[CoverOption],
    cpu: f64,
    memory: f64,
    apart: &[Apart],
) -> Option<f64> {
    let plain = lower_bound(options, cpu, memory)?;
    let mut best = plain;
    for a in apart {
        if let Some(bound) = one_apart(options, cpu, memory, a) {
            best = best.max(bound);
        }
    }
    Some(best)
}

fn one_apart(options: &[CoverOption], cpu: f64, memory: f64, apart: &Apart) -> Option<f64> {
    let marked = |i: usize| apart.holds.get(i).copied().unwrap_or(false);
    let top = options
        .iter()
        .enumerate()
        .filter(|&(i, o)| marked(i) && o.price.is_finite() && o.price >= 0.0)
        .map(|(_, o)| o.price)
        .fold(f64::INFINITY, f64::min);
    if apart.nodes <= 0.0 || !top.is_finite() {
        return None;
    }
    let mut shifted = options.to_vec();
    let mut at = |lambda: f64| -> f64 {
        for (i, (s, o)) in shifted.iter_mut().zip(options).enumerate() {
            s.price = if marked(i) {
                (o.price - lambda).max(0.0)
            } else {
                o.price
            };
        }
        lower_bound(&shifted, cpu, memory).map_or(f64::NEG_INFINITY, |b| b + lambda * apart.nodes)
    };
    let golden = (5f64.sqrt() - 1.0) / 2.0;
    let (mut lo, mut hi) = (0.0, top);
    let (mut x1, mut x2) = (hi - golden * (hi - lo), lo + golden * (hi - lo));
    let (mut f1, mut f2) = (at(x1), at(x2));
    let mut best = at(top).max(f1).max(f2);
    for _ in 0..SEARCH_STEPS {
        if f1 < f2 {
            lo = x1;
            (x1, f1) = (x2, f2);
            x2 = lo + golden * (hi - lo);
            f2 = at(x2);
            best = best.max(f2);
        } else {
            hi = x2;
            (x2, f2) = (x1, f1);
            x1 = hi - golden * (hi - lo);
            f1 = at(x1);
            best = best.max(f1);
        }
    }
    best.is_finite().then_some(best)
}

fn ratio(need: f64, have: f64) -> f64 {
    if need <= 0.0 {
        0.0
    } else if have <= 0.0 {
        f64::INFINITY
    } else {
        need / have
    }
}

/// Options no other option beats on price, cpu per dollar and memory per dollar together;
/// dominated options never appear in an optimum. Sorted by cpu per dollar, one sweep keeps
/// each option with more memory per dollar than every option before it (ties: the first), in
/// O(n log n) since the bound is solved many times over.
fn pareto_front(options: &[CoverOption]) -> Vec<CoverOption> {
    let mut usable: Vec<(f64, f64, usize)> = options
        .iter()
        .enumerate()
        .filter(|(_, o)| o.price.is_finite() && o.price >= 0.0 && (o.cpu > 0.0 || o.memory > 0.0))
        .map(|(i, o)| {
            if o.price > 0.0 {
                (o.cpu / o.price, o.memory / o.price, i)
            } else {
                (f64::INFINITY, f64::INFINITY, i)
            }
        })
        .collect();
    usable.sort_by(|a, b| {
        b.0.total_cmp(&a.0)
            .then_with(|| b.1.total_cmp(&a.1))
            .then_with(|| a.2.cmp(&b.2))
    });
    let mut most_memory = f64::NEG_INFINITY;
    let mut kept = Vec::new();
    for (_, memory, i) in usable {
        if memory > most_memory {
            most_memory = memory;
            kept.push(i);
        }
    }
    // In input order, so ties between optima resolve as they always have.
    kept.sort_unstable();
    kept.into_iter().map(|i| options[i]).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn option(price: f64, cpu: f64, memory: f64) -> CoverOption {
        CoverOption { price, cpu, memory }
    }

    #[test]
    fn one_type_covers_the_tighter_dimension() {
        let bound = lower_bound(&[option(1.0, 4.0, 16.0)], 8.0, 16.0).unwrap();
        assert!((bound - 2.0).abs() < 1e-9);
    }

    #[test]
    fn a_pair_beats_either_type_alone_on_a_mixed_demand() {
        // cpu-heavy and memory-heavy types at the same price per node.
        let options = [option(1.0, 8.0, 8.0), option(1.0, 2.0, 32.0)];
        let bound = lower_bound(&options, 10.0, 40.0).unwrap();
        // One of each covers exactly: 10 cpu, 40 memory.
        assert!((bound - 2.0).abs() < 1e-9, "{bound}");
        let alone = lower_bound(&options[..1], 10.0, 40.0).unwrap();
        assert!(alone > bound);
    }

    #[test]
    fn dominated_types_do_not_change_the_bound() {
        let good = option(1.0, 4.0, 16.0);
        let worse = option(2.0, 4.0, 16.0);
        assert_eq!(
            lower_bound(&[good, worse], 12.0, 12.0),
            lower_bound(&[good], 12.0, 12.0)
        );
    }

    #[test]
    fn duals_price_the_demand_at_the_bound() {
        let options = [
            option(1.0, 8.0, 8.0),
            option(1.0, 2.0, 32.0),
            option(3.0, 8.0, 8.0),
        ];
        let bound = lower_bound_solution(&options, 10.0, 40.0).unwrap();
        let (y_cpu, y_memory) = bound.duals;
        assert!((y_cpu * 10.0 + y_memory * 40.0 - bound.cost).abs() < 1e-9);
        for o in options {
            assert!(y_cpu * o.cpu + y_memory * o.memory <= o.price + 1e-9);
        }
    }

    #[test]
    fn zero_demand_costs_nothing_and_no_capacity_has_no_bound() {
        assert_eq!(lower_bound(&[], 0.0, 0.0), Some(0.0));
        assert_eq!(lower_bound(&[], 1.0, 1.0), None);
    }

    #[test]
    fn nodes_kept_apart_raise_the_bound_but_still_count_their_room() {
        // One big node covers the demand; four pods kept apart need four nodes, and the
        // cheapest way is small nodes topped up with a fraction of the big one.
        let options = [option(1.0, 16.0, 64.0), option(0.2, 2.0, 8.0)];
        let plain = lower_bound(&options, 16.0, 64.0).unwrap();
        assert!((plain - 1.0).abs() < 1e-9);
        let apart = Apart {
            nodes: 4.0,
            holds: vec![true, true],
        };
        let bound = lower_bound_apart(&options, 16.0, 64.0, &[apart]).unwrap();
        // x_big + x_small ≥ 4 and 16·x_big + 2·x_small ≥ 16 meet at x_small = 24/7.
        assert!((bound - 8.8 / 7.0).abs() < 1e-6, "{bound}");
    }

    #[test]
    fn only_options_that_hold_the_pods_count_as_their_nodes() {
        let options = [option(0.1, 1.0, 1.0), option(1.0, 8.0, 8.0)];
        let apart = |holds: Vec<bool>| Apart { nodes: 3.0, holds };
        let any = lower_bound_apart(&options, 1.0, 1.0, &[apart(vec![true, true])]).unwrap();
        let big = lower_bound_apart(&options, 1.0, 1.0, &[apart(vec![false, true])]).unwrap();
        assert!((any - 0.3).abs() < 1e-6, "{any}");
        assert!((big - 3.0).abs() < 1e-6, "{big}");
    }

    /// The exact optimum of the LP with one apart constraint, by enumerating the vertices of
    /// its dual `max y·d + λ·nodes` s.t. `y·cap + λ·holds ≤ price`, `y, λ ≥ 0`.
    fn brute_force(options: &[CoverOption], cpu: f64, memory: f64, apart: &Apart) -> f64 {
        let mut planes: Vec<([f64; 3], f64)> = options
            .iter()
            .zip(&apart.holds)
            .map(|(o, &h)| ([o.cpu, o.memory, if h { 1.0 } else { 0.0 }], o.price))
            .collect();
        for axis in 0..3 {
            let mut normal = [0.0; 3];
            normal[axis] = -1.0;
            planes.push((normal, 0.0));
        }
        let det = |m: [[f64; 3]; 3]| {
            m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1])
                - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0])
                + m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0])
        };
        let mut best = f64::NEG_INFINITY;
        for i in 0..planes.len() {
            for j in i + 1..planes.len() {
                for k in j + 1..planes.len() {
                    let rows = [planes[i].0, planes[j].0, planes[k].0];
                    let rhs = [planes[i].1, planes[j].1, planes[k].1];
                    let d = det(rows);
                    if d.abs() < 1e-12 {
                        continue;
                    }
                    let solve = |col: usize| {
                        let mut m = rows;
                        for r in 0..3 {
                            m[r][col] = rhs[r];
                        }
                        det(m) / d
                    };
                    let y = [solve(0), solve(1), solve(2)];
                    let feasible = planes
                        .iter()
                        .all(|(n, b)| n[0] * y[0] + n[1] * y[1] + n[2] * y[2] <= b + 1e-9);
                    if feasible {
                        best = best.max(y[0] * cpu + y[1] * memory + y[2] * apart.nodes);
                    }
                }
            }
        }
        best
    }

    proptest::proptest! {
        #[test]
        fn the_apart_bound_is_the_lp_optimum(
            shapes in proptest::collection::vec((1u32..40, 1u32..16, 1u32..64, proptest::bool::ANY), 1..6),
            cpu in 0u32..200,
            memory in 0u32..400,
            nodes in 0u32..30,
        ) {
            let options: Vec<CoverOption> = shapes
                .iter()
                .map(|&(p, c, m, _)| option(p as f64 / 10.0, c as f64, m as f64))
                .collect();
            let apart = Apart {
                nodes: nodes as f64,
                holds: shapes.iter().map(|s| s.3).collect(),
            };
            let (cpu, memory) = (cpu as f64, memory as f64);
            let plain = lower_bound(&options, cpu, memory).unwrap();
            let bound = lower_bound_apart(&options, cpu, memory, std::slice::from_ref(&apart)).unwrap();
            proptest::prop_assert!(bound >= plain - 1e-12);
            if apart.holds.iter().any(|&h| h) {
                let exact = brute_force(&options, cpu, memory, &apart);
                proptest::prop_assert!(
                    (bound - exact).abs() <= 1e-6 * exact.max(1.0),
                    "bound {} exact {}", bound, exact
                );
            }
        }

        #[test]
        fn the_sorted_front_keeps_exactly_the_undominated_options(
            shapes in proptest::collection::vec((0u32..6, 0u32..5, 0u32..5), 1..12),
        ) {
            let options: Vec<CoverOption> = shapes
                .iter()
                .map(|&(p, c, m)| option(p as f64, c as f64, m as f64))
                .collect();
            let per_dollar = |o: &CoverOption| {
                if o.price > 0.0 {
                    (o.cpu / o.price, o.memory / o.price)
                } else {
                    (f64::INFINITY, f64::INFINITY)
                }
            };
            let usable = |o: &CoverOption| o.cpu > 0.0 || o.memory > 0.0;
            let expected: Vec<CoverOption> = options
                .iter()
                .enumerate()
                .filter(|(_, o)| usable(o))
                .filter(|(i, o)| {
                    let (c, m) = per_dollar(o);
                    !options.iter().enumerate().any(|(j, o2)| {
                        let (c2, m2) = per_dollar(o2);
                        j != *i && usable(o2) && c2 >= c && m2 >= m && (c2 > c || m2 > m || j < *i)
                    })
                })
                .map(|(_, o)| *o)
                .collect();
            proptest::prop_assert_eq!(pareto_front(&options), expected);
        }
    }
}
