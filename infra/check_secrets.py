"""Checks the translated template: no internet-facing function can read the Dataverse client secret.

Internet-facing = the target of a function URL (AWS::Lambda::Url) or of a permission for API
Gateway. For each, every policy its role carries (inline policies, AWS::IAM::Policy resources
naming the role) is read; a statement that allows secretsmanager:GetSecretValue (also through
wildcards) on the Dataverse secret, on "*", or on a wildcard ARN fails the check, and so do
NotAction/NotResource statements and managed policies, which cannot be read here. An environment
variable naming the secret fails too.

Usage: python check_secrets.py translated.json           (exit 1 and a list when it fails)
       python check_secrets.py --self-test translated.json  (the check must catch planted grants)
"""

import copy
import fnmatch
import json
import sys

DATAVERSE_SECRET = "DataverseClientSecret"
EXPECTED_INTERNET_FACING = {"WebhookIntakeFunction", "ConnectFunction", "CleverReachEventsFunction"}
READ_ACTION = "secretsmanager:getsecretvalue"


def as_list(value):
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def logical_id(value):
    """The logical id a Ref or GetAtt points at, else None."""
    if isinstance(value, dict):
        if "Ref" in value:
            return value["Ref"]
        if "Fn::GetAtt" in value:
            target = value["Fn::GetAtt"]
            return target[0] if isinstance(target, list) else str(target).split(".")[0]
    return None


def mentions(value, name):
    """Whether `name` appears anywhere in an intrinsic (Ref, GetAtt, Sub, Join...)."""
    if isinstance(value, dict):
        if logical_id(value) == name:
            return True
        return any(mentions(v, name) for v in value.values())
    if isinstance(value, list):
        return any(mentions(v, name) for v in value)
    if isinstance(value, str):
        return "${" + name in value
    return False


def internet_facing(resources):
    found = set()
    for body in resources.values():
        props = body.get("Properties", {})
        if body.get("Type") == "AWS::Lambda::Url":
            found.add(logical_id(props.get("TargetFunctionArn")))
        if body.get("Type") == "AWS::Lambda::Permission":
            principal = str(props.get("Principal", ""))
            if "apigateway" in principal or props.get("FunctionUrlAuthType"):
                found.add(logical_id(props.get("FunctionName")))
    found.discard(None)
    return found


def resource_may_be_dataverse_secret(resource):
    if mentions(resource, DATAVERSE_SECRET):
        return True
    if isinstance(resource, str):
        return resource == "*" or ("secretsmanager" in resource and "*" in resource)
    if isinstance(resource, dict) and "Fn::Sub" in resource:
        text = resource["Fn::Sub"]
        text = text[0] if isinstance(text, list) else text
        return "*" in str(text)
    return False


def statements_of(role_id, resources):
    role = resources.get(role_id, {})
    props = role.get("Properties", {})
    out = []
    for policy in as_list(props.get("Policies")):
        out += [(policy.get("PolicyName", "?"), s) for s in as_list(policy.get("PolicyDocument", {}).get("Statement"))]
    for name, body in resources.items():
        if body.get("Type") in ("AWS::IAM::Policy", "AWS::IAM::RolePolicy", "AWS::IAM::ManagedPolicy"):
            p = body.get("Properties", {})
            if any(logical_id(r) == role_id or r == role_id for r in as_list(p.get("Roles")) + as_list(p.get("RoleName"))):
                out += [(name, s) for s in as_list(p.get("PolicyDocument", {}).get("Statement"))]
    return out, props.get("ManagedPolicyArns")


