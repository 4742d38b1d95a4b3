//! Reading the YAML (or JSON) a user hands us, at any size. serde-saphyr's default budget
//! refuses a stream of more than 1,024 documents or 250,000 nodes, about 6,000 pods of
//! `kubectl get pods -A -o yaml`. Documents, nodes, events and scalar bytes are bounded by the
//! text's own length anyway, so those limits grow with it; what the budget guards against that
//! length cannot (alias expansion, nesting depth) keeps its defaults.

use serde::de::DeserializeOwned;
use serde_saphyr::{Budget, Options};

/// The parser options for `text`: the default budget, with its size limits at least as large
/// as anything `text` can hold.
pub fn options_for(text: &str) -> Options {
    let mut budget = Budget::default();
    let length = text.len();
    budget.max_documents = budget.max_documents.max(length / 4 + 1);
    budget.max_nodes = budget.max_nodes.max(length + 1);
    budget.max_events = budget.max_events.max(length.saturating_mul(4) + 16);
    budget.max_total_scalar_bytes = budget.max_total_scalar_bytes.max(length);
    let mut options = Options::default();
    options.budget = Some(budget);
    options
}

/// Every document of a multi-document YAML (or JSON) text.
pub fn from_multiple<T: DeserializeOwned>(text: &str) -> Result<Vec<T>, serde_saphyr::Error> {
    serde_saphyr::from_multiple_with_options(text, options_for(text))
}
