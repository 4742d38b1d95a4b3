//! Why a pod could not be placed, in words that name what excluded each provisioner:
//! "provisioner gpu: taint nvidia.com/gpu=true:NoSchedule not tolerated; provisioner general:
//! no instance type has 900 vCPU".

use std::collections::BTreeMap;

use crate::labels;
use crate::requirements::Requirements;
use crate::resources::{format_bytes, format_cpu};
use crate::scheduler::place::{Reject, Stop, Target, within_limits};
use crate::scheduler::provisioners::{KeyClass, ProvModel, type_label};
use crate::scheduler::state::PackState;
use crate::scheduler::vector::{CPU, MEMORY, PODS};
use crate::taints::first_untolerated;

/// The reason attached to every pod of group `g` left unplaced.
pub(crate) fn reason(state: &PackState<'_>, g: usize, stop: Option<&Stop>) -> String {
    let model = state.model;
    let group = &model.groups[g];
    if let Some(invalid) = &group.invalid {
        return invalid.clone();
    }
    let level = &group.levels[state.level[g]];
    if level.terms.is_empty() {
        return "its required node affinity terms are empty, which matches no node".to_string();
    }
    let mut parts = Vec::new();
    let describe = |id: usize| state.topology.get(id).definition.to_string();
    let refusals: &[Option<Reject>] = match stop {
        Some(Stop::AwaitingAffinity(id)) => {
            parts.push(format!(
                "{}: no matching pod runs or is planned",
                describe(*id)
            ));
            &[]
        }
        Some(Stop::Topology(id)) => {
            parts.push(format!("{} cannot be met", describe(*id)));
            &[]
        }
        Some(Stop::NoNode(refusals)) => refusals,
        None => &[],
    };
    if parts.is_empty() {
        for (i, p) in model.provs.iter().enumerate() {
            let why = provisioner_reason(state, g, i, refusals.get(i).and_then(Option::as_ref));
            parts.push(format!("provisioner {}: {why}", p.name));
        }
        if model.provs.is_empty() {
            parts.push("no provisioner can launch a node".to_string());
        }
        if let Some(summary) = existing_summary(state, g) {
            parts.push(summary);
        }
    }
    parts.join("; ")
}

fn provisioner_reason(
    state: &PackState<'_>,
    g: usize,
    prov: usize,
    refusal: Option<&Reject>,
) -> String {
    let model = state.model;
    let group = &model.groups[g];
    let p = &model.provs[prov];
    let pod = &model.pods[group.rep];
    if let Some(taint) = first_untolerated(&p.taints, &pod.placement.tolerations) {
        return format!("taint {taint} not tolerated");
    }
    if p.types.is_empty() {
        return if p.all_types == 0 {
            "no instance types are available to it".to_string()
        } else if !p.crowded_out.is_empty() {
            format!(
                "its daemonsets alone do not fit on any of the {} instance types that meet its requirements",
                p.crowded_out.len()
            )
        } else {
            format!(
                "none of its {} instance types meets its requirements with an available offering",
                p.all_types
            )
        };
    }
    let level = &group.levels[state.level[g]];
    let mut first_failure = None;
    let mut usable = None;
    for term in &level.terms {
        match model.base_template(prov, term) {
            Ok(template) => {
                usable = Some(template);
                break;
            }
            Err(_) => {
                if first_failure.is_none() {
                    first_failure = Some(requirement_reason(p, term));
                }
            }
        }
    }
    let Some((_, types)) = usable else {
        return first_failure.unwrap_or_else(|| "requirements do not match".to_string());
    };
    let fitting: Vec<usize> = types
        .iter()
        .copied()
        .filter(|&t| group.req.fits(&p.types[t].alloc))
        .collect();
    if fitting.is_empty() {
        return resource_reason(state, p, &types, g);
    }
    if let Some(headroom) = state.headroom(prov)
        && !fitting
            .iter()
            .any(|&t| within_limits(p, &p.types[t].capacity, &headroom))
    {
        return limits_reason(state, p, prov);
    }
    match refusal {
        Some(Reject::Topology(Some(id))) => {
            format!("{} cannot be met", state.topology.get(*id).definition)
        }
        Some(Reject::Topology(None)) => {
            "topology constraints cannot be met on a new node".to_string()
        }
        Some(Reject::Limits) => limits_reason(state, p, prov),
        Some(Reject::Requirements) => "requirements do not match".to_string(),
        Some(Reject::HostPort) => "host port conflict".to_string(),
        _ => "no room on a new node under its constraints".to_string(),
    }
}

