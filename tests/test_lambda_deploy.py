"""`smr lambda-deploy` / `lambda-undeploy` / `iam-policy` / `--template-only` against moto.

moto (`mock_aws`, in process) stands in for Lambda, IAM, STS and S3's control plane; fake
credentials, us-east-1, and no request leaves the process.
"""
import io
import json
import zipfile

import boto3
import pytest
import yaml
from click.testing import CliRunner
from moto import mock_aws

from smr.cli import main
from smr.config import make_settings
from smr.deploy import aws, iam

from aws_helpers import fake_aws_env
from helpers import EXAMPLES

WORDCOUNT = str(EXAMPLES / "wordcount.py")


@pytest.fixture
def account(monkeypatch, tmp_path):
    fake_aws_env(monkeypatch, tmp_path)
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        for b in ("data", "work", "other"):
            s3.create_bucket(Bucket=b)
        yield tmp_path


def settings(**kw):
    kw.setdefault("job", WORDCOUNT)
    kw.setdefault("input", ["s3://data/in/"])
    kw.setdefault("output", "s3://data/out")
    kw.setdefault("work_dir", "s3://work/smr")
    return make_settings(**kw)


def foreign_resources():
    """What someone else already has in the account: a function, a role, a managed policy,
    a permission and notifications on the bucket smr will watch."""
    iam_c = boto3.client("iam")
    role = iam_c.create_role(RoleName="theirs", AssumeRolePolicyDocument=json.dumps(
        iam.trust_policy()))["Role"]
    iam_c.put_role_policy(RoleName="theirs", PolicyName="p", PolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:GetObject",
                                                 "Resource": "arn:aws:s3:::data/*"}]}))
    iam_c.create_policy(PolicyName="their-managed", PolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:ListBucket",
                                                 "Resource": "arn:aws:s3:::data"}]}))
    lam = boto3.client("lambda")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("h.py", "def handler(e, c):\n    return 1\n")
    fn = lam.create_function(FunctionName="their-fn", Runtime="python3.12", Role=role["Arn"],
                             Handler="h.handler", Code={"ZipFile": buf.getvalue()})
    lam.add_permission(FunctionName="their-fn", StatementId="theirs",
                       Action="lambda:InvokeFunction", Principal="s3.amazonaws.com",
                       SourceArn="arn:aws:s3:::data")
    sqs = boto3.client("sqs")
    q = sqs.create_queue(QueueName="their-queue")["QueueUrl"]
    qarn = sqs.get_queue_attributes(QueueUrl=q, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    boto3.client("s3").put_bucket_notification_configuration(Bucket="data", NotificationConfiguration={
        "LambdaFunctionConfigurations": [{
            "Id": "their-lambda", "LambdaFunctionArn": fn["FunctionArn"],
            "Events": ["s3:ObjectCreated:*"],
            "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": "logs/"}]}}}],
        "QueueConfigurations": [{
            "Id": "their-queue", "QueueArn": qarn, "Events": ["s3:ObjectRemoved:*"]}]})


def snapshot():
    """Everything deploy could touch: functions (config, tags, policy, invoke config), roles
    (inline and attached policies), managed policies, every bucket's notifications."""
    lam, iam_c, s3 = boto3.client("lambda"), boto3.client("iam"), boto3.client("s3")
    out = {"functions": {}, "roles": {}, "policies": [], "notifications": {}}
    for f in lam.list_functions()["Functions"]:
        name = f["FunctionName"]
        try:
            policy = json.loads(lam.get_policy(FunctionName=name)["Policy"])
        except lam.exceptions.ResourceNotFoundException:
            policy = None
        cfg = lam.get_function_configuration(FunctionName=name)
        cfg.pop("ResponseMetadata")
        out["functions"][name] = {"config": cfg, "policy": policy,
                                  "tags": lam.list_tags(Resource=f["FunctionArn"])["Tags"]}
    for r in iam_c.list_roles()["Roles"]:
        name = r["RoleName"]
        out["roles"][name] = {
            "inline": {p: iam_c.get_role_policy(RoleName=name, PolicyName=p)["PolicyDocument"]
                       for p in iam_c.list_role_policies(RoleName=name)["PolicyNames"]},
            "attached": iam_c.list_attached_role_policies(RoleName=name)["AttachedPolicies"]}
    out["policies"] = sorted(p["Arn"] for p in iam_c.list_policies(Scope="Local")["Policies"])
    for b in s3.list_buckets()["Buckets"]:
        cfg = s3.get_bucket_notification_configuration(Bucket=b["Name"])
        cfg.pop("ResponseMetadata")
        out["notifications"][b["Name"]] = cfg
    return out


