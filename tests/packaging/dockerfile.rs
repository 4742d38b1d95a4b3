//! A lint of the Dockerfile (there is no Docker engine here to build it): base images pinned,
//! never `latest`; the runtime stage runs as a non-root user; the build toolchain is the one
//! Cargo.toml asks for; the exposed ports are the controller's.

use crate::repo;

/// One instruction, continuation lines joined, comments dropped.
#[derive(Debug)]
struct Instruction {
    keyword: String,
    arguments: String,
}

fn instructions() -> Vec<Instruction> {
    let text = std::fs::read_to_string(repo("Dockerfile")).expect("Dockerfile");
    let mut joined = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') || (trimmed.is_empty() && current.is_empty()) {
            continue;
        }
        match trimmed.strip_suffix('\\') {
            Some(start) => {
                current.push_str(start);
                current.push(' ');
            }
            None => {
                current.push_str(trimmed);
                joined.push(std::mem::take(&mut current));
            }
        }
    }
    joined
        .into_iter()
        .filter(|line| !line.is_empty())
        .map(|line| {
            let (keyword, arguments) = line.split_once(' ').unwrap_or((line.as_str(), ""));
            Instruction {
                keyword: keyword.to_ascii_uppercase(),
                arguments: arguments.trim().to_string(),
            }
        })
        .collect()
}

/// `FROM [--platform=…] IMAGE [AS NAME]` → (image, stage name).
fn from_line(arguments: &str) -> (String, Option<String>) {
    let words: Vec<&str> = arguments
        .split_whitespace()
        .filter(|w| !w.starts_with("--"))
        .collect();
    let image = words.first().expect("FROM names an image").to_string();
    let stage = match words.as_slice() {
        [_, keyword, name] if keyword.eq_ignore_ascii_case("as") => Some(name.to_string()),
        _ => None,
    };
    (image, stage)
}

/// Why `image` is not pinned, if it is not: a digest, or a tag that names a version.
fn unpinned(image: &str) -> Option<String> {
    if let Some((_, digest)) = image.split_once("@sha256:") {
        let hex = digest.len() == 64 && digest.chars().all(|c| c.is_ascii_hexdigit());
        return (!hex).then(|| format!("{image}: a malformed sha256 digest"));
    }
    let last = image.rsplit('/').next().unwrap_or(image);
    let Some((_, tag)) = last.split_once(':') else {
        return Some(format!("{image}: no tag means latest"));
    };
    if tag == "latest" {
        return Some(format!("{image}: latest"));
    }
    let versioned = tag
        .split(|c: char| !(c.is_ascii_digit() || c == '.'))
        .any(|part| part.contains('.') && part.split('.').all(|n| !n.is_empty()));
    (!versioned).then(|| format!("{image}: tag {tag:?} names no version; pin a version or digest"))
}

#[test]
fn base_images_are_pinned_and_never_latest() {
    let mut stages: Vec<String> = Vec::new();
    let mut external = 0;
    for instruction in instructions().iter().filter(|i| i.keyword == "FROM") {
        let (image, stage) = from_line(&instruction.arguments);
        if !stages.contains(&image) {
            external += 1;
            assert_eq!(unpinned(&image), None);
        }
        stages.extend(stage);
    }
    assert!(external >= 2, "a build image and a runtime image");
}

#[test]
fn the_lint_refuses_floating_images() {
    for image in [
        "rust",
        "rust:latest",
        "gcr.io/distroless/cc-debian12:nonroot",
        "debian:bookworm-slim",
        "localhost:5000/app",
        "gcr.io/distroless/cc-debian12@sha256:1234",
    ] {
        assert!(unpinned(image).is_some(), "{image} should be refused");
    }
    for image in [
        "docker.io/library/rust:1.95.0-slim-bookworm",
        "debian:12.11-slim",
        "localhost:5000/app:1.2.3",
        "gcr.io/distroless/cc-debian12:nonroot@sha256:9dac0a79194e45a7da0158a9c6da57b217585af0786db3845d1f0ec1a0dd182f",
    ] {
        assert_eq!(unpinned(image), None);
    }
}

#[test]
fn the_runtime_stage_runs_as_a_non_root_user() {
    let instructions = instructions();
    let last_from = instructions
        .iter()
        .rposition(|i| i.keyword == "FROM")
        .expect("a FROM");
    let user = instructions[last_from..]
        .iter()
        .rev()
        .find(|i| i.keyword == "USER")
        .map(|i| i.arguments.clone())
        .expect("the runtime stage sets USER (else the container runs as root)");
    let name = user.split(':').next().unwrap_or_default();
    assert!(
        name != "root" && name != "0" && !name.is_empty(),
        "USER {user} is root"
    );
    // Numeric, so Kubernetes can verify runAsNonRoot without reading /etc/passwd.
    assert!(name.parse::<u32>().is_ok(), "USER {user} is not numeric");
    let entrypoint = instructions[last_from..]
        .iter()
        .rev()
        .find(|i| i.keyword == "ENTRYPOINT")
        .expect("an ENTRYPOINT");
    let argv: Vec<String> =
        serde_json::from_str(&entrypoint.arguments).expect("ENTRYPOINT in exec form (no shell)");
    assert_eq!(argv.get(1).map(String::as_str), Some("controller"));
}

