//! Node user data per AMI family.
//!
//! - AL2 and Ubuntu: a MIME multipart document whose last part runs `/etc/eks/bootstrap.sh` with
//!   the cluster's name, endpoint and CA, and `--kubelet-extra-args` carrying labels, taints,
//!   max-pods and the kubelet settings. A template's own user data (MIME, or a bare script)
//!   keeps its parts, which run first.
//! - Bottlerocket: TOML settings; nodewright's `settings.kubernetes` keys are merged into the
//!   template's TOML, keeping everything else the user wrote.
//! - Custom: the template's user data, untouched.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Taint;
use toml_edit::{Array, DocumentMut, Item, Table, TableLike, value};

use crate::cloudprovider::types::{AmiFamily, KubeletSettings, NodeSettings};

/// The cluster a node joins.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterInfo {
    pub name: String,
    /// The API server URL.
    pub endpoint: String,
    /// The cluster CA bundle, base64 (as EKS reports it); `None` lets bootstrap look it up.
    pub ca_bundle: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UserDataError {
    #[error("Bottlerocket user data is not valid TOML: {0}")]
    InvalidToml(String),
    #[error("Bottlerocket user data sets {0} to something other than a table")]
    NotATable(String),
    #[error("MIME user data: {0}")]
    InvalidMime(String),
}

/// The user data to launch with, as plain text (EC2 wants it base64-encoded), or `None`.
pub fn render(
    family: AmiFamily,
    cluster: &ClusterInfo,
    node: &NodeSettings,
    custom: Option<&str>,
) -> Result<Option<String>, UserDataError> {
    match family {
        AmiFamily::Al2 | AmiFamily::Ubuntu => {
            let script = bootstrap_script(cluster, node);
            merge_mime(custom, &script).map(Some)
        }
        AmiFamily::Bottlerocket => bottlerocket_toml(cluster, node, custom).map(Some),
        AmiFamily::Custom => Ok(custom.map(str::to_string)),
    }
}

/// Whether kubelet may set a label on its own node (`--node-labels`): kubelet refuses labels in
/// the kubernetes.io and k8s.io domains except its own well-known ones, and would not start.
pub fn kubelet_may_set(key: &str) -> bool {
    const ALLOWED: &[&str] = &[
        "kubernetes.io/arch",
        "kubernetes.io/os",
        "kubernetes.io/hostname",
        "node.kubernetes.io/instance-type",
        "topology.kubernetes.io/region",
        "topology.kubernetes.io/zone",
        "beta.kubernetes.io/arch",
        "beta.kubernetes.io/os",
        "beta.kubernetes.io/instance-type",
        "failure-domain.beta.kubernetes.io/region",
        "failure-domain.beta.kubernetes.io/zone",
    ];
    let Some((domain, _)) = key.split_once('/') else {
        return true;
    };
    let within = |parent: &str| domain == parent || domain.ends_with(&format!(".{parent}"));
    if !(within("kubernetes.io") || within("k8s.io")) {
        return true;
    }
    ALLOWED.contains(&key) || within("kubelet.kubernetes.io") || within("node.kubernetes.io")
}

fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

fn joined(map: &BTreeMap<String, String>, separator: char) -> String {
    map.iter()
        .map(|(k, v)| format!("{k}{separator}{v}"))
        .collect::<Vec<_>>()
        .join(",")
}

fn taint_flag(taint: &Taint) -> String {
    match taint.value.as_deref().filter(|v| !v.is_empty()) {
        Some(value) => format!("{}={}:{}", taint.key, value, taint.effect),
        None => format!("{}:{}", taint.key, taint.effect),
    }
}

