//! The custom resources nodewright serves (Karpenter's API) and their validation.

/// Every CRD as one multi-document YAML stream, in a stable order.
pub fn crds_yaml() -> anyhow::Result<String> {
    Ok(String::new())
}
