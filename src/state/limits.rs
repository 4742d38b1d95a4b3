//! One reservation point for every Machine create, whichever loop makes it (provisioning,
//! a disruption's replacement): a provisioner's limits hold across loops that decide on
//! separate snapshots. Admitting a machine counts it at the largest of its candidates, as
//! usage counts an unlaunched machine, on top of what the cache counts and of the machines
//! admitted but not yet seen in the cache. The reservation ends when the cache holds the
//! machine (which then counts it until it goes) or when its create failed.

use std::collections::{BTreeMap, HashMap};

use nodewright_scheduling::resources::{Resources, format_amount};

use super::ClusterState;
use super::views::InstanceTypesByProvisioner;

/// Machines admitted but not yet in the cache: name → (provisioner, counted capacity).
#[derive(Debug, Default)]
pub struct Reservations {
    by_machine: HashMap<String, (String, Resources)>,
}

impl Reservations {
    /// Admits `machine` of `provisioner`, counted as `counted`, or says which limit it would
    /// pass. A provisioner without limits admits everything.
    pub fn admit(
        &mut self,
        state: &ClusterState,
        types: &InstanceTypesByProvisioner,
        machine: &str,
        provisioner: &str,
        counted: Resources,
    ) -> Result<(), String> {
        let limits: BTreeMap<String, i64> = state
            .provisioner(provisioner)
            .map(|p| p.core.limits.clone())
            .unwrap_or_default();
        if !limits.is_empty() {
            let mut used = state
                .provisioner_usage(types)
                .remove(provisioner)
                .unwrap_or_default();
            // A reservation ends as the cache takes its machine in, so none is counted twice.
            for (owner, reserved) in self.by_machine.values() {
                if owner == provisioner {
                    used += reserved;
                }
            }
            for (resource, limit) in &limits {
                if used.get(resource) + counted.get(resource) > *limit {
                    return Err(format!(
                        "provisioner {provisioner} would pass its {resource} limit: {} in use and {} more exceed {}",
                        format_amount(resource, used.get(resource)),
                        format_amount(resource, counted.get(resource)),
                        format_amount(resource, *limit),
                    ));
                }
            }
        }
        self.by_machine
            .insert(machine.to_string(), (provisioner.to_string(), counted));
        Ok(())
    }

    /// Ends the reservation of `machine`: the cache holds it now, or it was never created.
    pub fn release(&mut self, machine: &str) {
        self.by_machine.remove(machine);
    }

    pub fn count(&self) -> usize {
        self.by_machine.len()
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::json;

    use crate::apis::{Machine, Provisioner};
    use crate::state::{InstanceTypesByProvisioner, SharedState};

    const LIMIT_CPUS: i64 = 10;

    fn machine(name: &str, cpus: i64) -> Machine {
        serde_json::from_value(json!({
            "apiVersion": "karpenter.sh/v1alpha5", "kind": "Machine",
            "metadata": {"name": name, "labels": {"karpenter.sh/provisioner-name": "default"}},
            "spec": {"resources": {"requests": {"cpu": cpus.to_string()}}}
        }))
        .expect("a machine")
    }

    fn limited_state() -> std::sync::Arc<SharedState> {
        let shared = SharedState::new();
        let provisioner: Provisioner = serde_json::from_value(json!({
            "apiVersion": "karpenter.sh/v1alpha5", "kind": "Provisioner",
            "metadata": {"name": "default"},
            "spec": {"limits": {"resources": {"cpu": LIMIT_CPUS.to_string()}}}
        }))
        .expect("a provisioner");
        shared.apply(&provisioner);
        shared
    }

    /// What happens to one machine next, in whichever loop's order.
    #[derive(Debug, Clone)]
    enum Step {
        /// A loop decides on a machine of this many CPUs and asks to create it.
        Admit(i64),
        /// The create of the n-th admitted machine came back and the cache holds it.
        Cached(usize),
        /// The create of the n-th admitted machine failed.
        Failed(usize),
        /// The n-th admitted machine went away.
        Deleted(usize),
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            (1i64..6).prop_map(Step::Admit),
            (0usize..12).prop_map(Step::Cached),
            (0usize..12).prop_map(Step::Failed),
            (0usize..12).prop_map(Step::Deleted),
        ]
    }

    #[derive(Debug, Clone, Copy, PartialEq)]
    enum Fate {
        Creating,
        Cached,
        Gone,
    }

    proptest! {
        #[test]
        fn interleaved_creates_from_any_loop_never_pass_a_limit(
            steps in proptest::collection::vec(step(), 1..60)
        ) {
            let shared = limited_state();
            let types = InstanceTypesByProvisioner::new();
            let mut machines: Vec<(Machine, i64, Fate)> = Vec::new();
            for step in steps {
                match step {
                    Step::Admit(cpus) => {
                        let m = machine(&format!("default-{}", machines.len()), cpus);
                        let alive: i64 = machines
                            .iter()
                            .filter(|(_, _, fate)| *fate != Fate::Gone)
                            .map(|(_, cpus, _)| cpus)
                            .sum();
                        let admitted = shared.admit_machine(&m, &types);
                        prop_assert_eq!(
                            admitted.is_ok(),
                            alive + cpus <= LIMIT_CPUS,
                            "admitted exactly when it fits: {:?}", admitted
                        );
                        if admitted.is_ok() {
                            machines.push((m, cpus, Fate::Creating));
                        }
                    }
                    Step::Cached(i) => {
                        if let Some((m, _, fate)) = machines.get_mut(i)
                            && *fate == Fate::Creating
                        {
                            shared.apply(&*m);
                            *fate = Fate::Cached;
                        }
                    }
                    Step::Failed(i) => {
                        if let Some((m, _, fate)) = machines.get_mut(i)
                            && *fate == Fate::Creating
                        {
                            shared.machine_not_created(m.metadata.name.as_deref().unwrap_or_default());
                            *fate = Fate::Gone;
                        }
                    }
                    Step::Deleted(i) => {
                        if let Some((m, _, fate)) = machines.get_mut(i)
                            && *fate == Fate::Cached
                        {
                            shared.remove(&*m);
                            *fate = Fate::Gone;
                        }
                    }
                }
                let alive: i64 = machines
                    .iter()
                    .filter(|(_, _, fate)| *fate != Fate::Gone)
                    .map(|(_, cpus, _)| cpus)
                    .sum();
                prop_assert!(alive <= LIMIT_CPUS, "{} CPUs launched past a limit of {}", alive, LIMIT_CPUS);
                let creating = machines.iter().filter(|(_, _, f)| *f == Fate::Creating).count();
                prop_assert_eq!(shared.reserved_machines(), creating, "reservations end with their create");
            }
        }
    }
}
