#!/usr/bin/env python3
"""Generate the embedded EC2 instance-type catalog from the data the `moto` package ships.

moto carries AWS's DescribeInstanceTypes records and per-zone DescribeInstanceTypeOfferings
results. This script keeps only the fields nodewright uses, in the same EC2 API (PascalCase)
shapes, so one parser reads both this catalog and `--catalog FILE` output of the AWS CLI.

Output (gzip, deterministic: sorted keys, no timestamp, no file name):
    {"Source": "...",
     "InstanceTypes": [DescribeInstanceTypes records, trimmed, sorted by name],
     "OfferingsByZone": {region: {zone: [instance type, ...]}}}

Run from the repository root:
    python3 hack/gen-catalog.py            # writes crates/scheduling/data/ec2-catalog.json.gz
    python3 hack/gen-catalog.py --check    # fails if the committed file is stale
"""

import argparse
import gzip
import json
import os
import sys

from generated import encode, write_or_check

OUTPUT = "crates/scheduling/data/ec2-catalog.json.gz"

# The subset of a DescribeInstanceTypes record nodewright reads. A dict maps a field to the
# subset of its value to keep; True keeps the value whole; a one-element list applies its
# element's subset to every item of a list value.
KEEP = {
    "InstanceType": True,
    "CurrentGeneration": True,
    "BareMetal": True,
    "Hypervisor": True,
    "SupportedUsageClasses": True,
    "SupportedVirtualizationTypes": True,
    "VCpuInfo": {"DefaultVCpus": True},
    "MemoryInfo": {"SizeInMiB": True},
    "ProcessorInfo": {"SupportedArchitectures": True},
    "GpuInfo": {
        "Gpus": [{"Name": True, "Manufacturer": True, "Count": True, "MemoryInfo": {"SizeInMiB": True}}],
    },
    "InferenceAcceleratorInfo": {
        "Accelerators": [{"Name": True, "Manufacturer": True, "Count": True, "MemoryInfo": {"SizeInMiB": True}}],
    },
    "NeuronInfo": {
        "NeuronDevices": [{"Name": True, "Count": True, "MemoryInfo": {"SizeInMiB": True}}],
    },
    "InstanceStorageInfo": {"TotalSizeInGB": True, "NvmeSupport": True},
    "NetworkInfo": {
        "MaximumNetworkInterfaces": True,
        "Ipv4AddressesPerInterface": True,
        "DefaultNetworkCardIndex": True,
        "NetworkCards": [
            {"NetworkCardIndex": True, "MaximumNetworkInterfaces": True, "BaselineBandwidthInGbps": True}
        ],
        "EfaSupported": True,
        "EfaInfo": {"MaximumEfaInterfaces": True},
        "EncryptionInTransitSupported": True,
    },
}


def trim(value, keep):
    """The part of `value` that `keep` names."""
    if keep is True:
        return value
    if isinstance(keep, list):
        return [trim(item, keep[0]) for item in value]
    return {key: trim(value[key], sub) for key, sub in keep.items() if key in value}


def moto_resources():
    try:
        import moto  # noqa: F401  (only its data files are used)
    except ImportError:
        sys.exit("gen-catalog: the `moto` package is not installed (pip install moto)")
    import moto

    return os.path.join(os.path.dirname(moto.__file__), "ec2", "resources"), moto.__version__


def load_gzip_json(path):
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return json.load(f)


def build(regions_wanted):
    resources, version = moto_resources()
    records = load_gzip_json(os.path.join(resources, "instance_types.json.gz"))
    instance_types = [trim(records[name], KEEP) for name in sorted(records)]
    known = set(records)

    zone_dir = os.path.join(resources, "instance_type_offerings", "availability-zone")
    available = sorted(f[: -len(".json.gz")] for f in os.listdir(zone_dir) if f.endswith(".json.gz"))
    regions = available if regions_wanted is None else regions_wanted
    offerings = {}
    for region in regions:
        if region not in available:
            sys.exit(f"gen-catalog: moto has no offerings for region {region!r}")
        by_zone = {}
        for offering in load_gzip_json(os.path.join(zone_dir, f"{region}.json.gz")):
            name = offering["InstanceType"]
            if name in known:  # an offering of a type moto has no record for is of no use
                by_zone.setdefault(offering["Location"], set()).add(name)
        offerings[region] = {zone: sorted(names) for zone, names in sorted(by_zone.items())}

    return {
        "Source": f"moto {version}: ec2/resources/instance_types.json.gz and "
        "instance_type_offerings/availability-zone/<region>.json.gz (AWS DescribeInstanceTypes "
        "and DescribeInstanceTypeOfferings data), trimmed by hack/gen-catalog.py",
        "InstanceTypes": instance_types,
        "OfferingsByZone": offerings,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--region", action="append", help="only these regions (default: every region moto has)")
    parser.add_argument("--output", default=OUTPUT)
    parser.add_argument("--check", action="store_true", help="fail if --output differs from what would be written")
    args = parser.parse_args()

    catalog = build(args.region)
    data = encode(catalog)
    regions = catalog["OfferingsByZone"]
    summary = (
        f"{len(catalog['InstanceTypes'])} instance types, {len(regions)} regions, "
        f"{sum(len(z) for z in regions.values())} zones, {len(data)} bytes"
    )
    write_or_check("gen-catalog", data, args.output, summary, args.check)

if __name__ == "__main__":
    main()
