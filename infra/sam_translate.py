"""Translates the SAM template to plain CloudFormation offline, for the second cfn-lint pass.

cfn-lint checks AWS::Serverless::* against SAM's schema only (bad values pass); linting the
translation catches them. The translator needs code in S3, so CodeUri is replaced by a dummy.
Usage: python sam_translate.py template.yaml out.json
"""

import json
import os
import sys

from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import yaml_parse


class NoManagedPolicies:
    """The template uses inline policies only; no AWS account is asked for managed ones."""

    def load(self):
        return {}


def main(source, target):
    os.environ.setdefault("AWS_DEFAULT_REGION", "eu-central-1")
    with open(source, encoding="utf-8") as f:
        template = yaml_parse(f.read())
    dummy = {"Bucket": "lint-only", "Key": "bootstrap.zip"}
    template.get("Globals", {}).get("Function", {}).pop("CodeUri", None)
    for resource in template.get("Resources", {}).values():
        if resource.get("Type") == "AWS::Serverless::Function":
            resource.setdefault("Properties", {})["CodeUri"] = dummy
    translated = transform(template, {}, NoManagedPolicies())
    with open(target, "w", encoding="utf-8") as f:
        json.dump(translated, f, indent=1)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: sam_translate.py template.yaml out.json")
    main(sys.argv[1], sys.argv[2])
