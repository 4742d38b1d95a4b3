//! Resource quantities (cpu, memory, storage, pods, extended resources) in integer units.
//!
//! [`parse_quantity`] reads Kubernetes quantity strings exactly; [`Resources`] holds a bundle in
//! integer units (millicores, bytes, counts) so that fit checks never suffer rounding;
//! [`pod_requests`] applies the Kubernetes rule for a pod's effective requests.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::{Add, AddAssign, Sub};

use serde::{Deserialize, Serialize};

use crate::labels;

mod quantity;

pub use quantity::{Quantity, QuantityError, parse_quantity};

/// A bundle of resources: a pod's requests, a node's capacity or allocatable.
///
/// Integer units keep arithmetic exact: cpu in millicores, memory and storage in bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Resources {
    pub cpu_millis: i64,
    pub memory_bytes: i64,
    pub ephemeral_storage_bytes: i64,
    pub pods: i64,
    /// GPUs, accelerators and any other extended resource, by resource name. Zero entries are
    /// omitted so that equal bundles compare equal.
    pub extended: BTreeMap<String, i64>,
}

/// A resource map that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("resource {name}: {source}")]
pub struct ResourceError {
    pub name: String,
    #[source]
    pub source: QuantityError,
}

impl Resources {
    /// Reads `name → quantity` pairs (a Kubernetes `ResourceList`): cpu into millicores, memory
    /// and ephemeral storage into bytes, everything else into whole units, rounding up as the
    /// Kubernetes API does. Repeated names add up.
    pub fn from_quantities<'a, I>(list: I) -> Result<Resources, ResourceError>
    where
        I: IntoIterator<Item = (&'a str, &'a str)>,
    {
        let mut resources = Resources::default();
        for (name, text) in list {
            let quantity = parse_quantity(text).map_err(|source| ResourceError {
                name: name.to_string(),
                source,
            })?;
            let value = if name == labels::RESOURCE_CPU {
                quantity.millis()
            } else {
                quantity.units()
            };
            resources.set(name, resources.get(name).saturating_add(value));
        }
        Ok(resources)
    }

    /// Millicores of cpu and bytes of memory; one line for fixtures and tests.
    pub fn cpu_memory(cpu_millis: i64, memory_bytes: i64) -> Resources {
        Resources {
            cpu_millis,
            memory_bytes,
            ..Resources::default()
        }
    }

    /// The amount of `name` in its integer unit; zero when absent.
    pub fn get(&self, name: &str) -> i64 {
        match name {
            labels::RESOURCE_CPU => self.cpu_millis,
            labels::RESOURCE_MEMORY => self.memory_bytes,
            labels::RESOURCE_EPHEMERAL_STORAGE => self.ephemeral_storage_bytes,
            labels::RESOURCE_PODS => self.pods,
            other => self.extended.get(other).copied().unwrap_or(0),
        }
    }

    /// Sets `name` to `value` (integer unit); a zero extended resource is removed.
    pub fn set(&mut self, name: &str, value: i64) {
        match name {
            labels::RESOURCE_CPU => self.cpu_millis = value,
            labels::RESOURCE_MEMORY => self.memory_bytes = value,
            labels::RESOURCE_EPHEMERAL_STORAGE => self.ephemeral_storage_bytes = value,
            labels::RESOURCE_PODS => self.pods = value,
            other if value == 0 => {
                self.extended.remove(other);
            }
            other => {
                self.extended.insert(other.to_string(), value);
            }
        }
    }

    /// Builder form of [`Resources::set`].
    pub fn with(mut self, name: &str, value: i64) -> Resources {
        self.set(name, value);
        self
    }

    /// Every resource name with a non-zero amount, with that amount, core resources first.
    pub fn iter(&self) -> impl Iterator<Item = (&str, i64)> {
        [
            (labels::RESOURCE_CPU, self.cpu_millis),
            (labels::RESOURCE_MEMORY, self.memory_bytes),
            (
                labels::RESOURCE_EPHEMERAL_STORAGE,
                self.ephemeral_storage_bytes,
            ),
            (labels::RESOURCE_PODS, self.pods),
        ]
        .into_iter()
        .chain(self.extended.iter().map(|(name, v)| (name.as_str(), *v)))
        .filter(|(_, v)| *v != 0)
    }

    /// True when every amount is zero.
    pub fn is_zero(&self) -> bool {
        self.iter().next().is_none()
    }

    /// True when every resource requested here is available in `available`; a resource absent
    /// from `available` counts as zero there.
    pub fn fits(&self, available: &Resources) -> bool {
        self.iter().all(|(name, v)| v <= available.get(name))
    }

