//! What a disruption decided: which nodes go, what (if anything) is launched first, and what
//! it saves. A value, so tests assert on it and the loop compares the decision it took with
//! the one it takes again before acting.

use nodewright_scheduling::plan::PlannedNode;

use super::candidates::Candidate;

/// Why nodes are disrupted (the `karpenter.sh/disruption-reason` annotation and metric label).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reason {
    Consolidation,
    Expiration,
    Drift,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Consolidation => "consolidation",
            Reason::Expiration => "expiration",
            Reason::Drift => "drift",
        }
    }
}

/// One disruption: launch `replacements` (and wait for them), then delete `candidates`.
#[derive(Debug, Clone, PartialEq)]
pub struct Command {
    pub reason: Reason,
    pub candidates: Vec<Candidate>,
    /// New nodes the candidates' pods need, cheapest instance type first.
    pub replacements: Vec<PlannedNode>,
    /// Why, in words (the drift found, the node's age).
    pub detail: String,
}

impl Command {
    /// `delete` or `replace` (the `action` metric label).
    pub fn action(&self) -> &'static str {
        if self.replacements.is_empty() {
            "delete"
        } else {
            "replace"
        }
    }

    /// $/h of the nodes that go.
    pub fn candidates_price(&self) -> f64 {
        self.candidates.iter().map(Candidate::price_or_zero).sum()
    }

    /// $/h of what is launched instead.
    pub fn replacements_price(&self) -> f64 {
        self.replacements.iter().map(|r| r.price_per_hour).sum()
    }

    /// $/h saved (negative when a replacement costs more, as expiry or drift may).
    pub fn savings(&self) -> f64 {
        self.candidates_price() - self.replacements_price()
    }

    pub fn node_names(&self) -> Vec<&str> {
        self.candidates.iter().map(|c| c.node.as_str()).collect()
    }

    /// Whether `again`, decided later, is still this decision: the same reason, the same
    /// nodes, and a replacement exactly when one was decided (its types may be re-ranked).
    pub fn still_holds(&self, again: &Command) -> bool {
        self.reason == again.reason
            && self.node_names() == again.node_names()
            && self.replacements.len() == again.replacements.len()
    }

    /// One line for the log and the Event, e.g. `Consolidating: replacing node a (c6a.2xlarge,
    /// $0.3060/h) with c6a.large ($0.0765/h), saves $0.2295/h`.
    pub fn describe(&self) -> String {
        let verb = match self.reason {
            Reason::Consolidation => "Consolidating",
            Reason::Expiration => "Expiring",
            Reason::Drift => "Drifted",
        };
        let nodes: Vec<String> = self
            .candidates
            .iter()
            .map(|c| match c.price_per_hour {
                Some(price) => format!("{} ({}, {})", c.node, c.instance_type, dollars(price)),
                None => format!("{} ({}, price unknown)", c.node, c.instance_type),
            })
            .collect();
        let noun = if nodes.len() == 1 { "node" } else { "nodes" };
        let nodes = nodes.join(", ");
        let detail = if self.detail.is_empty() {
            String::new()
        } else {
            format!(" ({})", self.detail)
        };
        let savings = self.savings();
        let saves = if savings > 0.0 {
            format!(", saves {}", dollars(savings))
        } else {
            String::new()
        };
        if self.replacements.is_empty() {
            return format!("{verb}: deleting {noun} {nodes}{detail}{saves}");
        }
        let with: Vec<String> = self
            .replacements
            .iter()
            .map(|r| format!("{} ({})", r.instance_type, dollars(r.price_per_hour)))
            .collect();
        format!(
            "{verb}: replacing {noun} {nodes} with {}{detail}{saves}",
            with.join(" + ")
        )
    }
}

/// `$0.1234/h`.
pub fn dollars(per_hour: f64) -> String {
    format!("${per_hour:.4}/h")
}
