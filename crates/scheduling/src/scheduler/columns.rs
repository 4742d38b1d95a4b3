//! Column generation for pattern packing (the Gilmore–Gomory method for cutting stock).
//!
//! The *configuration LP* chooses how many nodes of each node pattern (type and contents) to
//! launch so that every pod group is covered, at least cost: `min Σ cost·x` subject to
//! `Σ count_g·x ≥ demand_g` for every group. It has a column per possible pattern, so columns
//! are generated on demand: the LP's dual prices value each group, and a greedy fill of each
//! candidate type with pods worth those prices yields a pattern; one that is worth more than
//! its price improves the LP. When none does, the fractional solution is rounded down and the
//! pods left over go to the greedy packer.

use super::patterns::{Fill, Layout, Pool, PoolPrices};
use super::state::PackState;
use super::vector::ResVec;

/// Pivots allowed before giving up on optimality (the rounding still works from there).
const MAX_PIVOTS: usize = 4000;
const EPSILON: f64 = 1e-9;
/// Seeded fills per type when pricing: one per group of most dual value.
const PRICING_SEEDS: usize = 6;

/// A column of the master LP: a node pattern, or the surplus of one group.
#[derive(Clone)]
struct Column {
    /// (pool group index, count); for a surplus column, the group with count 1 (negated).
    pattern: Vec<(usize, usize)>,
    cost: f64,
    used: ResVec,
    surplus: bool,
}

impl Column {
    fn dense(&self, rows: usize) -> Vec<f64> {
        let mut v = vec![0.0; rows];
        for &(i, n) in &self.pattern {
            v[i] = if self.surplus { -1.0 } else { n as f64 };
        }
        v
    }
}

impl<'m> PackState<'m> {
    /// Layouts from column generation over `candidates`, with their cost; `None` when a group
    /// fits no candidate.
    pub(crate) fn column_layouts(
        &self,
        pool: &Pool,
        prices: &PoolPrices<'_>,
        candidates: &[usize],
        fallback_worth: &[f64],
        seeds: &[Layout],
    ) -> Option<(f64, Vec<Layout>)> {
        let model = self.model;
        let p = prices.p;
        let rows = pool.groups.len();
        if rows == 0 {
            return None;
        }
        let demand: Vec<f64> = pool.groups.iter().map(|&(_, n)| n as f64).collect();
        // Start from one homogeneous pattern per group: as many of its pods as the roomiest
        // candidate holds, priced as the cheapest type that holds them.
        let mut columns: Vec<Column> = Vec::new();
        for (i, &(g, n)) in pool.groups.iter().enumerate() {
            let req = &model.groups[g].req;
            let count = candidates
                .iter()
                .map(|&t| req.copies_in(&p.types[t].alloc) as usize)
                .max()
                .unwrap_or(0)
                .min(n)
                .max(1);
            let used = req.times(count as i64);
            let cost = prices.cheapest_holding(&used)?;
            columns.push(Column {
                pattern: vec![(i, count)],
                cost,
                used,
                surplus: false,
            });
        }
        let mut basis: Vec<usize> = (0..rows).collect();
        let mut inverse: Vec<Vec<f64>> = (0..rows)
            .map(|i| {
                let mut row = vec![0.0; rows];
                row[i] = 1.0 / columns[i].pattern[0].1 as f64;
                row
            })
            .collect();
        let mut values: Vec<f64> = (0..rows)
            .map(|i| demand[i] / columns[i].pattern[0].1 as f64)
            .collect();
        for i in 0..rows {
            columns.push(Column {
                pattern: vec![(i, 1)],
                cost: 0.0,
                used: ResVec::ZERO,
                surplus: true,
            });
        }
        // The greedy packer's patterns are good columns to start from.
        for layout in seeds {
            if let Some(cost) = prices.cheapest_holding(&layout.used) {
                columns.push(Column {
                    pattern: layout.pattern.clone(),
                    cost,
                    used: layout.used,
                    surplus: false,
                });
            }
        }

        for _ in 0..MAX_PIVOTS {
            // Dual prices: c_B · B⁻¹.
            let mut duals = vec![0.0; rows];
            for (r, &col) in basis.iter().enumerate() {
                let c = columns[col].cost;
                if c != 0.0 {
                    for (j, d) in duals.iter_mut().enumerate() {
                        *d += c * inverse[r][j];
                    }
                }
            }
            let reduced = |col: &Column| {
                col.cost
                    - col
                        .pattern
                        .iter()
                        .map(|&(i, n)| duals[i] * if col.surplus { -1.0 } else { n as f64 })
                        .sum::<f64>()
            };
            let mut entering = (0..columns.len())
                .filter(|c| !basis.contains(c))
                .map(|c| (reduced(&columns[c]), c))
                .filter(|(rc, _)| *rc < -EPSILON)
                .min_by(|a, b| a.0.total_cmp(&b.0).then_with(|| a.1.cmp(&b.1)))
                .map(|(_, c)| c);
            if entering.is_none() {
                entering = self.price_out(pool, prices, candidates, &duals, &mut columns);
            }
            let Some(q) = entering else { break };
            let a = columns[q].dense(rows);
            let direction: Vec<f64> = inverse
                .iter()
                .map(|row| row.iter().zip(&a).map(|(x, y)| x * y).sum())
                .collect();
            let leaving = direction
                .iter()
                .enumerate()
                .filter(|(_, u)| **u > EPSILON)
                .map(|(r, u)| (values[r] / u, r))
                .min_by(|a, b| {
                    a.0.total_cmp(&b.0)
                        .then_with(|| basis[a.1].cmp(&basis[b.1]))
                });
            let Some((step, r)) = leaving else { break };
            for (i, v) in values.iter_mut().enumerate() {
                if i != r {
                    *v -= step * direction[i];
                }
            }
            values[r] = step;
            let pivot = direction[r];
            let pivot_row: Vec<f64> = inverse[r].iter().map(|x| x / pivot).collect();
            for (i, row) in inverse.iter_mut().enumerate() {
                if i == r {
                    row.clone_from(&pivot_row);
                } else if direction[i] != 0.0 {
                    for (x, y) in row.iter_mut().zip(&pivot_row) {
                        *x -= direction[i] * y;
                    }
                }
            }
            basis[r] = q;
        }

        // Round down, then let the greedy packer place what is left.
        let mut left: Vec<(usize, usize)> = pool.groups.clone();
        let mut layouts = Vec::new();
        let mut total = 0.0;
        let mut chosen: Vec<(usize, f64)> = basis
            .iter()
            .zip(&values)
            .filter(|(c, _)| !columns[**c].surplus)
            .map(|(c, v)| (*c, *v))
            .collect();
        chosen.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        for (c, value) in chosen {
            let column = &columns[c];
            let fits = column
                .pattern
                .iter()
                .map(|&(i, n)| left[i].1 / n)
                .min()
                .unwrap_or(0);
            let repeats = (value + EPSILON).floor().max(0.0) as usize;
            let repeats = repeats.min(fits);
            if repeats == 0 {
                continue;
            }
            for &(i, n) in &column.pattern {
                left[i].1 -= n * repeats;
            }
            total += column.cost * repeats as f64;
            layouts.push(Layout {
                pattern: column.pattern.clone(),
                used: column.used,
                repeats,
            });
        }
        let (rest, rest_layouts) = self.layouts(&left, prices, candidates, fallback_worth);
        layouts.extend(rest_layouts);
        Some((total + rest, layouts))
    }