    /// The first resource (in [`Resources::iter`] order) that does not fit in `available`.
    pub fn first_shortfall<'a>(&'a self, available: &Resources) -> Option<&'a str> {
        self.iter()
            .find(|(name, v)| *v > available.get(name))
            .map(|(name, _)| name)
    }

    /// Element-wise difference floored at zero.
    pub fn saturating_sub(&self, other: &Resources) -> Resources {
        self.zip_with(other, |a, b| a.saturating_sub(b).max(0))
    }

    /// Element-wise maximum.
    pub fn max(&self, other: &Resources) -> Resources {
        self.zip_with(other, i64::max)
    }

    /// Every amount multiplied by `n` (saturating).
    pub fn times(&self, n: i64) -> Resources {
        self.zip_with(&Resources::default(), |a, _| a.saturating_mul(n))
    }

    fn zip_with(&self, other: &Resources, f: impl Fn(i64, i64) -> i64) -> Resources {
        let mut out = Resources {
            cpu_millis: f(self.cpu_millis, other.cpu_millis),
            memory_bytes: f(self.memory_bytes, other.memory_bytes),
            ephemeral_storage_bytes: f(self.ephemeral_storage_bytes, other.ephemeral_storage_bytes),
            pods: f(self.pods, other.pods),
            extended: BTreeMap::new(),
        };
        let names: std::collections::BTreeSet<&String> =
            self.extended.keys().chain(other.extended.keys()).collect();
        for name in names {
            let value = f(self.get(name), other.get(name));
            if value != 0 {
                out.extended.insert(name.clone(), value);
            }
        }
        out
    }
}

impl Add for &Resources {
    type Output = Resources;
    fn add(self, other: &Resources) -> Resources {
        self.zip_with(other, i64::saturating_add)
    }
}

impl Add for Resources {
    type Output = Resources;
    fn add(self, other: Resources) -> Resources {
        &self + &other
    }
}

impl AddAssign<&Resources> for Resources {
    fn add_assign(&mut self, other: &Resources) {
        *self = &*self + other;
    }
}

/// Plain (possibly negative) difference; use [`Resources::saturating_sub`] to floor at zero.
impl Sub for &Resources {
    type Output = Resources;
    fn sub(self, other: &Resources) -> Resources {
        self.zip_with(other, i64::saturating_sub)
    }
}

impl fmt::Display for Resources {
    /// `cpu=1500m, memory=2Gi, pods=1`: each non-zero resource in a readable unit.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for (name, value) in self.iter() {
            if !first {
                f.write_str(", ")?;
            }
            first = false;
            write!(f, "{name}={}", format_amount(name, value))?;
        }
        if first {
            f.write_str("none")?;
        }
        Ok(())
    }
}

/// `value` of resource `name` in the unit a person reads: cpu as cores or millicores, memory
/// and storage with a binary suffix, everything else as a count.
pub fn format_amount(name: &str, value: i64) -> String {
    match name {
        labels::RESOURCE_CPU => format_cpu(value),
        labels::RESOURCE_MEMORY | labels::RESOURCE_EPHEMERAL_STORAGE => format_bytes(value),
        _ => value.to_string(),
    }
}

/// `1500` → `1500m`, `2000` → `2`.
pub fn format_cpu(millis: i64) -> String {
    if millis % 1000 == 0 {
        (millis / 1000).to_string()
    } else {
        format!("{millis}m")
    }
}

/// Bytes with the largest binary suffix that divides them exactly: `2147483648` → `2Gi`.
pub fn format_bytes(bytes: i64) -> String {
    const SUFFIXES: [&str; 6] = ["Ki", "Mi", "Gi", "Ti", "Pi", "Ei"];
    let mut value = bytes;
    let mut suffix = "";
    for candidate in SUFFIXES {
        if value == 0 || value % 1024 != 0 {
            break;
        }
        value /= 1024;
        suffix = candidate;
    }
    format!("{value}{suffix}")
}

/// An init container's requests and whether it is a sidecar (`restartPolicy: Always`), which
/// keeps running beside the app containers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InitContainer {
    pub requests: Resources,
    #[serde(default)]
    pub restartable: bool,
}

/// A pod's effective requests by the Kubernetes rule: the larger of (app containers plus every
/// sidecar) and, for each ordinary init container, its own requests plus the sidecars started
/// before it; then the pod overhead; and one pod.
pub fn pod_requests(
    containers: &[Resources],
    init_containers: &[InitContainer],
    overhead: Option<&Resources>,
) -> Resources {
    let mut running = Resources::default();
    for container in containers {
        running += container;
    }
    let mut sidecars = Resources::default();
    let mut init_peak = Resources::default();
    for init in init_containers {
        if init.restartable {
            sidecars += &init.requests;
            // A sidecar starts while later init containers run; its start counts too.
            init_peak = init_peak.max(&sidecars);
        } else {
            init_peak = init_peak.max(&(&init.requests + &sidecars));
        }
    }
    running += &sidecars;
    let mut total = running.max(&init_peak);
    if let Some(overhead) = overhead {
        total += overhead;
    }
    total.pods = 1;
    total
}

#[cfg(test)]
mod tests;
