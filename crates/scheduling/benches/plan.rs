//! Plan-time and cost benchmarks for the scheduler (plain `std::time::Instant`, no harness).
//!
//! - Workload A: real pod shapes (cpu_m, mem_mib) drawn from the OpenB trace, one provisioner
//!   allowing amd64 c/m/r types of generation > 4, spot and on-demand.
//! - Workload B: Karpenter's scheduling benchmark mix — one fifth each of generic pods, zonal
//!   spread (maxSkew 1), hostname spread (maxSkew 1), zonal pod self-affinity and hostname
//!   anti-affinity; cpu from {100, 250, 500, 1000, 1500}m, memory from {100, 256, 512, 1024,
//!   2048, 4096}Mi; three zones.
//!
//! Instance types: the embedded us-east-1 catalog, priced from `prices-us-east-1.json`. Data is
//! read in place from `$NODEWRIGHT_DATA` (default: `shared/data` beside the repository).
//!
//! `LP` is the plan's lower bound (anti-affinity included); the cpu+memory LP ignores what
//! keeps pods apart.
//!
//! Run: `cargo bench -p nodewright-scheduling --bench plan [-- A|B] [SIZE...] [--quick]`; plain
//! numbers pick the pod counts (default: 1000, 10000, 20000, 50000).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nodewright_scheduling::allocatable::AllocatableSettings;
use nodewright_scheduling::catalog::{Catalog, PriceTable};
use nodewright_scheduling::instance_type::InstanceType;
use nodewright_scheduling::labels;
use nodewright_scheduling::pod::{
    LabelSelector, Pod, PodAffinityTerm, TopologySpreadConstraint, WhenUnsatisfiable,
};
use nodewright_scheduling::provisioner::{Provisioner, ProvisionerInput};
use nodewright_scheduling::requirements::{NodeSelectorRequirement, Operator};
use nodewright_scheduling::resources::Resources;
use nodewright_scheduling::{Packing, Plan, ScheduleInput, SchedulerSettings, schedule};

const MIB: i64 = 1024 * 1024;
const SIZES: [usize; 4] = [1_000, 10_000, 20_000, 50_000];
const ZONES: [&str; 3] = ["us-east-1a", "us-east-1b", "us-east-1c"];

fn data_dir() -> PathBuf {
    std::env::var_os("NODEWRIGHT_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data"))
}

/// A small deterministic generator (xorshift64*), so runs are repeatable without a crate.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

fn types() -> Result<Vec<Arc<InstanceType>>, String> {
    let path = data_dir().join("prices-us-east-1.json");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let prices = PriceTable::from_json(&text).map_err(|e| e.to_string())?;
    let catalog = Catalog::embedded().map_err(|e| e.to_string())?;
    Ok(catalog
        .instance_types("us-east-1", Some(&prices))
        .map_err(|e| e.to_string())?
        .into_iter()
        .map(Arc::new)
        .collect())
}

/// (cpu millicores, memory MiB) of every pod in the OpenB trace.
fn openb_shapes() -> Result<Vec<(i64, i64)>, String> {
    let path = data_dir().join("openb_pod_requests.csv");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap_or_default().split(',').collect();
    let column = |name: &str| {
        header
            .iter()
            .position(|h| *h == name)
            .ok_or(format!("{}: no column {name}", path.display()))
    };
    let (cpu, mem) = (column("cpu_m")?, column("mem_mib")?);
    let mut shapes = Vec::new();
    for (n, line) in lines.enumerate() {
        let fields: Vec<&str> = line.split(',').collect();
        let parse = |i: usize| {
            fields
                .get(i)
                .and_then(|f| f.trim().parse::<i64>().ok())
                .ok_or(format!("{} line {}: bad field {i}", path.display(), n + 2))
        };
        shapes.push((parse(cpu)?, parse(mem)?));
    }
    Ok(shapes)
}

fn pod(name: String, cpu_millis: i64, memory_mib: i64) -> Pod {
    Pod {
        namespace: "default".into(),
        uid: name.clone(),
        name,
        requests: Resources {
            cpu_millis,
            memory_bytes: memory_mib * MIB,
            pods: 1,
            ..Resources::default()
        },
        ..Pod::default()
    }
}

