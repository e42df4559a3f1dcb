"""engine/reasons.py: reasons are data, rendered to the exact text the report and README show."""
from __future__ import annotations

import dataclasses

import pytest

from tfbuild.engine.reasons import Reason, text


@pytest.mark.parametrize("reason, expected", [
    (Reason("up-to-date"), "up to date"),
    (Reason("up-to-date", "built before"), "up to date (built before)"),
    (Reason("not-built"), "not built yet"),
    (Reason("damaged", "output frozen.pb missing"), "output frozen.pb missing"),
    (Reason("forced"), "forced"),
    (Reason("upstream-forced", "freeze"), "upstream freeze forced"),
    (Reason("version", "tensorflow", "2.15.0", "2.16.1"), "tensorflow version changed: 2.15.0 → 2.16.1"),
    (Reason("code", new=("a.py",)), "code changed: a.py"),
    (Reason("code", new=("a.py", "b.py", "c.py", "d.py")), "code changed: a.py, b.py, c.py …"),
    (Reason("setting", "freeze.outputs", ["probs"], ["logits"]), "freeze.outputs changed: [probs] → [logits]"),
    (Reason("setting", "tail.suffix", "!", None), "tail.suffix changed: ! → null"),
    (Reason("input-artifact", "freeze"), "input freeze artifact changed"),
    (Reason("input-renamed", "checkpoint", "model.ckpt-200", "model.ckpt-300"),
     "input checkpoint changed: model.ckpt-200 → model.ckpt-300"),
    (Reason("input-content", "data"), "input data content changed"),
    (Reason("fingerprint"), "its fingerprint"),
    (Reason("not-locked"), "not in the lock file"),
    (Reason("not-reached"), "not reached: an earlier stage failed"),
    (Reason("failed", "boom: it failed"), "boom: it failed"),
    (Reason("crashed", "RuntimeError", new="division by zero"), "RuntimeError: division by zero"),
    (Reason("meanwhile"), "built meanwhile by a parallel job"),
    (Reason("fetched"), "fetched from cache"),
    (Reason("unlisted"), "not in the lock file: rebuild and commit it"),
    (Reason("differs", new=(Reason("setting", "k", 1, 2), Reason("input-artifact", "x"))),
     "differs from the lock file in k changed: 1 → 2; input x artifact changed: rebuild and commit it"),
    (Reason("differs", new=()), "differs from the lock file in its fingerprint: rebuild and commit it"),
    (Reason("output-differs", new=("a.txt", "b.txt")), "output differs from the lock file: a.txt, b.txt"),
    (Reason("identical"), "rebuilt from scratch: identical to the lock file"),
    (Reason("provenance", "subjects differ from the outputs"), "provenance: subjects differ from the outputs"),
    (Reason("provenance", "subjects differ", old="/b/provenance.json"),
     "provenance: /b/provenance.json: subjects differ"),
    (Reason("signature", "model.sig missing"), "signature: model.sig missing"),
    (Reason("not-in-target"), "in the lock file but not in this target: rebuild and commit it"),
])
def test_each_kind_renders_to_its_sentence(reason, expected):
    assert str(reason) == expected


def test_reasons_join_into_one_line():
    assert text([Reason("forced"), Reason("setting", "k", 1, 2)]) == "forced; k changed: 1 → 2"
    assert text([]) == ""


def test_an_unknown_kind_fails_when_made_not_when_printed():
    with pytest.raises(ValueError, match="unknown reason kind 'typo'"):
        Reason("typo")


def test_reasons_are_frozen_values():
    r = Reason("setting", "k", 1, 2)
    assert r == Reason("setting", "k", 1, 2) and r != Reason("setting", "k", 1, 3)
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.key = "other"
