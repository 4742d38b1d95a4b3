//! Renders charts/nodewright with hack/chart-render: Go's text/template with the sprig
//! functions and Helm's own, built once per test run from Debian's Go packages (no network).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// The namespace and release name every render uses, as `helm install nodewright -n nodewright`.
pub const NAMESPACE: &str = "nodewright";
pub const RELEASE: &str = "nodewright";
pub const CLUSTER: &str = "my-cluster";

pub fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// What `.ci/run` installs; said when `go` or the packages are missing.
const HOW: &str = "the chart tests render with Go's text/template and sprig: \
    `apt-get install -y golang-go golang-github-masterminds-sprig-dev golang-github-ghodss-yaml-dev` \
    (what .ci/run installs)";

/// Builds hack/chart-render once; its path.
fn renderer() -> &'static Path {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| {
        let binary = Path::new(env!("CARGO_TARGET_TMPDIR")).join("chart-render");
        // GOPATH mode against Debian's source packages: nothing is downloaded.
        let output = Command::new("go")
            .args(["build", "-o"])
            .arg(&binary)
            .arg("./hack/chart-render")
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env("GO111MODULE", "off")
            .env("GOPATH", "/usr/share/gocode")
            .env("GOPROXY", "off")
            .env("GOFLAGS", "")
            .env("GOTOOLCHAIN", "local")
            .output()
            .unwrap_or_else(|e| panic!("cannot run `go` ({e}): {HOW}"));
        assert!(
            output.status.success(),
            "building hack/chart-render failed: {}\n{HOW}",
            String::from_utf8_lossy(&output.stderr)
        );
        binary
    })
}

/// Renders the chart with `--set` overrides (`key=value`, Helm's syntax), `settings.clusterName`
/// first so later overrides may replace it. `Err` carries the renderer's message (a `required`
/// or template error), as `helm template` would print it.
pub fn try_render(sets: &[&str]) -> Result<String, String> {
    try_render_with(None, sets)
}

/// [`try_render`] with a values file (`-f`) before the `--set`s.
fn try_render_with(values: Option<&Path>, sets: &[&str]) -> Result<String, String> {
    let mut command = Command::new(renderer());
    command.args(["--namespace", NAMESPACE, "--release", RELEASE]);
    if let Some(file) = values {
        command.arg("-f").arg(file);
    }
    for set in sets {
        command.args(["--set", set]);
    }
    let output = command
        .arg(repo("charts/nodewright"))
        .output()
        .unwrap_or_else(|e| panic!("cannot run the chart renderer: {e}"));
    if output.status.success() {
        Ok(String::from_utf8(output.stdout).expect("UTF-8 manifests"))
    } else {
        Err(String::from_utf8_lossy(&output.stderr).into_owned())
    }
}

/// The chart's NOTES.txt, rendered.
pub fn notes(sets: &[&str]) -> String {
    let output = Command::new(renderer())
        .args(["--namespace", NAMESPACE, "--release", RELEASE, "--notes"])
        .args(sets.iter().flat_map(|set| ["--set", set]))
        .arg(repo("charts/nodewright"))
        .output()
        .unwrap_or_else(|e| panic!("cannot run the chart renderer: {e}"));
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("UTF-8 notes")
}

/// The rendered objects of one install.
pub struct Rendered {
    pub objects: Vec<Value>,
}

/// Renders with `settings.clusterName=my-cluster` plus `sets`; panics on a template error.
pub fn render(sets: &[&str]) -> Rendered {
    let cluster = format!("settings.clusterName={CLUSTER}");
    let all: Vec<&str> = std::iter::once(cluster.as_str())
        .chain(sets.iter().copied())
        .collect();
    render_exactly(&all)
}

