"""The shared artifact cache: what other machines built, through fsspec.

Layout under `cache.url` (Bazel's remote cache, DVC's run-cache):

    cas/<sha256>                       one blob per output file, by content
    ac/<stage>/<fingerprint>.json      the entry: outputs, metadata, provenance
    ac/<stage>/<fingerprint>.bench.json  the latest measurement (not identity)
    ac/<stage>/<fingerprint>.lease     "I am building this": others wait, then fetch

Blobs go up first, the entry last and only once (a conditional put), so a
reader sees a whole entry or none. Whatever the remote does wrong — down,
misconfigured, a corrupt blob — is a warning and a local build: the cache can
make a build faster, never fail it. Nothing here touches the network until a
stale stage asks, so a no-op build makes no call.
"""
from __future__ import annotations

import json
import os
import re
import socket
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, Optional

from ..errors import ConfigError, first_line
from .fingerprint import sha256_file

SCHEMA = 1
_URL = re.compile(r"^([a-z][a-z0-9+.-]*)://(\S+)$")
_EXTRA = {"s3": "s3fs", "s3a": "s3fs", "gs": "gcsfs", "gcs": "gcsfs"}
# A cache that is down should cost seconds, not botocore's default retry schedule.
_S3_CLIENT = {"connect_timeout": 5, "read_timeout": 60, "retries": {"max_attempts": 2}}


class CorruptEntry(Exception):
    """A remote entry or blob that must not be used."""


def check_url(url: str) -> None:
    """Reject what no backend could read, before anything runs (no import, no network)."""
    m = _URL.match(url)
    if m and m.group(2).strip("/"):
        return
    if url.startswith("/") and " " not in url:
        return  # a plain absolute path: a shared mount
    raise ConfigError(f"cache.url {public(url)!r} is not a URL: use s3://bucket/prefix, "
                      "gs://bucket/prefix or file:///absolute/path")


def public(url: str) -> str:
    """The URL without any user:password@ in it (for messages)."""
    return re.sub(r"[^/@]*:[^/@]*@", "", url)


