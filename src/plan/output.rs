//! Printing a plan: the JSON contract of DESIGN.md §5, or a table for people.

use std::fmt::Write;

use nodewright_scheduling::Plan;
use nodewright_scheduling::instance_type::CapacityType;

use super::PlanReport;

/// Candidate types shown per node in the table before "(+N more)".
const CANDIDATES_SHOWN: usize = 4;
/// Pod names shown per node in the table before "(+N more)".
const PODS_SHOWN: usize = 3;

/// The plan as one JSON object (field names are a contract: add, never rename).
pub fn json(report: &PlanReport) -> Result<String, serde_json::Error> {
    serde_json::to_string_pretty(&report.plan)
}

/// The plan as a table: new nodes, pods on existing nodes, unschedulable pods, then $/h per
/// provisioner, the total and the lower bound.
pub fn table(report: &PlanReport) -> String {
    let plan = &report.plan;
    let mut out = String::new();
    if plan.nodes.is_empty() {
        out.push_str("No new nodes.\n");
    } else {
        let rows: Vec<[String; 7]> = plan
            .nodes
            .iter()
            .map(|node| {
                [
                    node.provisioner.clone(),
                    node.instance_type.clone(),
                    node.zone.clone(),
                    capacity_type(node.capacity_type).to_string(),
                    price(
                        plan,
                        node.price_per_hour,
                        report.spot_estimated && node.capacity_type == CapacityType::Spot,
                    ),
                    node.pods.len().to_string(),
                    abbreviate(&node.instance_types, CANDIDATES_SHOWN),
                ]
            })
            .collect();
        write_table(
            &mut out,
            [
                "PROVISIONER",
                "INSTANCE TYPE",
                "ZONE",
                "CAPACITY",
                "$/HOUR",
                "PODS",
                "CANDIDATES",
            ],
            &rows,
        );
    }
    if !plan.existing.is_empty() {
        out.push('\n');
        let rows: Vec<[String; 3]> = plan
            .existing
            .iter()
            .map(|e| {
                [
                    e.node.clone(),
                    e.pods.len().to_string(),
                    abbreviate(&e.pods, PODS_SHOWN),
                ]
            })
            .collect();
        write_table(&mut out, ["EXISTING NODE", "PODS", "POD NAMES"], &rows);
    }
    if !plan.unschedulable.is_empty() {
        out.push('\n');
        let rows: Vec<[String; 2]> = plan
            .unschedulable
            .iter()
            .map(|u| [u.pod.clone(), u.reason.clone()])
            .collect();
        write_table(&mut out, ["UNSCHEDULABLE POD", "REASON"], &rows);
    }
    out.push('\n');
    if plan.prices_known {
        for (provisioner, per_hour) in plan.price_by_provisioner() {
            let _ = writeln!(out, "provisioner {provisioner}: ${per_hour:.4}/hour");
        }
        let _ = write!(
            out,
            "total: ${:.4}/hour for {} new node(s) in {}",
            plan.total_price_per_hour,
            plan.nodes.len(),
            report.region
        );
        match (plan.lower_bound_per_hour, plan.cost_ratio) {
            (Some(bound), Some(ratio)) => {
                let _ = writeln!(out, "; lower bound ${bound:.4}/hour ({ratio:.3}× of it)");
            }
            _ => out.push('\n'),
        }
    } else {
        let _ = writeln!(
            out,
            "total: {} new node(s) in {}; prices unknown",
            plan.nodes.len(),
            report.region
        );
    }
    if let Some(note) = &report.price_note {
        let _ = writeln!(out, "note: {note}");
    }
    out
}

fn capacity_type(capacity_type: CapacityType) -> &'static str {
    match capacity_type {
        CapacityType::Spot => "spot",
        CapacityType::OnDemand => "on-demand",
    }
}

fn price(plan: &Plan, per_hour: f64, estimated: bool) -> String {
    match (plan.prices_known, estimated) {
        (false, _) => "-".to_string(),
        (true, false) => format!("{per_hour:.4}"),
        (true, true) => format!("~{per_hour:.4} est."),
    }
}

fn abbreviate(items: &[String], shown: usize) -> String {
    let mut text = items
        .iter()
        .take(shown)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if items.len() > shown {
        let _ = write!(text, " (+{} more)", items.len() - shown);
    }
    text
}

/// Left-aligned columns separated by two spaces; the last column is not padded.
fn write_table<const N: usize>(out: &mut String, header: [&str; N], rows: &[[String; N]]) {
    let mut widths = header.map(|h| h.chars().count());
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut line = |cells: Vec<&str>| {
        let last = cells.len() - 1;
        for (i, cell) in cells.iter().enumerate() {
            if i == last {
                out.push_str(cell);
            } else {
                let _ = write!(out, "{cell:<width$}  ", width = widths[i]);
            }
        }
        out.push('\n');
    };
    line(header.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
}