/// Renders with `values` (a values.yaml a user would pass with `-f`) and the cluster name.
pub fn render_values(values: &str) -> Rendered {
    let file = std::env::temp_dir().join(format!(
        "nodewright-chart-values-{}-{}.yaml",
        std::process::id(),
        VALUES_FILES.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    std::fs::write(&file, values).expect("the values file is written");
    let cluster = format!("settings.clusterName={CLUSTER}");
    let text = try_render_with(Some(&file), &[&cluster])
        .unwrap_or_else(|e| panic!("the chart renders with {values}: {e}"));
    let _ = std::fs::remove_file(&file);
    let objects: Vec<Value> = serde_saphyr::from_multiple(&text)
        .unwrap_or_else(|e| panic!("the rendered manifests are YAML: {e}\n{text}"));
    Rendered {
        objects: objects.into_iter().filter(|o| !o.is_null()).collect(),
    }
}

static VALUES_FILES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Renders with exactly `sets` (an install line's own `--set`s); panics on a template error.
pub fn render_exactly(all: &[&str]) -> Rendered {
    let text = try_render(all).unwrap_or_else(|e| panic!("the chart renders with {all:?}: {e}"));
    let objects: Vec<Value> = serde_saphyr::from_multiple(&text)
        .unwrap_or_else(|e| panic!("the rendered manifests are YAML: {e}\n{text}"));
    Rendered {
        objects: objects.into_iter().filter(|o| !o.is_null()).collect(),
    }
}

impl Rendered {
    pub fn kinds(&self) -> Vec<String> {
        let mut kinds: Vec<String> = self.objects.iter().map(kind_of).collect();
        kinds.sort();
        kinds
    }

    pub fn all_of(&self, kind: &str) -> Vec<&Value> {
        self.objects.iter().filter(|o| kind_of(o) == kind).collect()
    }

    /// The one object of `kind`.
    pub fn one(&self, kind: &str) -> &Value {
        let found = self.all_of(kind);
        assert_eq!(found.len(), 1, "exactly one {kind}, got {}", found.len());
        found[0]
    }

    /// The one object of `kind` as its k8s-openapi type (see [`typed`]).
    pub fn typed<K: DeserializeOwned + Serialize>(&self, kind: &str) -> K {
        typed(self.one(kind))
    }
}

pub fn kind_of(object: &Value) -> String {
    object["kind"].as_str().unwrap_or_default().to_string()
}

/// `object` as `K`, and proof that `K` knows every field: serializing it back must give the
/// same JSON, so a misspelt or misplaced field (which serde would skip) fails here.
pub fn typed<K: DeserializeOwned + Serialize>(object: &Value) -> K {
    let name = format!("{} {}", kind_of(object), object["metadata"]["name"]);
    let typed: K = serde_json::from_value(object.clone())
        .unwrap_or_else(|e| panic!("{name} does not deserialize: {e}"));
    let back = serde_json::to_value(&typed).expect("serializes");
    if let Some(difference) = first_difference(object, &back, String::new()) {
        panic!("{name}: {difference} (a field the Kubernetes API does not know?)");
    }
    typed
}

/// Where `rendered` and `typed` differ first, as a JSON path.
fn first_difference(rendered: &Value, typed: &Value, path: String) -> Option<String> {
    match (rendered, typed) {
        (Value::Object(a), Value::Object(b)) => {
            for (key, value) in a {
                let here = format!("{path}.{key}");
                match b.get(key) {
                    Some(other) => {
                        if let Some(found) = first_difference(value, other, here) {
                            return Some(found);
                        }
                    }
                    None => return Some(format!("{here} is dropped by the typed object")),
                }
            }
            b.keys()
                .find(|key| !a.contains_key(*key))
                .map(|key| format!("{path}.{key} appears only in the typed object"))
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => a
            .iter()
            .zip(b)
            .enumerate()
            .find_map(|(i, (x, y))| first_difference(x, y, format!("{path}[{i}]"))),
        _ if rendered == typed => None,
        _ => Some(format!("{path}: rendered {rendered} but typed {typed}")),
    }
}
