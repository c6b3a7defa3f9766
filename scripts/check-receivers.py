#!/usr/bin/env python3
"""Validates ThanosReceiver manifests strictly against the generated CRD schema.

Usage: check-receivers.py FILE...   (YAML files, or Markdown whose ```yaml blocks are searched)

Unknown fields are refused: the API server (before 1.25) drops them silently, so a misspelt
field would leave its default in force without a word. Prints one line per resource checked and
exits 1 on the first invalid one. Needs PyYAML and jsonschema (scripts/setup.sh installs both).
"""
import re
import sys
from pathlib import Path

import jsonschema
import yaml

CRD = Path(__file__).resolve().parent.parent / "crds/thanosreceivers.receiver.thanos-rs.io.yaml"


def strict(schema):
    """The schema with `additionalProperties: false` wherever Kubernetes would prune unknowns."""
    if isinstance(schema, dict):
        schema = {k: strict(v) for k, v in schema.items()}
        if (
            schema.get("type") == "object"
            and "properties" in schema
            and "additionalProperties" not in schema
            and not schema.get("x-kubernetes-preserve-unknown-fields")
        ):
            schema["additionalProperties"] = False
        return schema
    if isinstance(schema, list):
        return [strict(s) for s in schema]
    return schema


def documents(path):
    text = path.read_text()
    if path.suffix == ".md":
        blocks = re.findall(r"```ya?ml\n(.*?)```", text, re.S)
    else:
        blocks = [text]
    for block in blocks:
        for doc in yaml.safe_load_all(block):
            if isinstance(doc, dict) and doc.get("kind") == "ThanosReceiver":
                yield doc


def main(paths):
    crd = yaml.safe_load(CRD.read_text())
    version = crd["spec"]["versions"][0]
    schema = strict(version["schema"]["openAPIV3Schema"])
    checked = 0
    for path in map(Path, paths):
        for doc in documents(path):
            name = f"{path}: {doc.get('metadata', {}).get('name', '?')}"
            want = f"{crd['spec']['group']}/{version['name']}"
            if doc.get("apiVersion") != want:
                print(f"INVALID {name}: apiVersion {doc.get('apiVersion')!r}, expected {want!r}")
                return 1
            # apiVersion, kind and metadata are the API server's to check.
            body = {k: v for k, v in doc.items() if k not in ("apiVersion", "kind", "metadata")}
            errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(body), key=str)
            if errors:
                for e in errors:
                    where = "/".join(map(str, e.absolute_path)) or "(top)"
                    print(f"INVALID {name}: {where}: {e.message}")
                return 1
            print(f"ok {name}")
            checked += 1
    if checked == 0:
        print("no ThanosReceiver found")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
