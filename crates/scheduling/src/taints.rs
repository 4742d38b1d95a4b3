//! Taints and tolerations with Kubernetes semantics.

use std::fmt;

use serde::{Deserialize, Serialize};

/// What a taint does to pods that do not tolerate it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum TaintEffect {
    NoSchedule,
    /// A soft preference: never blocks scheduling.
    PreferNoSchedule,
    NoExecute,
}

impl TaintEffect {
    /// Whether an untolerated taint with this effect keeps new pods off the node.
    pub fn blocks_scheduling(self) -> bool {
        !matches!(self, TaintEffect::PreferNoSchedule)
    }
}

/// A node taint.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Taint {
    pub key: String,
    #[serde(default)]
    pub value: String,
    pub effect: TaintEffect,
}

impl Taint {
    pub fn new(key: impl Into<String>, value: impl Into<String>, effect: TaintEffect) -> Taint {
        Taint {
            key: key.into(),
            value: value.into(),
            effect,
        }
    }
}

impl fmt::Display for Taint {
    /// `key=value:Effect`, or `key:Effect` without a value.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.value.is_empty() {
            write!(f, "{}:{:?}", self.key, self.effect)
        } else {
            write!(f, "{}={}:{:?}", self.key, self.value, self.effect)
        }
    }
}

/// How a toleration compares its value.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TolerationOperator {
    #[default]
    Equal,
    Exists,
}

/// A pod toleration.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Toleration {
    /// Empty with `Exists` tolerates every taint.
    #[serde(default)]
    pub key: String,
    #[serde(default)]
    pub operator: TolerationOperator,
    #[serde(default)]
    pub value: String,
    /// `None` matches every effect.
    #[serde(default)]
    pub effect: Option<TaintEffect>,
}

impl Toleration {
    /// Tolerates `key=value` with any effect.
    pub fn equal(key: impl Into<String>, value: impl Into<String>) -> Toleration {
        Toleration {
            key: key.into(),
            operator: TolerationOperator::Equal,
            value: value.into(),
            effect: None,
        }
    }

    /// Tolerates `key` with any value and effect.
    pub fn exists(key: impl Into<String>) -> Toleration {
        Toleration {
            key: key.into(),
            operator: TolerationOperator::Exists,
            ..Toleration::default()
        }
    }

    /// Tolerates everything.
    pub fn everything() -> Toleration {
        Toleration::exists("")
    }

    /// Narrows the toleration to one effect.
    pub fn with_effect(mut self, effect: TaintEffect) -> Toleration {
        self.effect = Some(effect);
        self
    }

    /// The Kubernetes rule: the effect (when set) and key (when set) must match; `Exists`
    /// ignores the value, `Equal` compares it.
    pub fn tolerates(&self, taint: &Taint) -> bool {
        if self.effect.is_some_and(|effect| effect != taint.effect) {
            return false;
        }
        if !self.key.is_empty() && self.key != taint.key {
            return false;
        }
        match self.operator {
            TolerationOperator::Exists => true,
            TolerationOperator::Equal => self.value == taint.value,
        }
    }
}

/// The first taint that keeps a pod with `tolerations` off the node: `NoSchedule` or
/// `NoExecute` and tolerated by none. `PreferNoSchedule` never blocks.
pub fn first_untolerated<'a>(taints: &'a [Taint], tolerations: &[Toleration]) -> Option<&'a Taint> {
    taints.iter().find(|taint| {
        taint.effect.blocks_scheduling() && !tolerations.iter().any(|t| t.tolerates(taint))
    })
}

/// Whether a pod with `tolerations` may be scheduled onto a node with `taints`.
pub fn tolerates_all(taints: &[Taint], tolerations: &[Toleration]) -> bool {
    first_untolerated(taints, tolerations).is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gpu_taint() -> Taint {
        Taint::new("nvidia.com/gpu", "true", TaintEffect::NoSchedule)
    }

    #[test]
    fn equal_toleration_needs_the_same_value() {
        assert!(Toleration::equal("nvidia.com/gpu", "true").tolerates(&gpu_taint()));
        assert!(!Toleration::equal("nvidia.com/gpu", "false").tolerates(&gpu_taint()));
        assert!(!Toleration::equal("other", "true").tolerates(&gpu_taint()));
    }

    #[test]
    fn exists_toleration_ignores_the_value() {
        assert!(Toleration::exists("nvidia.com/gpu").tolerates(&gpu_taint()));
        assert!(!Toleration::exists("other").tolerates(&gpu_taint()));
    }

    #[test]
    fn empty_key_with_exists_tolerates_every_taint() {
        assert!(Toleration::everything().tolerates(&gpu_taint()));
        assert!(Toleration::everything().tolerates(&Taint::new("a", "", TaintEffect::NoExecute)));
    }

    #[test]
    fn effect_must_match_when_given() {
        let no_execute_only =
            Toleration::exists("nvidia.com/gpu").with_effect(TaintEffect::NoExecute);
        assert!(!no_execute_only.tolerates(&gpu_taint()));
        let no_schedule = Toleration::exists("nvidia.com/gpu").with_effect(TaintEffect::NoSchedule);
        assert!(no_schedule.tolerates(&gpu_taint()));
    }

    #[test]
    fn prefer_no_schedule_never_blocks() {
        let soft = [Taint::new("soft", "x", TaintEffect::PreferNoSchedule)];
        assert!(tolerates_all(&soft, &[]));
    }

    #[test]
    fn no_schedule_and_no_execute_block_untolerated_pods() {
        let taints = [
            Taint::new("a", "1", TaintEffect::NoSchedule),
            Taint::new("b", "", TaintEffect::NoExecute),
        ];
        assert_eq!(first_untolerated(&taints, &[]), Some(&taints[0]));
        assert_eq!(
            first_untolerated(&taints, &[Toleration::equal("a", "1")]),
            Some(&taints[1])
        );
        assert!(tolerates_all(
            &taints,
            &[Toleration::equal("a", "1"), Toleration::exists("b")]
        ));
    }

    #[test]
    fn taints_display_like_kubectl() {
        assert_eq!(gpu_taint().to_string(), "nvidia.com/gpu=true:NoSchedule");
        assert_eq!(
            Taint::new("dedicated", "", TaintEffect::NoExecute).to_string(),
            "dedicated:NoExecute"
        );
    }
}
