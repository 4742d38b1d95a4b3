//! The fault harness: moto, the simulated cluster (`nodewright simulate --no-controller
//! --cloud aws`) and one or two `nodewright controller` replicas as separate processes, under
//! seeded storms of faults: kill -9 of the leader (at random, between a Machine's create and its
//! launch, mid-drain), the API server refusing, failing and cutting requests (ending watches),
//! EC2 throttling and insufficient capacity, nodes going NotReady mid-drain, `kubectl delete
//! node`. Checked throughout: no limit exceeded, no PDB violated, at most one instance per
//! Machine, no instance without a Machine past the GC's grace nor with a Machine and no Node past
//! the registration TTL; after each wave: no pod
//! pending that capacity could hold; at the end: nothing left after scale to zero, no panic.
//!
//! `cargo test --test chaos` runs one trial. More:
//! `CHAOS_TRIALS=1000 CHAOS_PARALLEL=3 cargo test --release --test chaos -- --nocapture`;
//! `CHAOS_SEED=N` starts from seed N (a trial's plan follows from its seed; the processes'
//! timing does not, so a replay re-runs the same storm, not the same interleaving);
//! `CHAOS_KEEP=1` keeps every trial's logs (a failed trial's are always kept).

#[allow(dead_code)]
#[path = "../aws/support/mod.rs"]
mod support;

mod apiproxy;
mod cluster;
mod invariants;
mod rng;
mod trial;
mod workload;

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use futures::StreamExt;

fn from_env(name: &str) -> Option<u64> {
    std::env::var(name).ok()?.parse().ok()
}

#[tokio::test(flavor = "multi_thread")]
async fn seeded_fault_storms_break_no_invariant() {
    let trials = from_env("CHAOS_TRIALS").unwrap_or(1);
    let parallel = from_env("CHAOS_PARALLEL").unwrap_or(1).max(1) as usize;
    let first = from_env("CHAOS_SEED").unwrap_or_else(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() % 1_000_000)
            .unwrap_or_default()
    });
    let base = std::env::temp_dir().join(format!("nodewright-chaos-{}", std::process::id()));
    let mut faults: BTreeMap<&'static str, u64> = BTreeMap::new();
    let mut failed = Vec::new();
    let mut reports = futures::stream::iter(first..first + trials)
        .map(|seed| trial::run(seed, &base))
        .buffer_unordered(parallel);
    while let Some(report) = reports.next().await {
        let injected: u64 = report.faults.values().sum();
        // Each trial's faults by kind on its own line, so a long run stopped early keeps them.
        let kinds: Vec<String> = report
            .faults
            .iter()
            .map(|(kind, count)| format!("{kind}: {count}"))
            .collect();
        println!(
            "chaos seed {} ({}): {:.0} s, {injected} faults, {} violation kinds [{}]",
            report.seed,
            report.summary,
            report.elapsed.as_secs_f64(),
            report.violations.len(),
            kinds.join("; ")
        );
        for (kind, count) in &report.faults {
            *faults.entry(kind).or_default() += count;
        }
        for (kind, (count, first)) in &report.violations {
            println!("  VIOLATION {kind} ×{count}: {first}");
            failed.push(format!(
                "seed {}: {kind} ({first}); logs in {}",
                report.seed,
                report.dir.display()
            ));
        }
    }
    println!("chaos: {trials} trials from seed {first}, faults injected by kind:");
    for (kind, count) in &faults {
        println!("  {count:>6}  {kind}");
    }
    println!("chaos: {} violations", failed.len());
    assert!(
        failed.is_empty(),
        "invariants broken:\n{}",
        failed.join("\n")
    );
}
