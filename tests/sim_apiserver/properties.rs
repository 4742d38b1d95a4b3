//! Properties of the pure pieces: selectors and patches, over generated inputs.

use std::collections::BTreeMap;

use nodewright::sim::apiserver::patch::{merge_patch, strategic_merge};
use nodewright::sim::apiserver::selectors::LabelSelector;
use proptest::prelude::*;
use serde_json::{Value, json};

fn labels() -> impl Strategy<Value = BTreeMap<String, String>> {
    prop::collection::btree_map("[abc]", "[xyz]", 0..4)
}

fn expression() -> impl Strategy<Value = Value> {
    let operators = prop::sample::select(vec!["In", "NotIn", "Exists", "DoesNotExist"]);
    ("[abc]", operators, prop::collection::vec("[xyz]", 1..3)).prop_map(
        |(key, operator, values)| match operator {
            "Exists" | "DoesNotExist" => json!({"key": key, "operator": operator}),
            _ => json!({"key": key, "operator": operator, "values": values}),
        },
    )
}

fn object_with(labels: &BTreeMap<String, String>) -> Value {
    json!({"metadata": {"labels": labels}})
}

/// What a matchExpressions requirement means, written out independently of the server.
fn expected(expression: &Value, labels: &BTreeMap<String, String>) -> bool {
    let key = expression["key"].as_str().unwrap_or_default();
    let values: Vec<&str> = expression["values"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let found = labels.get(key).map(String::as_str);
    match expression["operator"].as_str() {
        Some("In") => found.is_some_and(|value| values.contains(&value)),
        Some("NotIn") => found.is_none_or(|value| !values.contains(&value)),
        Some("Exists") => found.is_some(),
        _ => found.is_none(),
    }
}

proptest! {
    #[test]
    fn label_selectors_match_as_their_expressions_say_in_both_spellings(
        expressions in prop::collection::vec(expression(), 0..4),
        labels in labels(),
    ) {
        let selector = LabelSelector::from_object(&json!({"matchExpressions": expressions}))
            .expect("well-formed expressions");
        let reparsed = LabelSelector::parse(&selector.to_query()).expect("its own query parses");
        let object = object_with(&labels);
        let wanted = expressions.iter().all(|expression| expected(expression, &labels));
        prop_assert_eq!(selector.matches(&object), wanted);
        prop_assert_eq!(reparsed.matches(&object), wanted);
    }

    #[test]
    fn merge_patch_is_idempotent_and_null_removes(
        document in prop::collection::btree_map("[abcd]", 0..5i64, 0..4),
        patch in prop::collection::btree_map("[abcd]", prop::option::of(0..5i64), 0..4),
    ) {
        let mut once = json!(document);
        merge_patch(&mut once, &json!(patch));
        let mut twice = once.clone();
        merge_patch(&mut twice, &json!(patch));
        prop_assert_eq!(&once, &twice);
        for (key, value) in &patch {
            let wanted = value.map(|v| json!(v));
            prop_assert_eq!(once.get(key), wanted.as_ref());
        }
    }

    #[test]
    fn strategic_merge_keeps_one_container_per_name_in_order(
        existing in prop::collection::btree_set("[a-e]", 0..4),
        patched in prop::collection::btree_set("[c-h]", 0..4),
    ) {
        let container = |name: &String, image: &str| json!({"name": name, "image": image});
        let mut pod = json!({"spec": {"containers":
            existing.iter().map(|name| container(name, "old")).collect::<Vec<_>>()}});
        let patch = json!({"spec": {"containers":
            patched.iter().map(|name| container(name, "new")).collect::<Vec<_>>()}});
        strategic_merge(&mut pod, &patch).expect("a valid patch");
        let result: Vec<(String, String)> = pod["spec"]["containers"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| (c["name"].as_str().unwrap_or_default().into(), c["image"].as_str().unwrap_or_default().into()))
            .collect();
        let mut wanted: Vec<(String, String)> = existing
            .iter()
            .map(|name| (name.clone(), if patched.contains(name) { "new" } else { "old" }.to_string()))
            .collect();
        wanted.extend(patched.iter().filter(|name| !existing.contains(*name)).map(|name| (name.clone(), "new".to_string())));
        prop_assert_eq!(result, wanted);
    }
}