def test_deploy_then_undeploy_leaves_the_account_as_it_was(account):
    foreign_resources()
    before = snapshot()
    s = settings()
    record = aws.deploy(s, watch="s3://data/uploads", directory=str(account / "state"))
    during = snapshot()

    # The function, as configured.
    fn = during["functions"]["smr-worker"]
    assert fn["config"]["Handler"] == "smr.worker.handler.handler"
    assert fn["config"]["MemorySize"] == s.memory and fn["config"]["Timeout"] == 900
    assert fn["config"]["EphemeralStorage"] == {"Size": 512}
    assert fn["config"]["Runtime"].startswith("python3.")
    env = fn["config"]["Environment"]["Variables"]
    assert env["SMR_JOB"] == "smr_job/wordcount.py" and env["SMR_WATCH"] == "s3://data/uploads"
    assert json.loads(env["SMR_SETTINGS"])["output"] == "s3://data/out"
    assert fn["tags"]["smr:managed"] == "true"
    # Its role and least-privilege policy.
    role = during["roles"][iam.role_name("smr-worker")]
    assert role["inline"] == {iam.POLICY_NAME: record["policy"]}
    assert role["attached"] == []
    # S3 may invoke it, from that bucket and account only.
    (stmt,) = fn["policy"]["Statement"]
    assert stmt["Principal"] == {"Service": "s3.amazonaws.com"}
    assert stmt["Condition"]["ArnLike"]["AWS:SourceArn"] == "arn:aws:s3:::data"
    # The notification was merged: the foreign ones are intact, ours was added.
    notes = during["notifications"]["data"]
    assert notes["QueueConfigurations"] == before["notifications"]["data"]["QueueConfigurations"]
    theirs, ours = notes["LambdaFunctionConfigurations"]
    assert theirs == before["notifications"]["data"]["LambdaFunctionConfigurations"][0]
    assert ours["LambdaFunctionArn"] == record["function_arn"]
    assert ours["Filter"]["Key"]["FilterRules"] == [{"Name": "prefix", "Value": "uploads/"}]
    # Nothing else changed.
    assert during["functions"]["their-fn"] == before["functions"]["their-fn"]
    assert during["roles"]["theirs"] == before["roles"]["theirs"]
    assert during["policies"] == before["policies"]
    assert during["notifications"]["work"] == before["notifications"]["work"]

    aws.undeploy(s, directory=str(account / "state"))
    assert snapshot() == before
    assert not list((account / "state").glob("*.json"))


def test_redeploy_updates_in_place_and_moves_the_trigger(account):
    s = settings()
    aws.deploy(s, watch="s3://data/a")
    sha = boto3.client("lambda").get_function_configuration(FunctionName="smr-worker")["CodeSha256"]
    rec = aws.deploy(settings(memory=2048), watch="s3://data/b")
    cfg = boto3.client("lambda").get_function_configuration(FunctionName="smr-worker")
    assert cfg["MemorySize"] == 2048 and cfg["CodeSha256"] == sha  # same code, not re-uploaded
    notes = boto3.client("s3").get_bucket_notification_configuration(Bucket="data")
    (only,) = notes["LambdaFunctionConfigurations"]
    assert only["Filter"]["Key"]["FilterRules"][0]["Value"] == "b/"
    assert len(rec["created"]["notifications"]) == 1 and len(rec["created"]["permissions"]) == 1
    aws.undeploy(s)
    assert boto3.client("lambda").list_functions()["Functions"] == []
    assert "LambdaFunctionConfigurations" not in boto3.client("s3").get_bucket_notification_configuration(Bucket="data")
    assert boto3.client("iam").list_roles()["Roles"] == []


def test_refuses_to_take_over_a_foreign_function(account):
    foreign_resources()
    before = snapshot()
    with pytest.raises(aws.DeployError, match="'their-fn' exists and was not created by smr"):
        aws.deploy(settings(lambda_function="their-fn"))
    assert snapshot() == before  # checked before anything was created


def test_overlapping_trigger_is_refused_before_anything_is_created(account):
    foreign_resources()
    before = snapshot()
    with pytest.raises(aws.DeployError, match=r"already sends object-created events under 'logs/'"):
        aws.deploy(settings(), watch="s3://data/logs/web")
    assert snapshot() == before


def test_output_inside_the_watched_prefix_is_refused(account):
    with pytest.raises(aws.DeployError, match="inside the watched prefix"):
        aws.deploy(settings(output="s3://data/in/out"), watch="s3://data/in")


def test_local_paths_and_missing_work_dir_are_refused(account):
    with pytest.raises(aws.DeployError, match=r"work_dir: .*needs --work-dir s3://"):
        aws.deploy(make_settings(job=WORDCOUNT, output="s3://data/out"))
    with pytest.raises(aws.DeployError, match=r"input: /tmp/x is not an s3:// URL"):
        aws.deploy(settings(input=["/tmp/x"]))


