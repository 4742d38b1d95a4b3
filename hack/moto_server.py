#!/usr/bin/env python3
"""Serve moto's EC2 and SSM on 127.0.0.1, seeded with the public AMI parameters EKS nodes need.

moto knows neither the EKS-optimized (Amazon Linux 2), Bottlerocket nor Ubuntu EKS AMI
parameters under /aws/service/, and refuses PutParameter under /aws/. This launcher registers
one AMI per (family, Kubernetes version, architecture, accelerator variant) in moto's EC2
backend and writes the matching public parameter straight into its SSM backend, makes SQS's
DeleteMessage safe to call concurrently, then serves.

Usage:
    python3 hack/moto_server.py [--port 0] [--regions us-east-1,us-west-2] [--exit-on-stdin-eof]

The first line on stdout is the port, printed once the server answers and the seed is in place
(port 0 picks a free one). With --exit-on-stdin-eof the server stops when its standard input
closes, so a test process that holds the pipe can never leave it running behind.
"""

import argparse
import datetime
import hashlib
import os
import signal
import sys
import threading

KUBERNETES_VERSIONS = ["1.23", "1.24", "1.25", "1.26", "1.27", "1.28", "1.29", "1.30"]
# The accounts that publish these images, so an owner filter in a test sees realistic data.
OWNER_EKS = "602401143452"
OWNER_BOTTLEROCKET = "092701018921"
OWNER_CANONICAL = "099720109477"
# Release dates are fixed so that the seed is the same on every run.
CREATED = datetime.datetime(2023, 6, 1, tzinfo=datetime.timezone.utc)


def seeded_images(version):
    """(SSM parameter name, AMI name, EC2 architecture, owner) for one Kubernetes version."""
    al2 = f"/aws/service/eks/optimized-ami/{version}"
    rocket = f"/aws/service/bottlerocket/aws-k8s-{version}"
    ubuntu = f"/aws/service/canonical/ubuntu/eks/20.04/{version}/stable/current"
    return [
        (f"{al2}/amazon-linux-2/recommended/image_id", f"amazon-eks-node-{version}-v20230601", "x86_64", OWNER_EKS),
        (f"{al2}/amazon-linux-2-arm64/recommended/image_id", f"amazon-eks-arm64-node-{version}-v20230601", "arm64", OWNER_EKS),
        (f"{al2}/amazon-linux-2-gpu/recommended/image_id", f"amazon-eks-gpu-node-{version}-v20230601", "x86_64", OWNER_EKS),
        (f"{rocket}/x86_64/latest/image_id", f"bottlerocket-aws-k8s-{version}-x86_64-v1.14.1", "x86_64", OWNER_BOTTLEROCKET),
        (f"{rocket}/arm64/latest/image_id", f"bottlerocket-aws-k8s-{version}-aarch64-v1.14.1", "arm64", OWNER_BOTTLEROCKET),
        (f"{rocket}-nvidia/x86_64/latest/image_id", f"bottlerocket-aws-k8s-{version}-nvidia-x86_64-v1.14.1", "x86_64", OWNER_BOTTLEROCKET),
        (f"{rocket}-nvidia/arm64/latest/image_id", f"bottlerocket-aws-k8s-{version}-nvidia-aarch64-v1.14.1", "arm64", OWNER_BOTTLEROCKET),
        (f"{ubuntu}/amd64/hvm/ebs-gp2/ami-id", f"ubuntu-eks/k8s_{version}/images/hvm-ssd/ubuntu-focal-20.04-amd64-server-20230601", "x86_64", OWNER_CANONICAL),
        (f"{ubuntu}/arm64/hvm/ebs-gp2/ami-id", f"ubuntu-eks/k8s_{version}/images/hvm-ssd/ubuntu-focal-20.04-arm64-server-20230601", "arm64", OWNER_CANONICAL),
    ]


def image_id(parameter, region):
    """A stable AMI id per parameter and region, shaped like EC2's (17 hex digits)."""
    digest = hashlib.sha256(f"{region}:{parameter}".encode()).hexdigest()
    return "ami-" + digest[:17]


def seed(regions):
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.ec2.models import ec2_backends
    from moto.ec2.models.amis import Ami
    from moto.ssm.models import Parameter, ssm_backends

    for region in regions:
        ec2 = ec2_backends[DEFAULT_ACCOUNT_ID][region]
        ssm = ssm_backends[DEFAULT_ACCOUNT_ID][region]
        for version in KUBERNETES_VERSIONS:
            for parameter, name, arch, owner in seeded_images(version):
                ami = image_id(parameter, region)
                ec2.amis[ami] = Ami(
                    ec2,
                    ami,
                    name=name,
                    description=name,
                    owner_id=owner,
                    owner_alias="amazon",
                    public=True,
                    virtualization_type="hvm",
                    architecture=arch,
                    creation_date=CREATED,
                    hypervisor="xen",
                    root_device_type="ebs",
                    root_device_name="/dev/xvda",
                    region_name=region,
                )
                # The backend's mapping bypasses PutParameter's refusal of the /aws/ prefix.
                ssm._parameters[parameter].append(
                    Parameter(
                        account_id=DEFAULT_ACCOUNT_ID,
                        name=parameter,
                        value=ami,
                        parameter_type="String",
                        description=None,
                        allowed_pattern=None,
                        keyid=None,
                        last_modified_date=CREATED,
                        version=1,
                        data_type="aws:ec2:image",
                    )
                )


def serialize_sqs_deletes():
    """moto's DeleteMessage rebuilds a queue's message list without the lock SendMessage takes,
    so two deletes at once (nodewright handles a received batch concurrently) can put a deleted
    message back, in flight until its visibility timeout. Real SQS has no such race."""
    from moto.sqs.models import Queue

    delete = Queue.delete_message

    def locked(self, receipt_handle):
        with self._messages_lock:
            return delete(self, receipt_handle)

    Queue.delete_message = locked


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--regions", default="us-east-1", help="comma-separated regions to seed")
    parser.add_argument(
        "--exit-on-stdin-eof",
        action="store_true",
        help="stop when standard input closes (the parent process went away)",
    )
    args = parser.parse_args()

    try:
        from moto.server import ThreadedMotoServer
    except ImportError:
        sys.exit("moto_server.py: moto is not installed (pip install 'moto[server]>=5,<6')")

    regions = [r.strip() for r in args.regions.split(",") if r.strip()]
    seed(regions)
    serialize_sqs_deletes()
    server = ThreadedMotoServer(ip_address=args.host, port=args.port, verbose=False)
    server.start()
    _, port = server.get_host_and_port()
    print(port, flush=True)
    # The reader may stop reading after the port; nothing else goes to stdout.
    sys.stdout = open(os.devnull, "w")

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    if args.exit_on_stdin_eof:

        def wait_for_eof():
            while sys.stdin.buffer.read(4096):
                pass
            stop.set()

        threading.Thread(target=wait_for_eof, daemon=True).start()
    while not stop.wait(1.0):
        pass
    server.stop()


if __name__ == "__main__":
    main()
