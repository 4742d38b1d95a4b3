use proptest::prelude::*;

use super::*;

fn set(op: Operator, values: &[&str]) -> ValueSet {
    let values: Vec<String> = values.iter().map(|v| v.to_string()).collect();
    ValueSet::from_operator(op, &values)
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn in_allows_only_its_values_and_not_absence() {
    let s = set(Operator::In, &["a", "b"]);
    assert!(s.allows(Some("a")));
    assert!(!s.allows(Some("c")));
    assert!(!s.allows(None));
}

#[test]
fn not_in_allows_other_values_and_absence() {
    let s = set(Operator::NotIn, &["a"]);
    assert!(!s.allows(Some("a")));
    assert!(s.allows(Some("b")));
    assert!(s.allows(None));
}

#[test]
fn exists_and_does_not_exist_are_about_presence() {
    assert!(set(Operator::Exists, &[]).allows(Some("x")));
    assert!(!set(Operator::Exists, &[]).allows(None));
    assert!(set(Operator::DoesNotExist, &[]).allows(None));
    assert!(!set(Operator::DoesNotExist, &[]).allows(Some("x")));
}

#[test]
fn gt_and_lt_compare_integers_strictly() {
    let gt = set(Operator::Gt, &["4"]);
    assert!(gt.allows(Some("5")));
    assert!(!gt.allows(Some("4")));
    assert!(!gt.allows(Some("abc")));
    assert!(!gt.allows(None));
    let lt = set(Operator::Lt, &["4"]);
    assert!(lt.allows(Some("3")));
    assert!(lt.allows(Some("-10")));
    assert!(!lt.allows(Some("4")));
}

#[test]
fn unparsable_gt_allows_nothing() {
    let s = set(Operator::Gt, &["four"]);
    assert!(s.is_empty());
    assert!(!s.allows(Some("5")));
}

#[test]
fn gt_and_lt_with_no_integer_between_them_are_empty() {
    let both = set(Operator::Gt, &["4"]).intersect(&set(Operator::Lt, &["5"]));
    assert!(both.is_empty());
    let room = set(Operator::Gt, &["4"]).intersect(&set(Operator::Lt, &["6"]));
    assert!(!room.is_empty());
    assert!(room.allows(Some("5")));
    assert!(!room.allows(Some("6")));
}

#[test]
fn bounds_filter_finite_values_on_intersection() {
    let s = set(Operator::In, &["2", "8", "x"]).intersect(&set(Operator::Gt, &["4"]));
    assert_eq!(s, set(Operator::In, &["8"]));
    let none = set(Operator::In, &["2"]).intersect(&set(Operator::Gt, &["4"]));
    assert!(none.is_empty());
}

#[test]
fn in_intersect_not_in_removes_the_excluded_values() {
    let s = set(Operator::In, &["a", "b"]).intersect(&set(Operator::NotIn, &["a"]));
    assert_eq!(s, set(Operator::In, &["b"]));
    let empty = set(Operator::In, &["a"]).intersect(&set(Operator::NotIn, &["a"]));
    assert!(empty.is_empty());
}

#[test]
fn does_not_exist_intersects_with_not_in_but_not_with_in_or_exists() {
    let dne = set(Operator::DoesNotExist, &[]);
    assert!(!dne.intersect(&set(Operator::NotIn, &["a"])).is_empty());
    assert!(dne.intersect(&set(Operator::In, &["a"])).is_empty());
    assert!(dne.intersect(&set(Operator::Exists, &[])).is_empty());
    assert!(dne.intersect(&set(Operator::Gt, &["1"])).is_empty());
}

#[test]
fn not_in_and_not_in_union_their_exclusions() {
    let s = set(Operator::NotIn, &["a"]).intersect(&set(Operator::NotIn, &["b"]));
    assert!(!s.allows(Some("a")));
    assert!(!s.allows(Some("b")));
    assert!(s.allows(Some("c")));
    assert!(s.allows(None));
}

#[test]
fn exists_with_not_in_keeps_the_key_required() {
    let s = set(Operator::Exists, &[]).intersect(&set(Operator::NotIn, &["a"]));
    assert!(!s.allows(None));
    assert!(s.allows(Some("b")));
    let back = Requirements::from_node_selector(&s.to_node_selector("k"));
    assert_eq!(back.get("k"), Some(&s));
}

#[test]
fn unlisted_values_are_allowed_only_by_open_sets() {
    assert!(set(Operator::NotIn, &["a"]).allows_unlisted());
    assert!(set(Operator::Exists, &[]).allows_unlisted());
    assert!(!set(Operator::In, &["a"]).allows_unlisted());
    assert!(!set(Operator::Gt, &["1"]).allows_unlisted());
}

#[test]
fn beta_keys_are_normalised() {
    let r = Requirements::from_node_selector(&[NodeSelectorRequirement::new(
        "failure-domain.beta.kubernetes.io/zone",
        Operator::In,
        ["us-east-1a"],
    )]);
    assert!(r.get(labels::ZONE).is_some());
    assert!(r.matches(&labels(&[(labels::ZONE, "us-east-1a")])));
    let node = normalize_labels(&labels(&[("beta.kubernetes.io/arch", "arm64")]));
    assert_eq!(node.get(labels::ARCH).map(String::as_str), Some("arm64"));
}

#[test]
fn requirements_match_labels_clause_by_clause() {
    let r = Requirements::from_node_selector(&[
        NodeSelectorRequirement::new("team", Operator::In, ["a"]),
        NodeSelectorRequirement::new("gpu", Operator::DoesNotExist, Vec::<String>::new()),
    ]);
    assert!(r.matches(&labels(&[("team", "a")])));
    assert!(!r.matches(&labels(&[("team", "a"), ("gpu", "true")])));
    assert_eq!(r.first_mismatch(&labels(&[("team", "b")])), Some("team"));
}

#[test]
fn conflict_names_the_key() {
    let a = Requirements::from_node_selector(&[NodeSelectorRequirement::new(
        labels::CAPACITY_TYPE,
        Operator::In,
        ["spot"],
    )]);
    let b = Requirements::from_node_selector(&[NodeSelectorRequirement::new(
        labels::CAPACITY_TYPE,
        Operator::In,
        ["on-demand"],
    )]);
    assert_eq!(a.conflict(&b), Some(labels::CAPACITY_TYPE));
    assert!(!a.is_compatible(&b));
    assert!(a.is_compatible(&Requirements::new()));
}

#[test]
fn display_reads_like_a_selector() {
    assert_eq!(set(Operator::In, &["a", "b"]).to_string(), "In [a, b]");
    assert_eq!(set(Operator::DoesNotExist, &[]).to_string(), "DoesNotExist");
    assert_eq!(ValueSet::any().to_string(), "any");
    assert_eq!(
        set(Operator::Gt, &["4"])
            .intersect(&set(Operator::Lt, &["9"]))
            .to_string(),
        "Gt 4 and Lt 9"
    );
}

fn arb_set() -> impl Strategy<Value = ValueSet> {
    let values = prop::collection::vec(prop::sample::select(vec!["1", "3", "5", "a", "b"]), 0..3);
    (
        prop::sample::select(vec![
            Operator::In,
            Operator::NotIn,
            Operator::Exists,
            Operator::DoesNotExist,
            Operator::Gt,
            Operator::Lt,
        ]),
        values,
    )
        .prop_map(|(op, values)| {
            let values: Vec<String> = values.into_iter().map(String::from).collect();
            ValueSet::from_operator(op, &values)
        })
}

fn arb_value() -> impl Strategy<Value = Option<String>> {
    prop::option::of(prop::sample::select(vec![
        "0", "1", "2", "3", "4", "5", "6", "a", "b", "c",
    ]))
    .prop_map(|v| v.map(String::from))
}

proptest! {
    /// Intersection means "allowed by both", value by value.
    #[test]
    fn intersection_agrees_with_both_sets(a in arb_set(), b in arb_set(), v in arb_value()) {
        let both = a.intersect(&b);
        let v = v.as_deref();
        prop_assert_eq!(both.allows(v), a.allows(v) && b.allows(v));
    }

    /// An empty set allows nothing; a set that allows something is not empty.
    #[test]
    fn emptiness_is_consistent_with_membership(a in arb_set(), b in arb_set(), v in arb_value()) {
        let both = a.intersect(&b);
        if both.is_empty() {
            prop_assert!(!both.allows(v.as_deref()));
        }
    }

    /// Writing a set back as node selector requirements and reading it again changes nothing.
    #[test]
    fn node_selector_round_trip_preserves_meaning(a in arb_set(), v in arb_value()) {
        let back = Requirements::from_node_selector(&a.to_node_selector("k")).get_or_any("k");
        prop_assert_eq!(back.allows(v.as_deref()), a.allows(v.as_deref()));
    }
}
