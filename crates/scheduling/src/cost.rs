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
/// dominated options never appear in an optimum.
fn pareto_front(options: &[CoverOption]) -> Vec<CoverOption> {
    let per_dollar: Vec<(f64, f64)> = options
        .iter()
        .map(|o| {
            if o.price > 0.0 {
                (o.cpu / o.price, o.memory / o.price)
            } else {
                (f64::INFINITY, f64::INFINITY)
            }
        })
        .collect();
    options
        .iter()
        .enumerate()
        .filter(|(_, o)| o.price.is_finite() && o.price >= 0.0 && (o.cpu > 0.0 || o.memory > 0.0))
        .filter(|(i, _)| {
            let (c, m) = per_dollar[*i];
            !per_dollar
                .iter()
                .enumerate()
                .any(|(j, &(c2, m2))| j != *i && c2 >= c && m2 >= m && (c2 > c || m2 > m || j < *i))
        })
        .map(|(_, o)| *o)
        .collect()
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
}
