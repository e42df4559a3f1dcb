"""Signed artifacts (model-signing, elliptic-curve keys): signed before publishing,
carried by the cache, checked by verify=true."""
from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest

import fakes
from fakes import statuses
from tfbuild.engine.verify import verify
from tfbuild.engine.cache import Remote
from tfbuild.errors import ConfigError

pytest.importorskip("model_signing", reason="the `sign` extra (model-signing) is not installed")
from tfbuild.signing import FILE, Signer  # noqa: E402


def keypair(folder: Path, name: str):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    key = ec.generate_private_key(ec.SECP256R1())
    private, public = folder / f"{name}.pem", folder / f"{name}.pub.pem"
    private.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    public.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                     serialization.PublicFormat.SubjectPublicKeyInfo))
    return str(private), str(public)


@pytest.fixture
def keys(tmp_path):
    return keypair(tmp_path, "team")


def entries(build_dir: Path, stage: str) -> list:
    return sorted((build_dir / "store" / stage).iterdir())


def test_every_built_artifact_is_signed_and_the_signature_checks(project, keys):
    private, public = keys
    report = project.build(signer=Signer(private, None))
    assert report["ok"]
    checker = Signer(None, public)
    for stage in ("source", "double", "tail"):
        (root,) = entries(project.opts.build_dir, stage)
        assert (root / FILE).is_file()
        assert checker.problem(root) is None
    (root,) = entries(project.opts.build_dir, "double")
    (root / fakes.OUT).write_text("tampered")
    assert "mismatch" in checker.problem(root)


def test_the_signature_travels_with_the_cache_entry(project, keys, tmp_path):
    private, public = keys
    url = f"file://{tmp_path}/cache"
    project.build(signer=Signer(private, None), remote=Remote(url, {}, warn=print))
    clone = project.options(build_dir=tmp_path / "clone" / "build")
    report = project.build(remote=Remote(url, {}, warn=print), build_dir=clone.build_dir)
    assert set(statuses(report).values()) == {"fresh"}
    (root,) = entries(clone.build_dir, "tail")
    assert Signer(None, public).problem(root) is None


def test_verify_checks_signatures_with_the_public_key(project, keys, tmp_path):
    private, public = keys
    project.build(signer=Signer(private, None))
    opts = dataclasses.replace(project.opts, signer=Signer(None, public))
    report = verify(fakes.Cfg(), fakes.registry(), opts, "t", project.reporter).to_json()
    assert report["ok"], report["stages"]
    _, stranger = keypair(tmp_path, "stranger")
    report = verify(fakes.Cfg(), fakes.registry(), dataclasses.replace(opts, signer=Signer(None, stranger)),
                    "t", project.reporter).to_json()
    assert not report["ok"]
    assert all(s["reason"].startswith("signature: ") for s in report["stages"])
    (root,) = entries(project.opts.build_dir, "double")
    (root / FILE).unlink()
    report = verify(fakes.Cfg(), fakes.registry(), opts, "t", project.reporter).to_json()
    assert statuses(report) == {"source": "built", "double": "failed", "tail": "built"}
    shutil.rmtree(project.opts.build_dir / "store" / "tail")
    report = verify(fakes.Cfg(), fakes.registry(), opts, "t", project.reporter).to_json()
    assert "no copy in" in [s for s in report["stages"] if s["name"] == "tail"][0]["reason"]


def test_a_missing_key_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="sign.key=.* is not a file"):
        Signer(str(tmp_path / "nope.pem"), None)
