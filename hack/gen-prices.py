#!/usr/bin/env python3
"""Generate the embedded on-demand price table from AWS's public list prices.

Input: ../shared/data/ec2-ondemand-prices.json, `{"source": "...", "regions": {region: {type: usd}}}`
(AWS's public on-demand list prices for Linux, shared tenancy; see that directory's README for
where they were taken from and when).

Output (gzip, deterministic: sorted keys, no timestamp, no file name):
    {"Source": "...", "InputSha256": "...", "Regions": {region: {instance type: usd per hour}}}

Run from the repository root:
    python3 hack/gen-prices.py            # writes crates/scheduling/data/ec2-ondemand-prices.json.gz
    python3 hack/gen-prices.py --check    # fails if the committed file is stale
"""

import argparse
import gzip
import hashlib
import json
import math
import os
import sys

from generated import encode, write_or_check

INPUT = os.path.join("..", "shared", "data", "ec2-ondemand-prices.json")
OUTPUT = "crates/scheduling/data/ec2-ondemand-prices.json.gz"


def build(path):
    with open(path, "rb") as f:
        raw = f.read()
    data = json.loads(raw)
    regions = {}
    for region, prices in sorted(data["regions"].items()):
        for name, usd in prices.items():
            if not (isinstance(usd, (int, float)) and math.isfinite(usd) and usd >= 0):
                sys.exit(f"gen-prices: {region} {name}: not a price: {usd!r}")
        regions[region] = {name: float(usd) for name, usd in sorted(prices.items())}
    return {
        "Source": f"AWS public on-demand list prices (Linux, shared tenancy): {data['source']}; "
        "converted by hack/gen-prices.py",
        "InputSha256": hashlib.sha256(raw).hexdigest(),
        "Regions": regions,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", default=INPUT)
    parser.add_argument("--output", default=OUTPUT)
    parser.add_argument("--check", action="store_true", help="fail if --output differs from what would be written")
    args = parser.parse_args()

    if not os.path.exists(args.input):
        if args.check:
            # The input lives beside the repository, not in it: a clone on its own can only
            # check that the committed table decodes.
            with gzip.open(args.output, "rt", encoding="utf-8") as f:
                table = json.load(f)
            print(f"gen-prices: {args.input} not found; {args.output} decodes "
                  f"({sum(len(p) for p in table['Regions'].values())} prices), freshness not checked")
            return
        sys.exit(f"gen-prices: {args.input} not found")
    table = build(args.input)
    data = encode(table)
    summary = (
        f"{sum(len(p) for p in table['Regions'].values())} prices in "
        f"{len(table['Regions'])} region(s), {len(data)} bytes"
    )
    write_or_check("gen-prices", data, args.output, summary, args.check)

if __name__ == "__main__":
    main()