fn workload_a(shapes: &[(i64, i64)], n: usize) -> Vec<Pod> {
    let mut rng = Rng(0x5EED_0A0A);
    (0..n)
        .map(|i| {
            let (cpu, mem) = *rng.pick(shapes);
            pod(format!("openb-{i}"), cpu, mem)
        })
        .collect()
}

fn workload_b(n: usize) -> Vec<Pod> {
    const CPU: [i64; 5] = [100, 250, 500, 1000, 1500];
    const MEM: [i64; 6] = [100, 256, 512, 1024, 2048, 4096];
    const VALUES: [&str; 7] = ["a", "b", "c", "d", "e", "f", "g"];
    let mut rng = Rng(0x5EED_0B0B);
    let fifth = n / 5;
    (0..n)
        .map(|i| {
            let mut p = pod(format!("b-{i}"), *rng.pick(&CPU), *rng.pick(&MEM));
            let selector =
                |k: &str, v: &str| LabelSelector::labels([(k.to_string(), v.to_string())]);
            match i / fifth.max(1) {
                1 | 2 => {
                    let key = if i / fifth.max(1) == 1 {
                        labels::ZONE
                    } else {
                        labels::HOSTNAME
                    };
                    std::sync::Arc::make_mut(&mut p.labels)
                        .insert("my-label".into(), rng.pick(&VALUES).to_string());
                    let selected = *rng.pick(&VALUES);
                    p.placement_mut()
                        .topology_spread
                        .push(TopologySpreadConstraint {
                            max_skew: 1,
                            topology_key: key.into(),
                            when_unsatisfiable: WhenUnsatisfiable::DoNotSchedule,
                            label_selector: selector("my-label", selected),
                            min_domains: None,
                        });
                }
                3 => {
                    let value = rng.pick(&VALUES).to_string();
                    std::sync::Arc::make_mut(&mut p.labels)
                        .insert("my-affinity".into(), value.clone());
                    p.placement_mut().pod_affinity.push(PodAffinityTerm {
                        label_selector: selector("my-affinity", &value),
                        topology_key: labels::ZONE.into(),
                        ..PodAffinityTerm::default()
                    });
                }
                4 => {
                    std::sync::Arc::make_mut(&mut p.labels).insert("app".into(), "nginx".into());
                    p.placement_mut().pod_anti_affinity.push(PodAffinityTerm {
                        label_selector: selector("app", "nginx"),
                        topology_key: labels::HOSTNAME.into(),
                        ..PodAffinityTerm::default()
                    });
                }
                _ => {
                    std::sync::Arc::make_mut(&mut p.labels)
                        .insert("my-label".into(), rng.pick(&VALUES).to_string());
                }
            }
            p
        })
        .collect()
}

fn provisioner(types: &[Arc<InstanceType>], three_zones: bool) -> ProvisionerInput {
    let requirement = |key: &str, operator, values: &[&str]| {
        NodeSelectorRequirement::new(key, operator, values.iter().copied())
    };
    let mut requirements = vec![
        requirement(labels::ARCH, Operator::In, &[labels::ARCH_AMD64]),
        requirement(labels::INSTANCE_CATEGORY, Operator::In, &["c", "m", "r"]),
        requirement(labels::INSTANCE_GENERATION, Operator::Gt, &["4"]),
    ];
    if three_zones {
        requirements.push(requirement(labels::ZONE, Operator::In, &ZONES));
    }
    ProvisionerInput::new(
        Provisioner {
            name: "default".into(),
            requirements,
            ..Provisioner::default()
        },
        types,
        &AllocatableSettings::default(),
    )
}

struct Figures {
    median: Duration,
    plan: Plan,
}

fn measure(input: &ScheduleInput, runs: usize) -> Figures {
    let mut times = Vec::new();
    let mut plan = None;
    for _ in 0..runs {
        let start = Instant::now();
        let p = schedule(input);
        times.push(start.elapsed());
        plan = Some(p);
    }
    times.sort();
    Figures {
        median: times[times.len() / 2],
        plan: plan.unwrap_or_else(|| schedule(input)),
    }
}

