"""moto-init: creates the AWS resources the local stack's dockhand uses, in moto.

Run once by docker compose (service `moto-init`, on the moto image, which has boto3) after
moto is healthy, and again on every `docker compose up`: each step finds what an earlier run
created before creating anything, so a re-run changes nothing.

It creates
  - the SQS queue `dockhand-jobs` and its dead-letter queue `dockhand-jobs-dlq`
    (RedrivePolicy, maxReceiveCount 20, as the README advises for pools that run full);
  - the ECS cluster `gha-runners` and the task definition `gha-runner` (Fargate, awsvpc, a
    `runner` container with `memory` set, which moto's RunTask needs);
  - a VPC (EnableDnsHostnames, which moto's Fargate RunTask needs), a subnet and a security
    group for the runner tasks.

moto gives subnets and security groups random ids, so the dockhand configuration is a
template: this script writes it to DOCKHAND_CONFIG_OUT with the placeholders
`subnet-from-moto-init` and `sg-from-moto-init` replaced by the real ids. Queue, cluster and
task definition names are fixed, so the template names them directly.

Environment: MOTO_URL (default http://moto:5000), AWS_REGION (default us-east-1),
DOCKHAND_CONFIG_TEMPLATE and DOCKHAND_CONFIG_OUT (the template and where the result goes).
"""

import json
import os
import sys
import tempfile

import boto3

MOTO_URL = os.environ.get("MOTO_URL", "http://moto:5000")
REGION = os.environ.get("AWS_REGION", "us-east-1")
TEMPLATE = os.environ.get("DOCKHAND_CONFIG_TEMPLATE", "/compose/dockhand.toml")
OUT = os.environ.get("DOCKHAND_CONFIG_OUT", "/etc/dockhand/dockhand.toml")

QUEUE = "dockhand-jobs"
DEAD_LETTER_QUEUE = "dockhand-jobs-dlq"
MAX_RECEIVE_COUNT = 20
CLUSTER = "gha-runners"
TASK_FAMILY = "gha-runner"
CONTAINER = "runner"
# A tag on the VPC, subnet and security group, so that a re-run finds them.
NAME = "dockhand-local"
SUBNET_PLACEHOLDER = "subnet-from-moto-init"
SECURITY_GROUP_PLACEHOLDER = "sg-from-moto-init"


def client(service):
    return boto3.client(
        service,
        endpoint_url=MOTO_URL,
        region_name=REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def create_queues(sqs):
    dlq_url = sqs.create_queue(QueueName=DEAD_LETTER_QUEUE)["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    url = sqs.create_queue(QueueName=QUEUE)["QueueUrl"]
    # Set apart from CreateQueue, so that a re-run with another policy updates it instead
    # of failing with QueueAlreadyExists.
    redrive = {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(MAX_RECEIVE_COUNT)}
    sqs.set_queue_attributes(QueueUrl=url, Attributes={"RedrivePolicy": json.dumps(redrive)})
    print(f"queue {url}, dead-letter queue {dlq_url} (maxReceiveCount {MAX_RECEIVE_COUNT})")


def name_tag(resource_type):
    return [{"ResourceType": resource_type, "Tags": [{"Key": "Name", "Value": NAME}]}]


def by_name():
    return [{"Name": "tag:Name", "Values": [NAME]}]


def create_network(ec2):
    vpcs = ec2.describe_vpcs(Filters=by_name())["Vpcs"]
    if vpcs:
        vpc_id = vpcs[0]["VpcId"]
    else:
        vpc_id = ec2.create_vpc(CidrBlock="10.42.0.0/16", TagSpecifications=name_tag("vpc"))[
            "Vpc"
        ]["VpcId"]
    ec2.modify_vpc_attribute(VpcId=vpc_id, EnableDnsHostnames={"Value": True})

    subnets = ec2.describe_subnets(Filters=by_name())["Subnets"]
    if subnets:
        subnet_id = subnets[0]["SubnetId"]
    else:
        subnet_id = ec2.create_subnet(
            VpcId=vpc_id,
            CidrBlock="10.42.0.0/24",
            AvailabilityZone=f"{REGION}a",
            TagSpecifications=name_tag("subnet"),
        )["Subnet"]["SubnetId"]

    groups = ec2.describe_security_groups(
        Filters=[{"Name": "vpc-id", "Values": [vpc_id]}, {"Name": "group-name", "Values": [NAME]}]
    )["SecurityGroups"]
    if groups:
        group_id = groups[0]["GroupId"]
    else:
        group_id = ec2.create_security_group(
            GroupName=NAME,
            Description="dockhand runner tasks (local stack)",
            VpcId=vpc_id,
            TagSpecifications=name_tag("security-group"),
        )["GroupId"]
    print(f"vpc {vpc_id}, subnet {subnet_id}, security group {group_id}")
    return subnet_id, group_id


def create_ecs(ecs):
    ecs.create_cluster(clusterName=CLUSTER)
    existing = ecs.list_task_definitions(familyPrefix=TASK_FAMILY)["taskDefinitionArns"]
    if existing:
        arn = existing[-1]
    else:
        arn = ecs.register_task_definition(
            family=TASK_FAMILY,
            networkMode="awsvpc",
            requiresCompatibilities=["FARGATE"],
            cpu="1024",
            memory="2048",
            containerDefinitions=[
                {
                    "name": CONTAINER,
                    "image": "ghcr.io/actions/actions-runner:latest",
                    # Reads ACTIONS_RUNNER_INPUT_JITCONFIG, which dockhand sets.
                    "command": ["/home/runner/run.sh"],
                    "memory": 2048,
                    "essential": True,
                }
            ],
        )["taskDefinition"]["taskDefinitionArn"]
    print(f"cluster {CLUSTER}, task definition {arn}")


def write_config(subnet_id, group_id):
    with open(TEMPLATE, encoding="utf-8") as f:
        text = f.read()
    for placeholder in (SUBNET_PLACEHOLDER, SECURITY_GROUP_PLACEHOLDER):
        if placeholder not in text:
            sys.exit(f"moto-init: {TEMPLATE} has no {placeholder} to replace")
    text = text.replace(SUBNET_PLACEHOLDER, subnet_id).replace(
        SECURITY_GROUP_PLACEHOLDER, group_id
    )
    # Write and rename, so a running dockhand's config reload never reads half a file.
    directory = os.path.dirname(OUT) or "."
    os.makedirs(directory, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=directory, delete=False, encoding="utf-8") as f:
        f.write(text)
    os.chmod(f.name, 0o644)
    os.replace(f.name, OUT)
    print(f"wrote {OUT}")


def main():
    create_queues(client("sqs"))
    subnet_id, group_id = create_network(client("ec2"))
    create_ecs(client("ecs"))
    write_config(subnet_id, group_id)


if __name__ == "__main__":
    main()
