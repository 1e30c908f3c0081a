"""Checks the translated template: every dead-letter queue has an alarm on its depth, every work
queue one on the age of its oldest message, every function one on its errors and one on its
throttles, each notifying the alarm topic.

Dead-letter queues are found in the translation itself, not by name: the targets of every
RedrivePolicy, of every schedule's DeadLetterConfig and of every on-failure destination
(AWS::Lambda::EventInvokeConfig). A queue alarm counts when it watches the queue's metric by
its QueueName (GetAtt <queue>.QueueName), with GreaterThanThreshold and a threshold of 0 for a
dead-letter queue, and has AlarmActions.

Usage: python check_alarms.py translated.json            (exit 1 and a list when it fails)
       python check_alarms.py --self-test translated.json  (removing any alarm must be caught)
"""

import copy
import json
import sys

TOPIC = "AlarmTopic"


def as_list(value):
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def target(value):
    """The logical id a Ref or GetAtt points at, else None."""
    if isinstance(value, dict):
        if "Ref" in value:
            return value["Ref"]
        if "Fn::GetAtt" in value:
            t = value["Fn::GetAtt"]
            return t[0] if isinstance(t, list) else str(t).split(".")[0]
    return None


def dead_letter_queues(resources):
    found = set()
    for body in resources.values():
        props = body.get("Properties", {})
        kind = body.get("Type")
        if kind == "AWS::SQS::Queue":
            found.add(target(props.get("RedrivePolicy", {}).get("deadLetterTargetArn")))
        if kind == "AWS::Scheduler::Schedule":
            found.add(target(props.get("Target", {}).get("DeadLetterConfig", {}).get("Arn")))
        if kind == "AWS::Lambda::EventInvokeConfig":
            on_failure = props.get("DestinationConfig", {}).get("OnFailure", {})
            found.add(target(on_failure.get("Destination")))
    found.discard(None)
    return found


def alarms(resources):
    out = []
    for name, body in resources.items():
        if body.get("Type") != "AWS::CloudWatch::Alarm":
            continue
        props = body.get("Properties", {})
        if not any(target(a) == TOPIC for a in as_list(props.get("AlarmActions"))):
            continue
        dims = {d.get("Name"): target(d.get("Value")) for d in as_list(props.get("Dimensions"))}
        out.append((name, props.get("Namespace"), props.get("MetricName"), dims,
                    props.get("ComparisonOperator"), props.get("Threshold")))
    return out


def has(found, namespace, metric, dimension, resource, zero=False):
    for _, ns, m, dims, op, threshold in found:
        if ns == namespace and m == metric and dims.get(dimension) == resource:
            if not zero or (op == "GreaterThanThreshold" and str(threshold) in ("0", "0.0")):
                return True
    return False


def violations(template):
    resources = template.get("Resources", {})
    found = alarms(resources)
    problems = []
    dlqs = dead_letter_queues(resources)
    if not dlqs:
        problems.append("no dead-letter queue found: the check would prove nothing")
    for queue in sorted(dlqs):
        if queue not in resources:
            problems.append(f"{queue}: a dead-letter target that is not a resource of this template")
        elif not has(found, "AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", queue, zero=True):
            problems.append(f"dead-letter queue {queue} has no alarm on its depth > 0 notifying {TOPIC}")
    for name, body in sorted(resources.items()):
        kind = body.get("Type")
        if kind == "AWS::SQS::Queue" and "RedrivePolicy" in body.get("Properties", {}):
            if not has(found, "AWS/SQS", "ApproximateAgeOfOldestMessage", "QueueName", name):
                problems.append(f"work queue {name} has no alarm on the age of its oldest message")
        if kind == "AWS::Lambda::Function":
            for metric in ("Errors", "Throttles"):
                if not has(found, "AWS/Lambda", metric, "FunctionName", name, zero=True):
                    problems.append(f"function {name} has no alarm on {metric} > 0")
    return problems


def self_test(template):
    """Removes each watched alarm in turn; the check must notice every time."""
    failures = []
    resources = template["Resources"]
    if violations(template):
        return ["the template does not pass to begin with"]
    watched = [name for name, *_ in alarms(resources)
               if resources[name]["Properties"].get("Namespace") in ("AWS/SQS", "AWS/Lambda")]
    if not watched:
        return ["no alarm found"]
    for name in watched:
        mutated = copy.deepcopy(template)
        del mutated["Resources"][name]
        if not violations(mutated):
            failures.append(f"removing {name} was not noticed")
    return failures


def main(args):
    test = args[:1] == ["--self-test"]
    if test:
        args = args[1:]
    if len(args) != 1:
        sys.exit("usage: check_alarms.py [--self-test] translated.json")
    with open(args[0], encoding="utf-8") as f:
        template = json.load(f)
    problems = self_test(template) if test else violations(template)
    for problem in problems:
        print(f"  {problem}", file=sys.stderr)
    if problems:
        sys.exit("alarms check failed: " + ("the check misses removed alarms" if test
                                             else "something is not watched"))
    if test:
        print("alarms check self-test: every removed alarm is noticed")
    else:
        resources = template["Resources"]
        print(f"alarms check: {len(dead_letter_queues(resources))} dead-letter queues, every work "
              "queue and every function have their alarms")


if __name__ == "__main__":
    main(sys.argv[1:])
