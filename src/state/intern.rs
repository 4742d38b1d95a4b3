//! One shared copy of each distinct value the cache holds many times over: the pods of a
//! ReplicaSet carry the same labels, placement rules, node name and phase, so 30,000 cached
//! pods keep a few hundred copies instead of 30,000.

use std::collections::HashSet;
use std::hash::Hash;
use std::sync::Arc;

/// Hands out shared copies. Values nobody else holds any more are swept whenever the set has
/// doubled since the last sweep, so the cost stays proportional to what is in use.
#[derive(Debug)]
pub struct Interner<T: ?Sized> {
    values: HashSet<Arc<T>>,
    size_after_sweep: usize,
}

impl<T: ?Sized> Default for Interner<T> {
    fn default() -> Self {
        Interner {
            values: HashSet::new(),
            size_after_sweep: 0,
        }
    }
}

/// Below this many values a sweep is not worth its pass.
const SWEEP_FLOOR: usize = 512;

impl<T: ?Sized + Eq + Hash> Interner<T> {
    /// The shared copy of `value`, which becomes it when it is new.
    pub fn share(&mut self, value: Arc<T>) -> Arc<T> {
        if let Some(shared) = self.values.get(&*value) {
            return shared.clone();
        }
        self.sweep_when_grown();
        self.values.insert(value.clone());
        value
    }

    /// The shared copy of a borrowed value, allocated only when it is new.
    pub fn share_ref(&mut self, value: &T) -> Arc<T>
    where
        Arc<T>: for<'a> From<&'a T>,
    {
        if let Some(shared) = self.values.get(value) {
            return shared.clone();
        }
        self.share(Arc::from(value))
    }

    fn sweep_when_grown(&mut self) {
        if self.values.len() >= 2 * self.size_after_sweep.max(SWEEP_FLOOR) {
            self.values.retain(|value| Arc::strong_count(value) > 1);
            self.size_after_sweep = self.values.len();
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.values.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_values_share_one_copy() {
        let mut strings: Interner<str> = Interner::default();
        let a = strings.share_ref("default");
        let b = strings.share(Arc::from("default"));
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(strings.len(), 1);
    }

    #[test]
    fn values_nobody_holds_are_swept_as_the_set_grows() {
        let mut strings: Interner<str> = Interner::default();
        let kept = strings.share_ref("kept");
        for i in 0..10 * SWEEP_FLOOR {
            // Dropped at once: only the interner holds it.
            strings.share_ref(&format!("gone-{i}"));
        }
        assert!(strings.len() <= 2 * SWEEP_FLOOR, "{}", strings.len());
        assert!(Arc::ptr_eq(&kept, &strings.share_ref("kept")));
    }
}
