"""engine/provenance.py: the in-toto/SLSA statement of an artifact, and its check."""
from __future__ import annotations

import copy

from tfbuild.engine import provenance

RECORD = {"fingerprint": "f" * 64, "settings": {"double.factor": 2},
          "inputs": {"source": "e" * 64, "data": {"in.txt": "d" * 64}},
          "code": {"tfbuild/x.py": "c" * 64}, "env": {"faketool": "1.0"}}
OUTPUTS = {"data.txt": "a" * 64}


def statement() -> dict:
    return provenance.statement("double", RECORD, OUTPUTS, 1_700_000_000.0)


def test_the_statement_names_outputs_inputs_settings_and_tools():
    stmt = statement()
    assert stmt["_type"] == provenance.STATEMENT and stmt["predicateType"] == provenance.PREDICATE
    assert stmt["subject"] == [{"name": "double/data.txt", "digest": {"sha256": "a" * 64}}]
    build = stmt["predicate"]["buildDefinition"]
    assert build["externalParameters"] == {"stage": "double", "settings": {"double.factor": 2}}
    assert build["resolvedDependencies"] == [
        {"name": "data/in.txt", "digest": {"sha256": "d" * 64}},
        {"name": "source", "uri": "tfbuild:stage/source", "digest": {"sha256": "e" * 64}}]
    run = stmt["predicate"]["runDetails"]
    assert run["builder"]["version"]["faketool"] == "1.0"
    assert run["metadata"]["invocationId"] == "f" * 64
    assert run["metadata"]["startedOn"] == "2023-11-14T22:13:20Z"


def test_a_statement_holds_for_its_own_build():
    assert provenance.check(statement(), "double", RECORD, OUTPUTS) == []


def test_each_disagreement_is_named():
    assert provenance.check(statement(), "double", RECORD, {"data.txt": "b" * 64}) == \
        ["subjects differ from the outputs"]
    other = copy.deepcopy(RECORD)
    other["inputs"]["source"] = "9" * 64
    other["settings"] = {"double.factor": 3}
    other["fingerprint"] = "0" * 64
    assert provenance.check(statement(), "double", other, OUTPUTS) == [
        "resolved dependencies differ from the inputs", "parameters differ from the settings",
        "invocation differs from the fingerprint"]


def test_what_is_not_a_statement():
    for stmt in (None, {}, {**statement(), "predicateType": "https://example.com/other"}):
        assert provenance.check(stmt, "double", RECORD, OUTPUTS) == \
            ["not an in-toto statement with a SLSA v1 predicate"]
