"""Provenance: an in-toto statement with a SLSA v1 predicate for each artifact.

It says which output digests (subjects) came from which inputs (upstream
fingerprints, input file digests), settings, code and tools. It is written
beside the manifest and travels with a cache entry; it is not an output, so
its timestamps change no fingerprint. `check` is what `verify=true` runs.
"""
from __future__ import annotations

from datetime import datetime, timezone
from typing import List

from .. import __version__

STATEMENT = "https://in-toto.io/Statement/v1"
PREDICATE = "https://slsa.dev/provenance/v1"
BUILD_TYPE = "https://github.com/tfbuild/tfbuild/stage@v1"
BUILDER = "https://github.com/tfbuild/tfbuild"
FILE = "provenance.json"


def statement(stage: str, record: dict, outputs: dict, started: float) -> dict:
    """record: the stage's lock record (fingerprint, settings, inputs, code, env)."""
    return {
        "_type": STATEMENT,
        "subject": [{"name": f"{stage}/{name}", "digest": {"sha256": digest}}
                    for name, digest in sorted(outputs.items())],
        "predicateType": PREDICATE,
        "predicate": {
            "buildDefinition": {
                "buildType": BUILD_TYPE,
                "externalParameters": {"stage": stage, "settings": record["settings"]},
                "internalParameters": {"code": record["code"]},
                "resolvedDependencies": _dependencies(record["inputs"]),
            },
            "runDetails": {
                "builder": {"id": BUILDER, "version": {"tfbuild": __version__, **record["env"]}},
                "metadata": {"invocationId": record["fingerprint"], "startedOn": _time(started),
                             "finishedOn": _time(None)},
            },
        },
    }


def _dependencies(inputs: dict) -> List[dict]:
    deps = []
    for label, value in sorted(inputs.items()):
        if isinstance(value, dict):  # input files: {relative name: sha256}
            deps += [{"name": f"{label}/{name}", "digest": {"sha256": d}} for name, d in sorted(value.items())]
        else:  # an upstream stage, by fingerprint
            deps.append({"name": label, "uri": f"tfbuild:stage/{label}", "digest": {"sha256": value}})
    return deps


def _time(stamp) -> str:
    when = datetime.fromtimestamp(stamp, timezone.utc) if stamp else datetime.now(timezone.utc)
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def check(stmt, stage: str, record: dict, outputs: dict) -> List[str]:
    """What in a statement disagrees with a build's record and outputs (empty: it holds)."""
    if not isinstance(stmt, dict) or stmt.get("_type") != STATEMENT or stmt.get("predicateType") != PREDICATE:
        return ["not an in-toto statement with a SLSA v1 predicate"]
    problems = []
    subjects = {s.get("name"): s.get("digest", {}).get("sha256") for s in stmt.get("subject", [])}
    if subjects != {f"{stage}/{n}": d for n, d in outputs.items()}:
        problems.append("subjects differ from the outputs")
    build = stmt.get("predicate", {}).get("buildDefinition", {})
    if build.get("resolvedDependencies") != _dependencies(record["inputs"]):
        problems.append("resolved dependencies differ from the inputs")
    if build.get("externalParameters") != {"stage": stage, "settings": record["settings"]}:
        problems.append("parameters differ from the settings")
    if stmt["predicate"].get("runDetails", {}).get("metadata", {}).get("invocationId") != record["fingerprint"]:
        problems.append("invocation differs from the fingerprint")
    return problems
