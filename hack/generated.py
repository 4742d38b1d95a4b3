"""What the generators in hack/ share: deterministic gzip JSON, and writing or checking it."""

import gzip
import io
import json
import os
import sys


def encode(document):
    """`document` as gzip JSON whose bytes depend on the content only."""
    text = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    out = io.BytesIO()
    # mtime=0 and an empty file name: no timestamp or path in the header.
    with gzip.GzipFile(filename="", mode="wb", fileobj=out, compresslevel=9, mtime=0) as gz:
        gz.write(text.encode("utf-8"))
    return out.getvalue()


def write_or_check(tool, data, output, summary, check):
    """Writes `data` to `output`, or with `check` fails when the committed file differs."""
    if check:
        try:
            with open(output, "rb") as f:
                current = f.read()
        except FileNotFoundError:
            current = None
        if current != data:
            sys.exit(f"{tool}: {output} is stale; run python3 hack/{tool}.py")
        print(f"{tool}: {output} is up to date ({summary})")
        return
    os.makedirs(os.path.dirname(output), exist_ok=True)
    with open(output, "wb") as f:
        f.write(data)
    print(f"{tool}: wrote {output}: {summary}")
