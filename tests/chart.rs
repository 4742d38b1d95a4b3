//! The Helm chart (charts/nodewright), rendered as `helm template` would by hack/chart-render —
//! Go's text/template with the sprig functions and Helm's own — and checked as a user installing
//! it would notice: objects the API server accepts, a pod that runs locked down and off the nodes
//! it manages, settings the controller parses, and RBAC that allows exactly what the controller
//! does (checked against its requests in an end-to-end run).

#[path = "chart/render.rs"]
mod render;

#[path = "chart/e2e.rs"]
mod e2e;
#[path = "chart/manifests.rs"]
mod manifests;
#[path = "chart/rbac.rs"]
mod rbac;
#[path = "chart/values.rs"]
mod values;
