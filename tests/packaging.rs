//! What ships besides the binary and the chart: the controller's IAM policy
//! (docs/iam-policy.json), checked against the AWS calls in the source, and the Dockerfile.

use std::path::{Path, PathBuf};

#[path = "packaging/dockerfile.rs"]
mod dockerfile;
#[path = "packaging/iam.rs"]
mod iam;

pub fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}
