"""Signed artifacts through the `model-signing` package (extra `sign`).

With `sign.key` (an elliptic-curve private key, PEM), every artifact this run
builds gets `model.sig`, a Sigstore bundle over its files (outputs, manifest,
provenance statement), made before the artifact is published and carried in
its cache entry. With `sign.public_key`, `verify=true` checks the signature
of this machine's copy of every artifact. Why model-signing: it is the
OpenSSF's format for model signatures, verifiable without tfbuild.
"""
from __future__ import annotations

import importlib
from pathlib import Path
from typing import Optional

from .engine.store import MEASUREMENT, SIGNATURE as FILE
from .errors import ConfigError

_UNSIGNED = (FILE, MEASUREMENT)   # the signature itself; measurements come later


class Signer:
    def __init__(self, key: Optional[str], public_key: Optional[str]):
        for name, path in (("sign.key", key), ("sign.public_key", public_key)):
            if path and not Path(path).is_file():
                raise ConfigError(f"{name}={path} is not a file: give a PEM key file")
        try:
            importlib.import_module("model_signing")  # fail here, not after a build
        except ImportError as e:
            raise ConfigError(f"sign.key/sign.public_key need model-signing ({e.name} is missing): "
                              "pip install 'tfbuild[sign]'") from None
        self.key, self.public_key = key, public_key

    def _hashing(self):
        import model_signing
        return model_signing.hashing.Config().set_ignored_paths(paths=list(_UNSIGNED))

    def sign(self, root: Path) -> None:
        import model_signing
        if self.key:
            model_signing.signing.Config().set_hashing_config(self._hashing()) \
                .use_elliptic_key_signer(private_key=self.key).sign(root, root / FILE)

    def problem(self, root: Path) -> Optional[str]:
        """Why `root`'s signature does not hold for sign.public_key, or None."""
        import model_signing
        if not (root / FILE).is_file():
            return f"{FILE} missing (build with sign.key=...)"
        try:
            model_signing.verifying.Config().set_hashing_config(self._hashing()) \
                .use_elliptic_key_verifier(public_key=self.public_key).verify(root, root / FILE)
        except Exception as e:   # model-signing raises ValueError and crypto errors alike
            return str(e).splitlines()[0][:200]
        return None
