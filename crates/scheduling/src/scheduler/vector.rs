//! Fixed-size resource vectors for the packing hot path.
//!
//! [`Resources`] keeps extended resources in a map, which is right for inputs and outputs but
//! slow inside a loop that runs millions of times. A batch only ever compares the resources its
//! pods and daemonsets request, so those names get a dimension each and everything else is
//! ignored.

use std::collections::BTreeSet;

use crate::labels;
use crate::resources::Resources;

/// cpu, memory, ephemeral storage, pods, then up to this many extended resources.
pub(crate) const MAX_DIMS: usize = 8;
const CORE_DIMS: usize = 4;
pub(crate) const CPU: usize = 0;
pub(crate) const MEMORY: usize = 1;
pub(crate) const PODS: usize = 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub(crate) struct ResVec(pub [i64; MAX_DIMS]);

impl ResVec {
    pub(crate) const ZERO: ResVec = ResVec([0; MAX_DIMS]);
    pub(crate) const UNBOUNDED: ResVec = ResVec([i64::MAX; MAX_DIMS]);

    pub(crate) fn fits(&self, room: &ResVec) -> bool {
        self.0.iter().zip(room.0.iter()).all(|(a, b)| a <= b)
    }

    pub(crate) fn add(&self, other: &ResVec) -> ResVec {
        self.zip(other, i64::saturating_add)
    }

    pub(crate) fn sub(&self, other: &ResVec) -> ResVec {
        self.zip(other, i64::saturating_sub)
    }

    pub(crate) fn times(&self, n: i64) -> ResVec {
        let mut out = *self;
        for v in &mut out.0 {
            *v = v.saturating_mul(n);
        }
        out
    }

    pub(crate) fn max(&self, other: &ResVec) -> ResVec {
        self.zip(other, i64::max)
    }

    pub(crate) fn min(&self, other: &ResVec) -> ResVec {
        self.zip(other, i64::min)
    }

    fn zip(&self, other: &ResVec, f: impl Fn(i64, i64) -> i64) -> ResVec {
        let mut out = ResVec::ZERO;
        for i in 0..MAX_DIMS {
            out.0[i] = f(self.0[i], other.0[i]);
        }
        out
    }

    /// How many copies of `self` fit in `room` (`i64::MAX` for an all-zero request).
    pub(crate) fn copies_in(&self, room: &ResVec) -> i64 {
        let mut best = i64::MAX;
        for i in 0..MAX_DIMS {
            let need = self.0[i];
            if need > 0 {
                let have = room.0[i];
                if have < need {
                    return 0;
                }
                best = best.min(have / need);
            }
        }
        best
    }
}

/// Which extended resource each dimension beyond the core four stands for.
#[derive(Debug, Clone, Default)]
pub(crate) struct Dims {
    extended: Vec<String>,
}

impl Dims {
    /// Dimensions for the extended resources named in `requests`; names past the limit are
    /// returned separately (pods asking for them cannot be placed).
    pub(crate) fn for_requests<'a>(
        requests: impl IntoIterator<Item = &'a Resources>,
    ) -> (Dims, BTreeSet<String>) {
        let mut names = BTreeSet::new();
        for r in requests {
            names.extend(r.extended.keys().cloned());
        }
        let mut extended: Vec<String> = names.into_iter().collect();
        let overflow = extended
            .split_off(extended.len().min(MAX_DIMS - CORE_DIMS))
            .into_iter()
            .collect();
        (Dims { extended }, overflow)
    }

    pub(crate) fn vector(&self, r: &Resources) -> ResVec {
        let mut v = ResVec::ZERO;
        v.0[CPU] = r.cpu_millis;
        v.0[MEMORY] = r.memory_bytes;
        v.0[2] = r.ephemeral_storage_bytes;
        v.0[PODS] = r.pods;
        for (i, name) in self.extended.iter().enumerate() {
            v.0[CORE_DIMS + i] = r.get(name);
        }
        v
    }

    pub(crate) fn resources(&self, v: &ResVec) -> Resources {
        let mut r = Resources {
            cpu_millis: v.0[CPU],
            memory_bytes: v.0[MEMORY],
            ephemeral_storage_bytes: v.0[2],
            pods: v.0[PODS],
            ..Resources::default()
        };
        for (i, name) in self.extended.iter().enumerate() {
            r.set(name, v.0[CORE_DIMS + i]);
        }
        r
    }

    /// The resource name of dimension `i`.
    pub(crate) fn name(&self, i: usize) -> &str {
        match i {
            CPU => labels::RESOURCE_CPU,
            MEMORY => labels::RESOURCE_MEMORY,
            2 => labels::RESOURCE_EPHEMERAL_STORAGE,
            PODS => labels::RESOURCE_PODS,
            _ => self.extended.get(i - CORE_DIMS).map_or("", String::as_str),
        }
    }

    /// Number of dimensions in use.
    pub(crate) fn len(&self) -> usize {
        CORE_DIMS + self.extended.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_in_takes_the_tightest_dimension() {
        let req = ResVec([1000, 2048, 0, 1, 0, 0, 0, 0]);
        let room = ResVec([4500, 4096, 0, 10, 0, 0, 0, 0]);
        assert_eq!(req.copies_in(&room), 2);
        assert_eq!(ResVec::ZERO.copies_in(&room), i64::MAX);
    }

    #[test]
    fn extended_resources_get_dimensions_in_name_order() {
        let a = Resources::default().with("b.com/x", 1);
        let b = Resources::default().with("a.com/y", 2);
        let (dims, overflow) = Dims::for_requests([&a, &b]);
        assert!(overflow.is_empty());
        assert_eq!(dims.name(4), "a.com/y");
        assert_eq!(dims.vector(&b).0[4], 2);
        assert_eq!(dims.resources(&dims.vector(&a)), a);
    }
}