def test_undeploy_without_a_record_is_a_clear_error(account):
    with pytest.raises(aws.DeployError, match="no deployment record for function 'nope'"):
        aws.undeploy(function_name="nope")


def test_policy_is_least_privilege(account):
    s = settings(input=["s3://data/in/2024-*.csv", "s3://other/x/file.txt"])
    plan = aws.make_plan(s, watch=None, region="us-east-1", account="123456789012")
    by_sid = {st["Sid"]: st for st in plan.policy["Statement"]}
    assert by_sid["ReadInputs"]["Action"] == ["s3:GetObject"]
    assert by_sid["ReadInputs"]["Resource"] == [
        "arn:aws:s3:::data/in", "arn:aws:s3:::data/in/*",
        "arn:aws:s3:::other/x/file.txt", "arn:aws:s3:::other/x/file.txt/*"]
    assert sorted(by_sid["ReadWriteWorkAndOutput"]["Resource"]) == [
        "arn:aws:s3:::data/out", "arn:aws:s3:::data/out/*",
        "arn:aws:s3:::work/smr", "arn:aws:s3:::work/smr/*"]
    lists = [st for st in plan.policy["Statement"] if st["Action"] == ["s3:ListBucket"]]
    assert {st["Resource"] for st in lists} == {"arn:aws:s3:::data", "arn:aws:s3:::other",
                                                "arn:aws:s3:::work"}
    assert all("Condition" in st for st in lists)
    for st in plan.policy["Statement"]:
        assert "*" not in "".join(st["Action"])
        res = st["Resource"] if isinstance(st["Resource"], list) else [st["Resource"]]
        assert all(r != "*" and not r.endswith(":::*") for r in res)
    assert by_sid["InvokeSelf"]["Resource"] == [
        "arn:aws:lambda:us-east-1:123456789012:function:smr-worker",
        "arn:aws:lambda:us-east-1:123456789012:function:smr-worker:*"]


def test_cli_iam_policy_matches_what_deploy_installs(account):
    args = [WORDCOUNT, "-i", "s3://data/in/", "-o", "s3://data/out", "--work-dir", "s3://work/smr",
            "--region", "us-east-1"]
    r = CliRunner().invoke(main, ["iam-policy", *args, "--account", "123456789012"])
    assert r.exit_code == 0, r.output
    printed = json.loads(r.output)
    r = CliRunner().invoke(main, ["lambda-deploy", *args, "--json"])
    assert r.exit_code == 0, r.output
    record = json.loads(r.stdout)
    installed = boto3.client("iam").get_role_policy(RoleName=iam.role_name("smr-worker"),
                                                    PolicyName=iam.POLICY_NAME)["PolicyDocument"]
    assert printed == installed == record["policy"]
    r = CliRunner().invoke(main, ["lambda-undeploy", "--region", "us-east-1"])
    assert r.exit_code == 0, r.output
    assert boto3.client("lambda").list_functions()["Functions"] == []
    r = CliRunner().invoke(main, ["lambda-undeploy", "--region", "us-east-1"])
    assert r.exit_code == 1 and "no deployment record" in r.output


def _unsub(value, region="us-east-1", account="123456789012"):
    if isinstance(value, dict):
        if set(value) == {"Fn::Sub"}:
            return value["Fn::Sub"].replace("${AWS::Region}", region).replace(
                "${AWS::AccountId}", account)
        return {k: _unsub(v, region, account) for k, v in value.items()}
    if isinstance(value, list):
        return [_unsub(v, region, account) for v in value]
    return value