fn node_labels(node: &NodeSettings) -> BTreeMap<String, String> {
    node.labels
        .iter()
        .filter(|(k, _)| kubelet_may_set(k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

fn kubelet_args(node: &NodeSettings) -> Vec<String> {
    let kubelet: &KubeletSettings = &node.kubelet;
    let mut args = Vec::new();
    let labels = node_labels(node);
    if !labels.is_empty() {
        args.push(format!("--node-labels={}", joined(&labels, '=')));
    }
    let taints: Vec<String> = node
        .taints
        .iter()
        .chain(&node.startup_taints)
        .map(taint_flag)
        .collect();
    if !taints.is_empty() {
        args.push(format!("--register-with-taints={}", taints.join(",")));
    }
    if let Some(max_pods) = kubelet.max_pods {
        args.push(format!("--max-pods={max_pods}"));
    }
    if let Some(per_core) = kubelet.pods_per_core {
        args.push(format!("--pods-per-core={per_core}"));
    }
    for (flag, map, separator) in [
        ("--system-reserved", &kubelet.system_reserved, '='),
        ("--kube-reserved", &kubelet.kube_reserved, '='),
        ("--eviction-hard", &kubelet.eviction_hard, '<'),
        ("--eviction-soft", &kubelet.eviction_soft, '<'),
        (
            "--eviction-soft-grace-period",
            &kubelet.eviction_soft_grace_period,
            '=',
        ),
    ] {
        if !map.is_empty() {
            args.push(format!("{flag}={}", joined(map, separator)));
        }
    }
    if let Some(seconds) = kubelet.eviction_max_pod_grace_period {
        args.push(format!("--eviction-max-pod-grace-period={seconds}"));
    }
    if let Some(high) = kubelet.image_gc_high_threshold_percent {
        args.push(format!("--image-gc-high-threshold={high}"));
    }
    if let Some(low) = kubelet.image_gc_low_threshold_percent {
        args.push(format!("--image-gc-low-threshold={low}"));
    }
    if let Some(quota) = kubelet.cpu_cfs_quota {
        args.push(format!("--cpu-cfs-quota={quota}"));
    }
    args
}

/// The AL2/Ubuntu bootstrap script.
pub fn bootstrap_script(cluster: &ClusterInfo, node: &NodeSettings) -> String {
    let kubelet = &node.kubelet;
    let mut command = format!(
        "/etc/eks/bootstrap.sh {} --apiserver-endpoint {}",
        shell_quote(&cluster.name),
        shell_quote(&cluster.endpoint)
    );
    if let Some(ca) = &cluster.ca_bundle {
        command.push_str(&format!(" --b64-cluster-ca {}", shell_quote(ca)));
    }
    let runtime = kubelet.container_runtime.as_deref().unwrap_or("containerd");
    command.push_str(&format!(
        " \\\n--container-runtime {}",
        shell_quote(runtime)
    ));
    if let Some(dns) = kubelet.cluster_dns.first() {
        command.push_str(&format!(" \\\n--dns-cluster-ip {}", shell_quote(dns)));
    }
    if kubelet.max_pods.is_some() {
        // Otherwise bootstrap.sh would compute max-pods from the ENI limits itself.
        command.push_str(" \\\n--use-max-pods false");
    }
    let args = kubelet_args(node);
    if !args.is_empty() {
        command.push_str(&format!(
            " \\\n--kubelet-extra-args {}",
            shell_quote(&args.join(" "))
        ));
    }
    format!(
        "#!/bin/bash -xe\nexec > >(tee /var/log/user-data.log|logger -t user-data -s 2>/dev/console) 2>&1\n{command}\n"
    )
}

/// One part of a MIME multipart document: its header lines and body.
#[derive(Debug, Clone, PartialEq, Eq)]
struct MimePart {
    headers: Vec<String>,
    body: String,
}

fn header_value<'a>(headers: &'a [String], name: &str) -> Option<&'a str> {
    headers.iter().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.trim().eq_ignore_ascii_case(name).then(|| value.trim())
    })
}

fn boundary_of(content_type: &str) -> Option<String> {
    content_type.split(';').find_map(|param| {
        let (key, value) = param.split_once('=')?;
        key.trim()
            .eq_ignore_ascii_case("boundary")
            .then(|| value.trim().trim_matches('"').to_string())
    })
}

/// Header lines up to the first blank line, and the rest.
fn split_headers(text: &str) -> (Vec<String>, String) {
    let mut headers = Vec::new();
    let mut lines = text.split('\n');
    for line in lines.by_ref() {
        if line.trim().is_empty() {
            break;
        }
        headers.push(line.to_string());
    }
    (headers, lines.collect::<Vec<_>>().join("\n"))
}

/// The parts of user data: a MIME multipart document's parts, or the whole text as one part.
fn mime_parts(user_data: &str) -> Result<Vec<MimePart>, UserDataError> {
    let text = user_data.replace("\r\n", "\n");
    let (headers, body) = split_headers(&text);
    let multipart = header_value(&headers, "Content-Type")
        .filter(|ct| ct.to_ascii_lowercase().starts_with("multipart/"));
    let Some(content_type) = multipart else {
        let kind = if text.starts_with("#cloud-config") {
            "text/cloud-config"
        } else {
            "text/x-shellscript"
        };
        return Ok(vec![MimePart {
            headers: vec![format!("Content-Type: {kind}; charset=\"us-ascii\"")],
            body: text,
        }]);
    };
    let boundary = boundary_of(content_type)
        .filter(|b| !b.is_empty())
        .ok_or_else(|| UserDataError::InvalidMime("multipart without a boundary".to_string()))?;
    let delimiter = format!("--{boundary}");
    let closing = format!("--{boundary}--");
    let mut parts = Vec::new();
    let mut current: Option<Vec<&str>> = None;
    for line in body.split('\n') {
        let trimmed = line.trim_end();
        if trimmed == delimiter || trimmed == closing {
            if let Some(lines) = current.take() {
                let (headers, body) = split_headers(&lines.join("\n"));
                parts.push(MimePart { headers, body });
            }
            if trimmed == closing {
                break;
            }
            current = Some(Vec::new());
        } else if let Some(lines) = current.as_mut() {
            lines.push(line);
        }
    }
    if parts.is_empty() {
        return Err(UserDataError::InvalidMime(format!(
            "no parts delimited by {delimiter}"
        )));
    }
    Ok(parts)
}

