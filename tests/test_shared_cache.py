"""The shared cache end to end: real TensorFlow builds, a real S3 server on 127.0.0.1."""
from __future__ import annotations

import json
from pathlib import Path

import pytest


def artifacts(root: Path) -> dict:
    return {p.relative_to(root).as_posix(): p.read_bytes()
            for p in (root / "build" / "store").rglob("*") if p.is_file() and p.name != "bench.json"
            and p.name != "provenance.json"}


@pytest.fixture
def cached(tfbuild, project, s3, monkeypatch):
    """tiny_tflite built once in `project`, pushed to a fresh bucket; returns (url, clone dir)."""
    url = s3.bucket("tfbuild") + "/ci"
    run = tfbuild(f"cache.url={url}")
    assert run.code == 0 and run.built() == ["train", "placeholder", "freeze", "tflite"], run.err
    clone = project / "clone"
    clone.mkdir()
    monkeypatch.chdir(clone)
    return url, clone


def test_a_fresh_checkout_fetches_everything_byte_identical(tfbuild, project, cached):
    url, clone = cached
    run = tfbuild(f"cache.url={url}")
    assert run.code == 0 and run.built() == []
    assert set(run.reasons().values()) == {"fetched from cache"}
    assert artifacts(clone) == artifacts(project)
    assert (clone / "tfbuild.lock").read_text() == (project / "tfbuild.lock").read_text()
    verified = tfbuild("verify=true")   # rebuilt from scratch: identical, provenance holds
    assert verified.code == 0, verified.out
    assert set(verified.reasons().values()) == {"rebuilt from scratch: identical to the lock file"}


def test_verify_fails_when_a_published_statement_lies(tfbuild, cached):
    url, clone = cached
    assert tfbuild(f"cache.url={url}").code == 0
    (statement,) = (clone / "build" / "store" / "freeze").glob("*/provenance.json")
    stmt = json.loads(statement.read_text())
    stmt["subject"][0]["digest"]["sha256"] = "0" * 64
    statement.write_text(json.dumps(stmt))
    run = tfbuild("verify=true")
    assert run.code == 1
    assert run.reasons()["freeze"].startswith("provenance: ") and "subjects differ" in run.reasons()["freeze"]


def test_an_unreachable_cache_warns_and_builds_locally_without_leaking_secrets(tfbuild, project):
    secret = "Zm9vYmFyYmF6cXV4c2VjcmV0"
    run = tfbuild("cache.url=s3://team-cache/tfbuild", "+cache.options.key=AKIAEXAMPLE",
                  f"+cache.options.secret={secret}", "+cache.options.endpoint_url=http://127.0.0.1:9")
    assert run.code == 0 and run.built() == ["train", "placeholder", "freeze", "tflite"]
    said = " ".join(run.err.split())
    assert "warning: cache s3://team-cache/tfbuild unreachable while fetching train" in said
    assert "127.0.0.1:9" in said   # the endpoint is no secret: it helps
    everything = run.out + run.err + json.dumps(run.report) + (project / "tfbuild.lock").read_text()
    assert secret not in everything
    assert "cache" not in (project / "tfbuild.lock").read_text()


@pytest.mark.parametrize("url", ["s3//bucket", "bucket/prefix", "nosuch://bucket/x"])
def test_a_malformed_cache_url_is_one_line_and_exit_2(tfbuild, project, url):
    run = tfbuild(f"cache.url={url}")
    assert run.code == 2
    lines = run.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tfbuild: error: cache.url"), run.err
    assert not (project / "build" / "store").exists()


def test_a_missing_signing_key_is_one_line_and_exit_2(tfbuild, project):
    run = tfbuild("sign.key=no/such/key.pem")
    assert run.code == 2 and run.err.strip() == "tfbuild: error: sign.key=no/such/key.pem is not a file: give a PEM key file"
    assert not (project / "build" / "store").exists()