#[test]
fn the_build_uses_the_toolchain_cargo_asks_for_and_exposes_the_controllers_ports() {
    let manifest = std::fs::read_to_string(repo("Cargo.toml")).expect("Cargo.toml");
    let wanted = manifest
        .lines()
        .find_map(|l| l.trim().strip_prefix("rust-version = "))
        .map(|v| v.trim_matches('"').to_string())
        .expect("rust-version");
    let instructions = instructions();
    let rust_image = instructions
        .iter()
        .filter(|i| i.keyword == "FROM")
        .map(|i| from_line(&i.arguments).0)
        .find(|image| {
            image
                .rsplit('/')
                .next()
                .is_some_and(|n| n.starts_with("rust:"))
        })
        .expect("a rust build image");
    let tag = rust_image.split(':').nth(1).unwrap_or_default();
    assert!(
        tag.starts_with(&format!("{wanted}.")) || tag.starts_with(&format!("{wanted}-")),
        "{rust_image} is not Rust {wanted} (Cargo.toml's rust-version)"
    );
    let exposed: Vec<u16> = instructions
        .iter()
        .filter(|i| i.keyword == "EXPOSE")
        .flat_map(|i| {
            i.arguments
                .split_whitespace()
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .map(|p| p.trim_end_matches("/tcp").parse().expect("a port"))
        .collect();
    let defaults = nodewright::settings::Settings::for_cluster("c");
    assert_eq!(exposed, [defaults.metrics_port, defaults.health_probe_port]);
    let ignored = std::fs::read_to_string(repo(".dockerignore")).expect(".dockerignore");
    for entry in ["target", ".git"] {
        assert!(
            ignored.lines().any(|l| l.trim() == entry),
            ".dockerignore keeps {entry} out of the build context"
        );
    }
}

/// Target files a manifest declares (`[[bench]]`, `[[test]]`, `[[example]]`), relative to the
/// repository: Cargo refuses to load a manifest whose declared target file is missing.
fn declared_targets(crate_dir: &str) -> Vec<String> {
    let manifest = std::fs::read_to_string(repo(crate_dir).join("Cargo.toml")).expect("manifest");
    let mut targets = Vec::new();
    let mut section: Option<(&str, Option<String>, Option<String>)> = None;
    let mut finish = |section: Option<(&str, Option<String>, Option<String>)>| {
        if let Some((dir, name, path)) = section {
            let name = name.expect("a declared target has a name");
            let path = path.unwrap_or_else(|| format!("{dir}/{name}.rs"));
            let joined = if crate_dir.is_empty() {
                path
            } else {
                format!("{crate_dir}/{path}")
            };
            targets.push(joined);
        }
    };
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            finish(section.take());
            section = match line {
                "[[bench]]" => Some(("benches", None, None)),
                "[[test]]" => Some(("tests", None, None)),
                "[[example]]" => Some(("examples", None, None)),
                _ => None,
            };
        } else if let Some((_, name, path)) = &mut section {
            let value = |key: &str| {
                line.strip_prefix(key)
                    .map(str::trim_start)
                    .and_then(|rest| rest.strip_prefix('='))
                    .map(|v| v.trim().trim_matches('"').to_string())
            };
            if let Some(v) = value("name") {
                *name = Some(v);
            }
            if let Some(v) = value("path") {
                *path = Some(v);
            }
        }
    }
    finish(section);
    targets
}

#[test]
fn the_image_build_sees_every_target_the_manifests_declare() {
    let dockerfile = std::fs::read_to_string(repo("Dockerfile")).expect("Dockerfile");
    let ignored: Vec<String> = std::fs::read_to_string(repo(".dockerignore"))
        .expect(".dockerignore")
        .lines()
        .map(|l| l.trim().trim_end_matches('/').to_string())
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    let copied: Vec<String> = instructions()
        .into_iter()
        .filter(|i| i.keyword == "COPY" && !i.arguments.starts_with("--from"))
        .flat_map(|i| {
            let words: Vec<String> = i.arguments.split_whitespace().map(String::from).collect();
            words[..words.len().saturating_sub(1)].to_vec()
        })
        .collect();
    let mut checked = 0;
    for crate_dir in ["", "crates/scheduling"] {
        for target in declared_targets(crate_dir) {
            checked += 1;
            let top = target.split('/').next().unwrap_or_default();
            let in_context = !ignored.iter().any(|pattern| pattern == top);
            let copied = copied
                .iter()
                .any(|source| target.starts_with(&format!("{source}/")) || *source == target);
            assert!(
                dockerfile.contains(&target) && copied && in_context,
                "Cargo.toml declares {target}: the Dockerfile must stub it for the dependency layer \
                 and copy it (not .dockerignored) for the real build, or `docker build` fails to \
                 load the manifest"
            );
        }
    }
    assert!(checked >= 1, "the scheduling crate's benchmark is declared");
}