def test_template_has_the_same_resources_and_policy(account, tmp_path):
    args = [WORDCOUNT, "-i", "s3://data/in/", "-o", "s3://data/out", "--work-dir", "s3://work/smr",
            "--watch", "s3://data/uploads", "--memory", "2048", "--timeout", "300"]
    r = CliRunner().invoke(main, ["lambda-deploy", *args, "--template-only",
                                  "--package-out", str(tmp_path / "pkg.zip")])
    assert r.exit_code == 0, r.output
    doc = yaml.safe_load(r.stdout)
    res = doc["Resources"]
    assert {k: v["Type"] for k, v in res.items()} == {
        "WorkerRole": "AWS::IAM::Role", "WorkerFunction": "AWS::Lambda::Function",
        "WorkerEventInvokeConfig": "AWS::Lambda::EventInvokeConfig",
        "WorkerS3Permission": "AWS::Lambda::Permission"}
    fn = res["WorkerFunction"]["Properties"]
    assert (fn["Handler"], fn["MemorySize"], fn["Timeout"]) == ("smr.worker.handler.handler", 2048, 300)
    assert fn["Role"] == {"Fn::GetAtt": ["WorkerRole", "Arn"]}
    assert zipfile.ZipFile(tmp_path / "pkg.zip").getinfo("smr/worker/handler.py")
    # Nothing was created by --template-only...
    assert boto3.client("lambda").list_functions()["Functions"] == []
    # ...and a real deploy installs the very policy the template declares.
    assert CliRunner().invoke(main, ["lambda-deploy", *args]).exit_code == 0
    installed = boto3.client("iam").get_role_policy(RoleName=iam.role_name("smr-worker"),
                                                    PolicyName=iam.POLICY_NAME)["PolicyDocument"]
    (declared,) = res["WorkerRole"]["Properties"]["Policies"]
    assert _unsub(declared["PolicyDocument"]) == installed
    merge = doc["Metadata"]["SmrBucketNotification"]["MergeIntoLambdaFunctionConfigurations"]
    live = boto3.client("s3").get_bucket_notification_configuration(Bucket="data")
    assert _unsub(merge) == live["LambdaFunctionConfigurations"][0]
    assert CliRunner().invoke(main, ["lambda-undeploy"]).exit_code == 0


def test_template_passes_cfn_lint(account, tmp_path):
    from cfnlint.api import lint
    s = settings()
    plan = aws.make_plan(s, watch="s3://data/uploads", region="${AWS::Region}",
                         account="${AWS::AccountId}")
    from smr.deploy.template import template, to_yaml
    text = to_yaml(template(plan))
    errors = [m for m in lint(text) if str(m.rule.id).startswith("E")]
    assert errors == [], "\n".join(str(m) for m in errors)


def test_package_over_the_direct_upload_limit_goes_through_the_work_bucket(account, monkeypatch):
    monkeypatch.setattr(aws, "ZIP_LIMIT_DIRECT", 2**20)  # our ~3 MB package is now "too big"
    record = aws.deploy(settings())
    (obj,) = record["created"]["code_objects"]
    assert obj["bucket"] == "work" and obj["key"].startswith("smr/deploy/smr-worker-")
    s3 = boto3.client("s3")
    assert s3.head_object(Bucket="work", Key=obj["key"])["ContentLength"] == \
        record["package"]["zipped_bytes"]
    aws.undeploy(settings())
    assert s3.list_objects_v2(Bucket="work").get("KeyCount") == 0
    assert boto3.client("lambda").list_functions()["Functions"] == []


def test_trigger_deploy_through_smr_deploy_platform_lambda(account):
    """`smr deploy --platform lambda` (event triggers) registers the trigger in the work store
    and calls smr.deploy.aws.deploy(registration=...); `smr undeploy` removes it all again."""
    foreign_resources()
    before = snapshot()
    r = CliRunner().invoke(main, ["deploy", WORDCOUNT, "--watch", "s3://data/uploads",
                                  "--output", "s3://data/results", "--platform", "lambda",
                                  "--work-dir", "s3://work/smr", "--memory", "2048"])
    assert r.exit_code == 0, r.output
    lam = boto3.client("lambda")
    cfg = lam.get_function_configuration(FunctionName="smr-wordcount")
    assert cfg["MemorySize"] == 2048
    assert cfg["Environment"]["Variables"]["SMR_WORK_DIR"] == "s3://work/smr"
    invoke_cfg = lam.get_function_event_invoke_config(FunctionName="smr-wordcount")
    assert invoke_cfg["MaximumRetryAttempts"] == 2
    assert invoke_cfg["DestinationConfig"]["OnFailure"]["Destination"] == cfg["FunctionArn"]
    notes = boto3.client("s3").get_bucket_notification_configuration(Bucket="data")
    ours = [n for n in notes["LambdaFunctionConfigurations"] if n["LambdaFunctionArn"] == cfg["FunctionArn"]]
    assert ours[0]["Filter"]["Key"]["FilterRules"] == [{"Name": "prefix", "Value": "uploads/"}]
    policy = boto3.client("iam").get_role_policy(RoleName=iam.role_name("smr-wordcount"),
                                                 PolicyName=iam.POLICY_NAME)["PolicyDocument"]
    resources = json.dumps(policy)
    assert "arn:aws:s3:::data/uploads/*" in resources and "arn:aws:s3:::data/results/*" in resources
    keys = [o["Key"] for o in boto3.client("s3").list_objects_v2(Bucket="work")["Contents"]]
    assert "smr/triggers/wordcount.json" in keys  # the coordinator finds the trigger there

    r = CliRunner().invoke(main, ["undeploy", "wordcount", "--work-dir", "s3://work/smr"])
    assert r.exit_code == 0, r.output
    after = snapshot()
    assert after == before