def violations(template):
    resources = template.get("Resources", {})
    problems = []
    if DATAVERSE_SECRET not in resources:
        problems.append(f"the template has no {DATAVERSE_SECRET}: the check would prove nothing")
    facing = internet_facing(resources)
    missing = EXPECTED_INTERNET_FACING - facing
    if missing:
        problems.append(f"expected internet-facing functions not found: {sorted(missing)}")
    for function in sorted(facing):
        props = resources.get(function, {}).get("Properties", {})
        role_id = logical_id(props.get("Role"))
        if not role_id or role_id not in resources:
            problems.append(f"{function}: its role is not a role of this template, so it cannot be checked")
            continue
        statements, managed = statements_of(role_id, resources)
        if managed:
            problems.append(f"{function}: role {role_id} has managed policies, which this check cannot read")
        for policy, st in statements:
            if st.get("Effect") != "Allow":
                continue
            if "NotAction" in st or "NotResource" in st:
                problems.append(f"{function}: {role_id}/{policy} uses NotAction/NotResource")
                continue
            actions = [str(a).lower() for a in as_list(st.get("Action"))]
            if not any(fnmatch.fnmatchcase(READ_ACTION, a) for a in actions):
                continue
            for resource in as_list(st.get("Resource")):
                if resource_may_be_dataverse_secret(resource):
                    problems.append(
                        f"{function}: {role_id}/{policy} ({st.get('Sid', 'no Sid')}) lets it read "
                        f"the Dataverse client secret ({json.dumps(resource)})"
                    )
        env = props.get("Environment", {}).get("Variables", {})
        for name, value in env.items():
            if mentions(value, DATAVERSE_SECRET):
                problems.append(f"{function}: environment variable {name} names the Dataverse client secret")
    for name, body in resources.items():
        if body.get("Type") == "AWS::SecretsManager::ResourcePolicy" and mentions(
            body.get("Properties", {}).get("SecretId"), DATAVERSE_SECRET
        ):
            problems.append(f"{name}: a resource policy on the Dataverse client secret (not checked here)")
    return problems


def self_test(template):
    """Plants each kind of grant into each internet-facing function; every one must be caught."""
    resources = template["Resources"]
    facing = sorted(internet_facing(resources))
    plants = [
        ("a Ref", {"Effect": "Allow", "Action": "secretsmanager:GetSecretValue", "Resource": {"Ref": DATAVERSE_SECRET}}),
        ("a wildcard action", {"Effect": "Allow", "Action": "secretsmanager:*", "Resource": [{"Ref": DATAVERSE_SECRET}]}),
        ("Resource *", {"Effect": "Allow", "Action": ["secretsmanager:GetSecretValue"], "Resource": "*"}),
    ]
    failures = []
    for function in facing:
        role_id = logical_id(resources[function]["Properties"]["Role"])
        for label, statement in plants:
            mutated = copy.deepcopy(template)
            policy = mutated["Resources"][role_id]["Properties"]["Policies"][0]
            policy["PolicyDocument"]["Statement"].append(statement)
            if not any(function in p for p in violations(mutated)):
                failures.append(f"{function}: a grant through {label} was not caught")
        mutated = copy.deepcopy(template)
        env = mutated["Resources"][function]["Properties"].setdefault("Environment", {}).setdefault("Variables", {})
        env["DATAVERSE_CLIENT_SECRET_ID"] = {"Ref": DATAVERSE_SECRET}
        if not any(function in p for p in violations(mutated)):
            failures.append(f"{function}: an environment variable naming the secret was not caught")
    if not facing:
        failures.append("no internet-facing function found")
    return failures


def main(args):
    test = args[:1] == ["--self-test"]
    if test:
        args = args[1:]
    if len(args) != 1:
        sys.exit("usage: check_secrets.py [--self-test] translated.json")
    with open(args[0], encoding="utf-8") as f:
        template = json.load(f)
    problems = self_test(template) if test else violations(template)
    for problem in problems:
        print(f"  {problem}", file=sys.stderr)
    if problems:
        what = "the secrets check misses planted grants" if test else "an internet-facing function can read the Dataverse client secret"
        sys.exit(f"secrets check failed: {what}")
    print("secrets check: no internet-facing function can read the Dataverse client secret" if not test
          else "secrets check self-test: planted grants are caught")


if __name__ == "__main__":
    main(sys.argv[1:])
