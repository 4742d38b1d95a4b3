//! `nodewright plan`: the offline what-if. Provisioners, node templates, pods, nodes and
//! daemonsets in; the launch plan, its cost and its lower bound out.

pub mod input;