fn report(workload: &str, pods: usize, figures: &Figures, karpenter: Option<&Plan>) {
    let plan = &figures.plan;
    let ms = figures.median.as_secs_f64() * 1000.0;
    let per_sec = pods as f64 / figures.median.as_secs_f64();
    let ratio = plan
        .cost_ratio
        .map_or("-".to_string(), |r| format!("{r:.3}"));
    let karpenter = karpenter.map_or(String::new(), |k| {
        format!(
            "  karpenter-ffd ${:.2}/h ({})",
            k.total_price_per_hour,
            k.cost_ratio
                .map_or("-".to_string(), |r| format!("{r:.3}×LP"))
        )
    });
    let mut per_type: BTreeMap<&str, usize> = BTreeMap::new();
    for n in &plan.nodes {
        *per_type.entry(n.instance_type.as_str()).or_insert(0) += 1;
    }
    let mut top: Vec<(&str, usize)> = per_type.into_iter().collect();
    top.sort_by_key(|t| std::cmp::Reverse(t.1));
    let cover = plan.cover_bound_per_hour.unwrap_or(0.0);
    let cover_ratio = if cover > 0.0 {
        format!("{:.3}", plan.total_price_per_hour / cover)
    } else {
        "-".to_string()
    };
    println!(
        "{workload} {pods:>6} pods  {ms:>9.1} ms  {per_sec:>9.0} pods/s  {:>5} nodes  {:>3} unschedulable  \
         ${:.2}/h  LP ${:.2}/h  cost/LP {ratio}  (cpu+memory LP ${cover:.2}/h, {cover_ratio}){karpenter}",
        plan.nodes.len(),
        plan.unschedulable.len(),
        plan.total_price_per_hour,
        plan.lower_bound_per_hour.unwrap_or(0.0),
    );
    println!(
        "        strategy: {}; most used types: {:?}",
        plan.strategy,
        &top[..top.len().min(4)]
    );
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|a| a == "--quick");
    let only: Vec<&str> = args
        .iter()
        .filter(|a| *a == "A" || *a == "B")
        .map(String::as_str)
        .collect();
    let wanted = |w: &str| only.is_empty() || only.contains(&w);
    let types = match types() {
        Ok(t) => t,
        Err(e) => {
            eprintln!("cannot load instance types: {e}");
            std::process::exit(1);
        }
    };
    let picked: Vec<usize> = args.iter().filter_map(|a| a.parse().ok()).collect();
    let sizes: &[usize] = if !picked.is_empty() {
        &picked
    } else if quick {
        &SIZES[..2]
    } else {
        &SIZES
    };
    let runs = |n: usize| {
        if quick {
            1
        } else if n >= 50_000 {
            3
        } else {
            5
        }
    };
    if wanted("A") {
        let shapes = match openb_shapes() {
            Ok(s) => s,
            Err(e) => {
                eprintln!("cannot read the OpenB trace: {e}");
                std::process::exit(1);
            }
        };
        let prov = provisioner(&types, false);
        for &n in sizes {
            let input = ScheduleInput {
                pods: workload_a(&shapes, n),
                provisioners: vec![prov.clone()],
                ..ScheduleInput::default()
            };
            let figures = measure(&input, runs(n));
            let karpenter = schedule(&ScheduleInput {
                settings: SchedulerSettings {
                    packing: Packing::FirstFitDecreasing,
                    ..SchedulerSettings::default()
                },
                ..input.clone()
            });
            report("A", n, &figures, Some(&karpenter));
        }
    }
    if wanted("B") {
        let prov = provisioner(&types, true);
        for &n in sizes {
            let input = ScheduleInput {
                pods: workload_b(n),
                provisioners: vec![prov.clone()],
                ..ScheduleInput::default()
            };
            let figures = measure(&input, runs(n));
            report("B", n, &figures, None);
        }
    }
}
