use super::*;

fn cluster() -> ClusterInfo {
    ClusterInfo {
        name: "my-cluster".into(),
        endpoint: "https://ABC.gr7.us-east-1.eks.amazonaws.com".into(),
        ca_bundle: Some("Q0EtREFUQQ==".into()),
    }
}

fn taint(key: &str, value: Option<&str>, effect: &str) -> Taint {
    Taint {
        key: key.into(),
        value: value.map(str::to_string),
        effect: effect.into(),
        time_added: None,
    }
}

fn node() -> NodeSettings {
    NodeSettings {
        labels: [
            ("team", "ml"),
            ("karpenter.sh/provisioner-name", "default"),
            ("node-restriction.kubernetes.io/secret", "x"),
            ("kubernetes.io/arch", "amd64"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect(),
        taints: vec![taint("dedicated", Some("gpu"), "NoSchedule")],
        startup_taints: vec![taint("example.com/init", None, "NoExecute")],
        kubelet: KubeletSettings {
            cluster_dns: vec!["10.100.0.10".into()],
            max_pods: Some(110),
            system_reserved: [("cpu".to_string(), "100m".to_string())].into(),
            eviction_hard: [("memory.available".to_string(), "5%".to_string())].into(),
            ..Default::default()
        },
    }
}

#[test]
fn al2_bootstrap_passes_cluster_labels_taints_and_kubelet_settings() {
    let script = bootstrap_script(&cluster(), &node());
    assert!(script.starts_with("#!/bin/bash -xe\n"));
    assert!(script.contains(
        "/etc/eks/bootstrap.sh 'my-cluster' --apiserver-endpoint 'https://ABC.gr7.us-east-1.eks.amazonaws.com' --b64-cluster-ca 'Q0EtREFUQQ=='"
    ));
    assert!(script.contains("--dns-cluster-ip '10.100.0.10'"));
    assert!(script.contains("--use-max-pods false"));
    let extra = script
        .split("--kubelet-extra-args '")
        .nth(1)
        .and_then(|rest| rest.split('\'').next())
        .unwrap_or_default();
    assert!(extra.contains(
        "--node-labels=karpenter.sh/provisioner-name=default,kubernetes.io/arch=amd64,team=ml"
    ));
    assert!(
        !extra.contains("node-restriction"),
        "kubelet refuses labels in the node-restriction domain: {extra}"
    );
    assert!(
        extra
            .contains("--register-with-taints=dedicated=gpu:NoSchedule,example.com/init:NoExecute")
    );
    assert!(extra.contains("--max-pods=110"));
    assert!(extra.contains("--system-reserved=cpu=100m"));
    assert!(extra.contains("--eviction-hard=memory.available<5%"));
}

#[test]
fn without_max_pods_bootstrap_keeps_its_eni_based_default() {
    let mut settings = node();
    settings.kubelet.max_pods = None;
    let script = bootstrap_script(&cluster(), &settings);
    assert!(!script.contains("--use-max-pods"));
    assert!(!script.contains("--max-pods"));
}

#[test]
fn quotes_in_values_cannot_break_out_of_the_shell_string() {
    let mut info = cluster();
    info.name = "it's".into();
    let script = bootstrap_script(&info, &NodeSettings::default());
    assert!(script.contains(r"/etc/eks/bootstrap.sh 'it'\''s'"));
}

#[test]
fn al2_user_data_is_mime_with_the_bootstrap_last() {
    let data = render(AmiFamily::Al2, &cluster(), &node(), None)
        .unwrap_or_default()
        .unwrap_or_default();
    assert!(
        data.starts_with("MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"//\"\n")
    );
    assert!(data.ends_with("--//--\n"));
    assert_eq!(data.matches("\n--//\n").count(), 1);
    let parts = mime_parts(&data).unwrap_or_default();
    assert_eq!(parts.len(), 1);
    assert!(parts[0].body.contains("/etc/eks/bootstrap.sh"));
}

#[test]
fn custom_mime_parts_run_before_the_bootstrap() {
    let custom = "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"BOUNDARY\"\r\n\r\n--BOUNDARY\r\nContent-Type: text/x-shellscript; charset=\"us-ascii\"\r\n\r\n#!/bin/bash\necho custom-one\n--BOUNDARY\r\nContent-Type: text/cloud-config\r\n\r\n#cloud-config\nruncmd: [echo two]\n--BOUNDARY--\r\n";
    let merged =
        merge_mime(Some(custom), &bootstrap_script(&cluster(), &node())).unwrap_or_default();
    let parts = mime_parts(&merged).unwrap_or_default();
    assert_eq!(parts.len(), 3);
    assert!(parts[0].body.contains("echo custom-one"));
    assert_eq!(
        header_value(&parts[1].headers, "content-type"),
        Some("text/cloud-config")
    );
    assert!(parts[2].body.contains("/etc/eks/bootstrap.sh"));
}

#[test]
fn a_bare_custom_script_becomes_its_own_part() {
    let merged =
        merge_mime(Some("#!/bin/bash\necho hi\n"), "#!/bin/bash\nbootstrap\n").unwrap_or_default();
    let parts = mime_parts(&merged).unwrap_or_default();
    assert_eq!(parts.len(), 2);
    assert_eq!(parts[0].body.trim_end(), "#!/bin/bash\necho hi");
    assert_eq!(parts[1].body.trim_end(), "#!/bin/bash\nbootstrap");
}

#[test]
fn a_part_containing_the_default_boundary_gets_another_boundary() {
    let merged = merge_mime(Some("#!/bin/bash\necho --//\n"), "#!/bin/bash\nbootstrap\n")
        .unwrap_or_default();
    assert!(merged.contains("boundary=\"//nodewright-1\""));
    assert_eq!(mime_parts(&merged).map(|p| p.len()), Ok(2));
}

#[test]
fn multipart_without_a_boundary_is_refused() {
    let custom = "Content-Type: multipart/mixed\n\n--x\n\nbody\n--x--\n";
    assert!(matches!(
        merge_mime(Some(custom), "#!/bin/bash\n"),
        Err(UserDataError::InvalidMime(_))
    ));
}

#[test]
fn bottlerocket_settings_carry_cluster_labels_and_taints() {
    let toml = bottlerocket_toml(&cluster(), &node(), None).unwrap_or_default();
    let doc: DocumentMut = toml.parse().unwrap_or_default();
    let k8s = &doc["settings"]["kubernetes"];
    assert_eq!(k8s["cluster-name"].as_str(), Some("my-cluster"));
    assert_eq!(
        k8s["api-server"].as_str(),
        Some("https://ABC.gr7.us-east-1.eks.amazonaws.com")
    );
    assert_eq!(k8s["cluster-certificate"].as_str(), Some("Q0EtREFUQQ=="));
    assert_eq!(k8s["max-pods"].as_integer(), Some(110));
    assert_eq!(k8s["node-labels"]["team"].as_str(), Some("ml"));
    assert!(
        k8s["node-labels"]
            .get("node-restriction.kubernetes.io/secret")
            .is_none()
    );
    let gpu = k8s["node-taints"]["dedicated"].as_array().map(|a| {
        a.iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect::<Vec<_>>()
    });
    assert_eq!(gpu, Some(vec!["gpu:NoSchedule".to_string()]));
    assert_eq!(k8s["system-reserved"]["cpu"].as_str(), Some("100m"));
}

#[test]
fn bottlerocket_merge_keeps_user_settings_and_overrides_cluster_ones() {
    let custom = "# my settings\n[settings.kubernetes]\ncluster-name = \"wrong\"\nallowed-unsafe-sysctls = [\"net.core.somaxconn\"]\n\n[settings.kubernetes.node-labels]\nowner = \"me\"\n\n[settings.host-containers.admin]\nenabled = true\n";
    let toml = bottlerocket_toml(&cluster(), &node(), Some(custom)).unwrap_or_default();
    assert!(toml.starts_with("# my settings"), "layout kept: {toml}");
    let doc: DocumentMut = toml.parse().unwrap_or_default();
    let k8s = &doc["settings"]["kubernetes"];
    assert_eq!(k8s["cluster-name"].as_str(), Some("my-cluster"));
    assert!(k8s["allowed-unsafe-sysctls"].is_array());
    assert_eq!(k8s["node-labels"]["owner"].as_str(), Some("me"));
    assert_eq!(k8s["node-labels"]["team"].as_str(), Some("ml"));
    assert_eq!(
        doc["settings"]["host-containers"]["admin"]["enabled"].as_bool(),
        Some(true)
    );
}

#[test]
fn bottlerocket_user_data_that_is_not_toml_is_refused() {
    assert!(matches!(
        bottlerocket_toml(&cluster(), &node(), Some("[settings\nbroken")),
        Err(UserDataError::InvalidToml(_))
    ));
    assert!(matches!(
        bottlerocket_toml(&cluster(), &node(), Some("settings = 3\n")),
        Err(UserDataError::NotATable(_))
    ));
}

#[test]
fn custom_family_passes_user_data_through() {
    let data = render(
        AmiFamily::Custom,
        &cluster(),
        &node(),
        Some("anything at all"),
    );
    assert_eq!(data, Ok(Some("anything at all".to_string())));
    assert_eq!(
        render(AmiFamily::Custom, &cluster(), &node(), None),
        Ok(None)
    );
}

#[test]
fn kubelet_label_rules_follow_the_node_restriction_policy() {
    assert!(kubelet_may_set("team"));
    assert!(kubelet_may_set("karpenter.sh/capacity-type"));
    assert!(kubelet_may_set("node.kubernetes.io/instance-type"));
    assert!(kubelet_may_set("topology.kubernetes.io/zone"));
    assert!(kubelet_may_set("kubelet.kubernetes.io/anything"));
    assert!(!kubelet_may_set("node-restriction.kubernetes.io/x"));
    assert!(!kubelet_may_set("kubernetes.io/custom"));
    assert!(!kubelet_may_set("example.k8s.io/x"));
}