class Remote:
    """One shared cache for one run. `warn` reports a problem once, in one line;
    `info` says when this run waits for another machine's build."""

    BEAT = 15.0    # seconds between a builder's lease heartbeats
    DEAD = 60.0    # a lease unchanged this long (by the waiter's clock) lost its builder
    POLL = 1.0

    def __init__(self, url: str, options: Dict[str, Any], *, push: bool = True,
                 pull: bool = True, warn: Callable[[str], None] = print,
                 info: Callable[[str], None] = print):
        check_url(url)
        self.url, self.options = url.rstrip("/"), dict(options)
        self.push_on, self.pull_on, self._warn, self._info = push, pull, warn, info
        self._fs = self._root = None
        self.down = False          # after the first failure the run stays local
        self._damaged: set = set()  # entries seen corrupt: overwrite them on push
        self._leases: Dict[str, threading.Event] = {}   # held lease path -> stop its heartbeat

    # -- connection ---------------------------------------------------------
    def open(self) -> None:
        """Load the backend (no network): a missing library or protocol is exit 2."""
        if self._fs is not None or not (self.push_on or self.pull_on):
            return
        protocol = (_URL.match(self.url) or [None, "file"])[1]
        try:
            from fsspec.core import url_to_fs
            # A new instance: fsspec's instance cache would keep an old client (and endpoint).
            self._fs, self._root = url_to_fs(self.url, skip_instance_cache=True,
                                             **_with_defaults(protocol, self.options))
        except ImportError as e:
            needs = f"needs {_EXTRA[protocol]}: pip install 'tfbuild[remote]'" if protocol in _EXTRA \
                else self._clean(e)
            raise ConfigError(f"cache.url {public(self.url)}: {needs}") from None
        except ValueError as e:  # fsspec: "Protocol not known"
            raise ConfigError(f"cache.url {public(self.url)}: {self._clean(e)}: use s3://, gs:// "
                              "or file://") from None

    def _guard(self, what: str, action: Callable[[], Any]) -> Any:
        """Run one remote action; any failure turns the cache off for this run."""
        if self.down:
            return None
        try:
            self.open()
            return action()
        except (CorruptEntry, ConfigError):
            raise
        except Exception as e:  # botocore, aiohttp, OSError ...: all mean "not now"
            self.down = True
            self._warn(f"cache {public(self.url)} unreachable while {what} "
                       f"({type(e).__name__}: {self._clean(e)}): building locally")
            return None

    def _clean(self, error: BaseException) -> str:
        """An error's first line with credentials from the options masked."""
        text = first_line(error)
        for value in _strings(self.options):
            text = text.replace(value, "***")
        return text

    def _path(self, *parts: str) -> str:
        return "/".join([self._root.rstrip("/"), *parts])

    def _entry(self, stage: str, fingerprint: str, suffix: str = ".json") -> str:
        return self._path("ac", stage, fingerprint + suffix)

    # -- pull ---------------------------------------------------------------
    def fetch(self, stage: str, fingerprint: str, into: Path) -> Optional[dict]:
        """Download a whole, verified entry into `into`; its manifest, or None: then
        build it (with push on, this run holds its lease until `push` or `release`)."""
        if not self.pull_on:
            return None
        try:
            return self._guard(f"fetching {stage}", lambda: self._fetch_or_claim(stage, fingerprint, into))
        except CorruptEntry as e:
            self._damaged.add((stage, fingerprint))
            self._warn(f"cache entry {stage}/{fingerprint[:12]} is unusable ({e}): building "
                       f"locally{', and repairing it' if self.push_on else ''}")
            return None

    def _fetch_or_claim(self, stage: str, fingerprint: str, into: Path) -> Optional[dict]:
        """While another machine holds the lease, wait for its entry (a sweep's
        jobs build a shared stage once); take over a lease that stopped beating."""
        lease, seen, since = self._entry(stage, fingerprint, ".lease"), None, time.monotonic()
        while True:
            entry = self._fetch(stage, fingerprint, into)
            if entry is not None or not self.push_on:
                return entry
            token = json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "beat": 0}).encode()
            if self._put(lease, token, create=True):
                self._hold(lease, token)
                return None
            try:
                holder = self._fs.cat_file(lease)
            except FileNotFoundError:
                continue  # released meanwhile: its entry is there now, or it failed
            if holder != seen:
                if seen is None:
                    self._info(f"{stage}: {_who(holder)} is building it, waiting for the cache")
                seen, since = holder, time.monotonic()
            elif time.monotonic() - since > self.DEAD:
                self._warn(f"{stage}: {_who(holder)} stopped building it, building here")
                self._fs.rm_file(lease)
                continue
            time.sleep(self.POLL)

    def _hold(self, lease: str, token: bytes) -> None:
        """Rewrite the lease every BEAT seconds until released: proof of life."""
        stop = self._leases[lease] = threading.Event()

        def beat():
            n = 0
            while not stop.wait(self.BEAT):
                n += 1
                try:
                    self._put(lease, token.replace(b'"beat": 0', f'"beat": {n}'.encode()))
                except Exception:
                    pass  # the build goes on; waiters take over after DEAD
        threading.Thread(target=beat, daemon=True).start()

    def release(self, stage: str, fingerprint: str) -> None:
        """Drop this run's lease (after a push, or when the build failed)."""
        lease = self._entry(stage, fingerprint, ".lease") if self._root is not None else None
        stop = self._leases.pop(lease, None)
        if stop:
            stop.set()
            try:
                self._fs.rm_file(lease)
            except Exception:
                pass  # waiters take over after DEAD

    def _fetch(self, stage: str, fingerprint: str, into: Path) -> Optional[dict]:
        try:
            raw = self._fs.cat_file(self._entry(stage, fingerprint))
        except FileNotFoundError:
            return None
        entry = _parse(raw, stage, fingerprint)
        for name, digest in entry["outputs"].items():
            target = into / name
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                self._fs.get_file(self._path("cas", digest), str(target))
            except FileNotFoundError:
                raise CorruptEntry(f"blob of {name} missing") from None
            if sha256_file(target) != digest:
                raise CorruptEntry(f"blob of {name} does not match its digest")
        return entry

    def fetch_measurement(self, stage: str, fingerprint: str) -> Optional[dict]:
        def get():
            try:
                return json.loads(self._fs.cat_file(self._entry(stage, fingerprint, ".bench.json")))
            except (FileNotFoundError, ValueError):
                return None
        return self._guard(f"fetching the measurement of {stage}", get) if self.pull_on else None

    # -- push ---------------------------------------------------------------
    def push(self, stage: str, fingerprint: str, root: Path, entry: dict) -> None:
        """Upload a published artifact's blobs, then its entry (once)."""
        if self.push_on:
            self._guard(f"pushing {stage}", lambda: self._push(stage, fingerprint, root, entry))

    def _push(self, stage: str, fingerprint: str, root: Path, entry: dict) -> None:
        repair = (stage, fingerprint) in self._damaged
        for name, digest in sorted(entry["outputs"].items()):
            blob = self._path("cas", digest)
            if repair or not self._fs.exists(blob):
                self._put_file(root / name, blob)
        data = json.dumps({"schema": SCHEMA, **entry}, indent=1, sort_keys=True).encode()
        self._put(self._entry(stage, fingerprint), data, create=not repair)
        self._damaged.discard((stage, fingerprint))
        self.release(stage, fingerprint)

    def push_measurement(self, stage: str, fingerprint: str, figures: dict) -> None:
        if self.push_on:
            data = json.dumps(figures, indent=1, sort_keys=True).encode()
            self._guard(f"pushing the measurement of {stage}",
                        lambda: self._put(self._entry(stage, fingerprint, ".bench.json"), data))

    def _put(self, path: str, data: bytes, create: bool = False) -> bool:
        """Write whole or not at all; `create`: only if absent. False: another
        writer was first (for an entry: the same content, by construction)."""
        if _is_local(self._fs):
            return _local_put(path, data, create)
        try:
            self._fs.pipe_file(path, data, mode="create" if create else "overwrite")
            return True
        except FileExistsError:
            return False

    def _put_file(self, local: Path, path: str) -> None:
        if _is_local(self._fs):
            return _local_put(path, local.read_bytes(), create=False)
        self._fs.put_file(str(local), path)  # S3/GCS: an object appears whole


