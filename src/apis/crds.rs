//! The CustomResourceDefinitions as generated from the Rust types, and their YAML: what
//! `nodewright crds` prints and what `crds/` holds, one file per CRD.
//!
//! After changing a type, refresh `crds/` with
//! `UPDATE_CRDS=1 cargo test -p nodewright --test apis crds_directory_is_up_to_date`;
//! without `UPDATE_CRDS` that test fails while `crds/` is stale.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

use super::machine::Machine;
use super::node_template::AwsNodeTemplate;
use super::provisioner::Provisioner;

/// Every CRD nodewright serves, ordered by file name.
pub fn crds() -> Vec<CustomResourceDefinition> {
    let mut crds = vec![AwsNodeTemplate::crd(), Machine::crd(), Provisioner::crd()];
    crds.sort_by_key(file_name);
    crds
}

/// `<group>_<plural>.yaml`, the name of the CRD's file in `crds/` (Karpenter's convention).
pub fn file_name(crd: &CustomResourceDefinition) -> String {
    format!("{}_{}.yaml", crd.spec.group, crd.spec.names.plural)
}

/// One CRD as a YAML document.
pub fn to_yaml(crd: &CustomResourceDefinition) -> Result<String, serde_saphyr::SerializeError> {
    serde_saphyr::to_string(crd)
}

/// Each CRD's file name and YAML, in [`crds`] order.
pub fn crd_files() -> Result<Vec<(String, String)>, serde_saphyr::SerializeError> {
    crds()
        .iter()
        .map(|crd| Ok((file_name(crd), to_yaml(crd)?)))
        .collect()
}

/// Every CRD as one multi-document YAML stream, in [`crds`] order.
pub fn crds_yaml() -> Result<String, serde_saphyr::SerializeError> {
    serde_saphyr::to_string_multiple(&crds())
}