/// The template's parts (if any) followed by the bootstrap script, as one MIME document.
pub fn merge_mime(custom: Option<&str>, script: &str) -> Result<String, UserDataError> {
    let mut parts = match custom.filter(|c| !c.trim().is_empty()) {
        Some(custom) => mime_parts(custom)?,
        None => Vec::new(),
    };
    parts.push(MimePart {
        headers: vec!["Content-Type: text/x-shellscript; charset=\"us-ascii\"".to_string()],
        body: script.to_string(),
    });
    let mut boundary = "//".to_string();
    let mut attempt = 0;
    while parts
        .iter()
        .any(|p| p.body.contains(&format!("--{boundary}")))
    {
        attempt += 1;
        boundary = format!("//nodewright-{attempt}");
    }
    let mut out =
        format!("MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"{boundary}\"\n\n");
    for part in &parts {
        out.push_str(&format!("--{boundary}\n"));
        for header in &part.headers {
            out.push_str(header);
            out.push('\n');
        }
        out.push('\n');
        out.push_str(part.body.trim_end_matches('\n'));
        out.push('\n');
    }
    out.push_str(&format!("--{boundary}--\n"));
    Ok(out)
}

fn child_table<'a>(
    parent: &'a mut dyn TableLike,
    key: &str,
    path: &str,
) -> Result<&'a mut dyn TableLike, UserDataError> {
    if !parent.contains_key(key) {
        let mut table = Table::new();
        table.set_implicit(true);
        parent.insert(key, Item::Table(table));
    }
    parent
        .get_mut(key)
        .and_then(Item::as_table_like_mut)
        .ok_or_else(|| UserDataError::NotATable(path.to_string()))
}

fn merge_map(
    kubernetes: &mut dyn TableLike,
    key: &str,
    entries: impl IntoIterator<Item = (String, Item)>,
) -> Result<(), UserDataError> {
    let mut entries = entries.into_iter().peekable();
    if entries.peek().is_none() {
        return Ok(());
    }
    let table = child_table(kubernetes, key, &format!("settings.kubernetes.{key}"))?;
    for (k, v) in entries {
        table.insert(&k, v);
    }
    Ok(())
}

/// Bottlerocket settings TOML: the template's TOML with nodewright's cluster and node settings.
pub fn bottlerocket_toml(
    cluster: &ClusterInfo,
    node: &NodeSettings,
    custom: Option<&str>,
) -> Result<String, UserDataError> {
    let mut doc: DocumentMut = custom
        .unwrap_or_default()
        .parse()
        .map_err(|e: toml_edit::TomlError| UserDataError::InvalidToml(e.to_string()))?;
    let settings = child_table(doc.as_table_mut(), "settings", "settings")?;
    let kubernetes = child_table(settings, "kubernetes", "settings.kubernetes")?;
    kubernetes.insert("api-server", value(cluster.endpoint.as_str()));
    kubernetes.insert("cluster-name", value(cluster.name.as_str()));
    if let Some(ca) = &cluster.ca_bundle {
        kubernetes.insert("cluster-certificate", value(ca.as_str()));
    }
    let kubelet = &node.kubelet;
    if let Some(dns) = kubelet.cluster_dns.first() {
        kubernetes.insert("cluster-dns-ip", value(dns.as_str()));
    }
    if let Some(max_pods) = kubelet.max_pods {
        kubernetes.insert("max-pods", value(i64::from(max_pods)));
    }
    if let Some(high) = kubelet.image_gc_high_threshold_percent {
        kubernetes.insert("image-gc-high-threshold-percent", value(i64::from(high)));
    }
    if let Some(low) = kubelet.image_gc_low_threshold_percent {
        kubernetes.insert("image-gc-low-threshold-percent", value(i64::from(low)));
    }
    if let Some(quota) = kubelet.cpu_cfs_quota {
        kubernetes.insert("cpu-cfs-quota-enforced", value(quota));
    }
    let strings = |map: &BTreeMap<String, String>| -> Vec<(String, Item)> {
        map.iter()
            .map(|(k, v)| (k.clone(), value(v.as_str())))
            .collect()
    };
    merge_map(kubernetes, "node-labels", strings(&node_labels(node)))?;
    let mut taints: BTreeMap<String, Array> = BTreeMap::new();
    for taint in node.taints.iter().chain(&node.startup_taints) {
        let entry = format!(
            "{}:{}",
            taint.value.as_deref().unwrap_or_default(),
            taint.effect
        );
        taints.entry(taint.key.clone()).or_default().push(entry);
    }
    merge_map(
        kubernetes,
        "node-taints",
        taints.into_iter().map(|(k, v)| (k, value(v))),
    )?;
    merge_map(
        kubernetes,
        "system-reserved",
        strings(&kubelet.system_reserved),
    )?;
    merge_map(kubernetes, "kube-reserved", strings(&kubelet.kube_reserved))?;
    merge_map(kubernetes, "eviction-hard", strings(&kubelet.eviction_hard))?;
    Ok(doc.to_string())
}

#[cfg(test)]
mod tests;