def _with_defaults(protocol: str, options: dict) -> dict:
    if protocol in ("s3", "s3a") and "config_kwargs" not in options:
        return {**options, "config_kwargs": _S3_CLIENT}
    return options


def _parse(raw: bytes, stage: str, fingerprint: str) -> dict:
    try:
        entry = json.loads(raw)
    except ValueError:
        raise CorruptEntry("entry is not valid JSON") from None
    ok = (isinstance(entry, dict) and entry.get("schema") == SCHEMA and entry.get("stage") == stage
          and entry.get("fingerprint") == fingerprint and isinstance(entry.get("outputs"), dict)
          and isinstance(entry.get("metadata"), dict))
    if not ok:
        raise CorruptEntry("entry is incomplete or of another stage")
    return entry


def _is_local(fs) -> bool:
    return "file" in (fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,))


def _who(lease: bytes) -> str:
    try:
        holder = json.loads(lease)
        return f"{holder['host']} (pid {holder['pid']})"
    except (ValueError, KeyError, TypeError):
        return "another machine"


def _local_put(path: str, data: bytes, create: bool) -> bool:
    """A shared mount: write a temporary file, then link (exclusive) or rename it in."""
    folder = os.path.dirname(path)
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        if create:
            try:
                os.link(tmp, path)
            except FileExistsError:
                return False
        else:
            os.replace(tmp, path)
        return True
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


_SECRET = re.compile(r"key|secret|token|pass|cred|auth|session|sig", re.I)


def _strings(value, secret: bool = False) -> list:
    """Every string under a secret-looking key in nested options (masked in messages)."""
    if isinstance(value, str):
        return [value] if secret and len(value) >= 4 else []
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in _strings(v, secret or bool(_SECRET.search(str(k))))]
    if isinstance(value, (list, tuple)):
        return [s for v in value for s in _strings(v, secret)]
    return []
