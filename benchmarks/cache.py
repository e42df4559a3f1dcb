"""The shared cache: what a fresh checkout saves, and what a no-op pays for it.

Goals
  (a) a fresh checkout's build of tiny_tflite from a warm cache is much faster
      than a local build from scratch (ratio printed; file:// and S3);
  (b) a no-op run with a cache configured takes the same time as one without
      (within noise: ratio <= 1.1) and makes no network call.

The S3 cache is moto's server on 127.0.0.1. Runs alternate (scratch, file,
S3, scratch, ...) so a slow spell of this shared machine hits all alike.
Run: python benchmarks/cache.py     (about 2-3 minutes)
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from _common import (banner, child_env, machine, median, read_report, run, snapshot_code,  # noqa: E402
                     statuses, table, tfbuild_cmd, verdict, workdir)
from conftest import S3Server  # noqa: E402  (the tests' real S3 server on 127.0.0.1)

ROUNDS = 3
NOOPS = 9
ARGS = ["target=tiny_tflite", "bench.enabled=false"]


def build(cwd: Path, *extra: str, env=None):
    cwd.mkdir(parents=True, exist_ok=True)
    result = run([*tfbuild_cmd(), *ARGS, *extra, "report_file=report.json"], cwd, env=env).check()
    return result.wall_s, statuses(read_report(cwd / "report.json"))


def main() -> None:
    with workdir("cache") as tmp:
        print(snapshot_code(tmp))
        print(machine())
        server = S3Server()
        env = child_env(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing",
                        AWS_DEFAULT_REGION="us-east-1", AWS_ENDPOINT_URL=server.endpoint)
        try:
            caches = {"file": f"file://{tmp}/shared", "s3": server.bucket("bench") + "/c"}
            for label, url in caches.items():  # warm each cache once
                build(tmp / f"warm-{label}", f"cache.url={url}", env=env)
            times = {"scratch": [], **{k: [] for k in caches}}
            for i in range(ROUNDS):
                wall, st = build(tmp / f"scratch{i}", env=env)
                assert set(st.values()) == {"built"}, st
                times["scratch"].append(wall)
                for label, url in caches.items():
                    wall, st = build(tmp / f"{label}{i}", f"cache.url={url}", env=env)
                    assert set(st.values()) == {"fresh"}, st   # all fetched
                    times[label].append(wall)
            base = median(times["scratch"])
            names = {"scratch": "local, from scratch", "file": "fetch, file:// cache",
                     "s3": "fetch, S3 cache (moto)"}
            rows = [[names[k], median(v), base / median(v)] for k, v in times.items()]
            banner("(a) fresh checkout of tiny_tflite: local build vs fetch from a warm cache")
            print(table(["build", "median s", "speed-up"], rows))
            print(verdict(all(r[2] >= 3 for r in rows[1:]), "fetching is >= 3x faster than building"))

            noop = {"no cache": [], "s3 cache": []}
            project = tmp / "s30"
            server.stop()  # any network call now would fail, warn and slow the run
            for _ in range(NOOPS):
                noop["no cache"].append(build(project, env=env)[0])
                noop["s3 cache"].append(build(project, f"cache.url={caches['s3']}", env=env)[0])
            ratio = median(noop["s3 cache"]) / median(noop["no cache"])
            banner(f"(b) no-op, median of {NOOPS} alternating runs (the S3 server is stopped)")
            print(table(["run", "median s"], [[k, median(v)] for k, v in noop.items()]))
            print(verdict(ratio <= 1.1, f"no-op with a cache / without: {ratio:.2f}x (goal <= 1.1)"))
        finally:
            if server.process.poll() is None:
                server.stop()


if __name__ == "__main__":
    main()
