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

/// A type without GPUs, accelerators or local NVMe has no such label, so `DoesNotExist`
/// selects it, as in Karpenter.
#[test]
fn does_not_exist_on_instance_labels_selects_the_types_without_them() {
    use nodewright_scheduling::labels;
    use nodewright_scheduling::requirements::Operator;

    let types = us_east_1_types();
    let absent_keys = [
        labels::INSTANCE_GPU_COUNT,
        labels::INSTANCE_GPU_NAME,
        labels::INSTANCE_GPU_MANUFACTURER,
        labels::INSTANCE_GPU_MEMORY,
        labels::INSTANCE_ACCELERATOR_NAME,
        labels::INSTANCE_ACCELERATOR_MANUFACTURER,
        labels::INSTANCE_ACCELERATOR_COUNT,
        labels::INSTANCE_LOCAL_NVME,
    ];
    for key in absent_keys {
        assert!(
            types.iter().any(|t| t.labels.contains_key(key)),
            "the catalog has types with {key}"
        );
        let in_pod = cluster()
            .pods(
                pod("web")
                    .cpu("1")
                    .requires(key, Operator::DoesNotExist, &[])
                    .times(3),
            )
            .provisioner(provisioner("default").with_types(&types))
            .plan();
        let in_provisioner = cluster()
            .pods(pod("web").cpu("1").times(3))
            .provisioner(
                provisioner("default")
                    .requires(key, Operator::DoesNotExist, &[])
                    .with_types(&types),
            )
            .plan();
        for plan in [in_pod, in_provisioner] {
            assert!(plan.unschedulable.is_empty(), "{key}: {plan:#?}");
            assert!(!plan.nodes.is_empty());
            for node in &plan.nodes {
                // The machine says so too, so that a launch never picks a type with it.
                assert!(
                    node.requirements
                        .iter()
                        .any(|r| r.key == key && r.operator == Operator::DoesNotExist),
                    "{key}: {:?}",
                    node.requirements
                );
                for name in &node.instance_types {
                    let t = types.iter().find(|t| &t.name == name).expect("from input");
                    assert!(!t.labels.contains_key(key), "{name} has {key}");
                }
            }
        }
    }
}

#[test]
fn does_not_exist_on_gpu_count_with_only_gpu_types_names_the_key() {
    use nodewright_scheduling::labels;
    use nodewright_scheduling::requirements::Operator;

    let gpu_types: Vec<_> = us_east_1_types()
        .into_iter()
        .filter(|t| t.labels.contains_key(labels::INSTANCE_GPU_COUNT))
        .collect();
    let plan = cluster()
        .pods([pod("web")
            .cpu("1")
            .requires(labels::INSTANCE_GPU_COUNT, Operator::DoesNotExist, &[])
            .build()])
        .provisioner(provisioner("default").with_types(&gpu_types))
        .plan();
    assert!(plan.nodes.is_empty());
    assert_eq!(
        plan.unschedulable[0].reason,
        "provisioner default: no instance type has karpenter.k8s.aws/instance-gpu-count \
         DoesNotExist"
    );
}