/// Which key of `term` the provisioner cannot meet, and how.
fn requirement_reason(p: &ProvModel, term: &Requirements) -> String {
    let reqs = p.reqs.intersect(term);
    if let Err(key) = p.keys_satisfiable(&reqs, term.iter().map(|(k, _)| k)) {
        let wanted = term.get_or_any(key);
        return match p.key_class(key) {
            KeyClass::Fixed(value) => {
                format!(
                    "incompatible requirements: pod needs {key} {wanted}, its nodes get {key}={value}"
                )
            }
            KeyClass::Undefined => format!(
                "incompatible requirements: pod needs {key} {wanted}, a label its nodes do not have"
            ),
            KeyClass::Hostname => format!(
                "incompatible requirements: pod needs {key} {wanted}, a new node's name is not known in advance"
            ),
            _ => format!(
                "incompatible requirements: pod needs {key} {wanted}, provisioner allows {key} {}",
                p.reqs.get_or_any(key)
            ),
        };
    }
    for (key, set) in term.iter() {
        if matches!(p.key_class(key), KeyClass::TypeLabel)
            && !p.types.iter().any(|t| set.allows(t.label(key)))
        {
            if p.crowded_out.iter().any(|t| set.allows(type_label(t, key))) {
                return format!("instance types with {key} {set} cannot hold its daemonsets");
            }
            return format!("no instance type has {key} {set}");
        }
    }
    if p.types.iter().any(|t| p.type_labels_allowed(t, &reqs)) {
        return format!(
            "no offering in zones {} with capacity type {}",
            reqs.get_or_any(labels::ZONE),
            reqs.get_or_any(labels::CAPACITY_TYPE)
        );
    }
    format!("no instance type meets {term}")
}

fn resource_reason(state: &PackState<'_>, p: &ProvModel, types: &[usize], g: usize) -> String {
    let model = state.model;
    let group = &model.groups[g];
    for d in 0..model.dims.len() {
        let need = group.req.0[d];
        let best = types
            .iter()
            .map(|&t| p.types[t].alloc.0[d])
            .max()
            .unwrap_or(0);
        if need <= best {
            continue;
        }
        let amount = match d {
            CPU => format!("{} vCPU", format_cpu(need)),
            MEMORY => format!("{} memory", format_bytes(need)),
            PODS => "room for another pod".to_string(),
            2 => format!("{} ephemeral storage", format_bytes(need)),
            _ => format!("{need} {}", model.dims.name(d)),
        };
        let raw_best = types
            .iter()
            .map(|&t| p.types[t].alloc.0[d] + model.dims.vector(&p.types[t].overhead).0[d])
            .max()
            .unwrap_or(0);
        return if need <= raw_best {
            format!("no instance type has {amount} beside its daemonsets")
        } else {
            format!("no instance type has {amount}")
        };
    }
    format!("no instance type fits {} at once", group.requests)
}

fn limits_reason(state: &PackState<'_>, p: &ProvModel, prov: usize) -> String {
    let headroom = state.headroom(prov).unwrap_or_default();
    let exhausted: Vec<String> = p
        .limits
        .iter()
        .filter(|(name, _)| {
            headroom.get(name)
                < p.types
                    .iter()
                    .map(|t| t.capacity.get(name))
                    .min()
                    .unwrap_or(0)
                    .max(1)
        })
        .map(|(name, limit)| format!("{name} {}", crate::resources::format_amount(name, *limit)))
        .collect();
    if exhausted.is_empty() {
        "limits: no instance type fits in what its limits leave".to_string()
    } else {
        format!("limits: {} reached", exhausted.join(", "))
    }
}

/// "existing nodes: 2 without room, 1 host port conflict".
fn existing_summary(state: &PackState<'_>, g: usize) -> Option<String> {
    let model = state.model;
    if model.existing.is_empty() {
        return None;
    }
    let group = &model.groups[g];
    let target = Target {
        rules: Vec::new(),
        cap: i64::MAX,
    };
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for node in state.nodes.iter().take(model.existing.len()) {
        let label = match state.evaluate(node, group, state.level[g], &target, 1) {
            Ok(_) => "topology rules",
            Err(Reject::Room) => "without room",
            Err(Reject::HostPort) => "host port conflict",
            Err(Reject::Taint) => "taint not tolerated",
            Err(Reject::Requirements) => "requirements not met",
            Err(Reject::Cordoned) => "cordoned",
            Err(Reject::Topology(_)) => "topology rules",
            Err(Reject::Limits | Reject::NoType(_)) => "other",
        };
        *counts.entry(label).or_insert(0) += 1;
    }
    let text: Vec<String> = counts
        .iter()
        .map(|(label, n)| format!("{n} {label}"))
        .collect();
    Some(format!("existing nodes: {}", text.join(", ")))
}
