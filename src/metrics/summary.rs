//! Summaries with Karpenter's objectives (quantiles 0, 0.5, 0.9, 0.99 and 1 over the last ten
//! minutes, with all-time sum and count), which the `prometheus` crate does not offer: its
//! dashboards query `karpenter_nodes_termination_time_seconds{quantile="0.5"}` and the like.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prometheus::core::{Collector, Desc};
use prometheus::proto::{LabelPair, Metric, MetricFamily, MetricType, Quantile, Summary};

use crate::sync::lock;

const QUANTILES: [f64; 5] = [0.0, 0.5, 0.9, 0.99, 1.0];
/// client_golang's default MaxAge: quantiles describe this recent a window.
const WINDOW: Duration = Duration::from_secs(600);
/// Observations kept per series, so a burst cannot grow memory without bound.
const MAX_SAMPLES: usize = 10_000;

#[derive(Debug, Default)]
struct Series {
    recent: VecDeque<(Instant, f64)>,
    sum: f64,
    count: u64,
}

/// Clones share their series: one handle is registered, the other observes.
#[derive(Debug, Clone)]
pub struct SummaryVec {
    desc: Desc,
    series: Arc<Mutex<BTreeMap<Vec<String>, Series>>>,
}

impl SummaryVec {
    pub fn new(name: &str, help: &str, labels: &[&str]) -> prometheus::Result<SummaryVec> {
        let labels = labels.iter().map(|l| l.to_string()).collect();
        Ok(SummaryVec {
            desc: Desc::new(
                name.to_string(),
                help.to_string(),
                labels,
                Default::default(),
            )?,
            series: Arc::new(Mutex::new(BTreeMap::new())),
        })
    }

    pub fn observe(&self, label_values: &[&str], value: f64) {
        let key = label_values.iter().map(|v| v.to_string()).collect();
        let mut series = lock(&self.series);
        let entry: &mut Series = series.entry(key).or_default();
        entry.sum += value;
        entry.count += 1;
        entry.recent.push_back((Instant::now(), value));
        if entry.recent.len() > MAX_SAMPLES {
            entry.recent.pop_front();
        }
    }
}

/// The nearest-rank quantile of sorted values (`NaN` when there are none, as client_golang).
fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (q * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

impl Collector for SummaryVec {
    fn desc(&self) -> Vec<&Desc> {
        vec![&self.desc]
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let mut series = lock(&self.series);
        let mut metrics = Vec::new();
        for (values, entry) in series.iter_mut() {
            while entry
                .recent
                .front()
                .is_some_and(|(at, _)| at.elapsed() > WINDOW)
            {
                entry.recent.pop_front();
            }
            let mut sorted: Vec<f64> = entry.recent.iter().map(|(_, v)| *v).collect();
            sorted.sort_by(f64::total_cmp);
            let mut summary = Summary::default();
            summary.set_sample_count(entry.count);
            summary.set_sample_sum(entry.sum);
            summary.set_quantile(
                QUANTILES
                    .iter()
                    .map(|q| {
                        let mut quantile_value = Quantile::default();
                        quantile_value.set_quantile(*q);
                        quantile_value.set_value(quantile(&sorted, *q));
                        quantile_value
                    })
                    .collect(),
            );
            let labels = self
                .desc
                .variable_labels
                .iter()
                .zip(values)
                .map(|(name, value)| {
                    let mut pair = LabelPair::default();
                    pair.set_name(name.clone());
                    pair.set_value(value.clone());
                    pair
                })
                .collect();
            let mut metric = Metric::from_label(labels);
            metric.set_summary(summary);
            metrics.push(metric);
        }
        if metrics.is_empty() {
            return Vec::new();
        }
        let mut family = MetricFamily::default();
        family.set_name(self.desc.fq_name.clone());
        family.set_help(self.desc.help.clone());
        family.set_field_type(MetricType::SUMMARY);
        family.set_metric(metrics);
        vec![family]
    }
}
