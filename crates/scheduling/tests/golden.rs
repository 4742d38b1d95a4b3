//! Golden scenarios on the real catalog and prices.

mod common;

use common::real::us_east_1_types;
use common::*;
use nodewright_scheduling::instance_type::CapacityType;

#[test]
fn seed_tutorial_on_the_real_catalog_launches_one_spot_node() {
    let plan = cluster()
        .pods(pod("inflate").cpu("1").times(4))
        .provisioner(
            provisioner("default")
                .spot_only()
                .limit_cpu(1000)
                .with_types(&us_east_1_types()),
        )
        .plan();
    assert_eq!(plan.nodes.len(), 1);
    assert_eq!(plan.nodes[0].capacity_type, CapacityType::Spot);
    assert_eq!(plan.nodes[0].pods.len(), 4);
}