    /// Adds the best pattern per candidate type worth more than its price under `duals`;
    /// returns the most improving one.
    fn price_out(
        &self,
        pool: &Pool,
        prices: &PoolPrices<'_>,
        candidates: &[usize],
        duals: &[f64],
        columns: &mut Vec<Column>,
    ) -> Option<usize> {
        let p = prices.p;
        let worth: Vec<f64> = duals.iter().map(|d| d.max(0.0)).collect();
        let mut best: Option<(f64, usize)> = None;
        let mut seeds: Vec<(f64, usize)> = worth
            .iter()
            .enumerate()
            .filter(|(_, w)| **w > 0.0)
            .map(|(i, w)| (w * pool.groups[i].1 as f64, i))
            .collect();
        seeds.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
        let fills: Vec<Fill> = [Fill::Worth, Fill::Balance]
            .into_iter()
            .chain(
                seeds
                    .iter()
                    .take(PRICING_SEEDS)
                    .map(|&(_, i)| Fill::Seeded(i)),
            )
            .collect();
        for &t in candidates {
            let mut best_here: Option<(f64, Column)> = None;
            for &fill in &fills {
                let (pattern, used) = self.fill(&p.types[t].alloc, &pool.groups, fill, &worth);
                if pattern.is_empty() {
                    continue;
                }
                let Some(cost) = prices.cheapest_holding(&used) else {
                    continue;
                };
                let value: f64 = pattern.iter().map(|&(i, n)| worth[i] * n as f64).sum();
                let reduced = cost - value;
                if reduced < -EPSILON * cost.max(1.0)
                    && best_here.as_ref().is_none_or(|(r, _)| reduced < *r)
                {
                    best_here = Some((
                        reduced,
                        Column {
                            pattern,
                            cost,
                            used,
                            surplus: false,
                        },
                    ));
                }
            }
            if let Some((reduced, column)) = best_here {
                if columns
                    .iter()
                    .any(|c| !c.surplus && c.pattern == column.pattern && c.cost == column.cost)
                {
                    continue;
                }
                columns.push(column);
                let index = columns.len() - 1;
                if best.is_none_or(|(r, _)| reduced < r) {
                    best = Some((reduced, index));
                }
            }
        }
        best.map(|(_, c)| c)
    }
}
