"""No-op build speed: `tfbuild target=X` when nothing is stale.

Goals
  (a) a no-op run of a fresh target does not import TensorFlow, and its wall
      time is at most 0.3x that of `python -c "import tensorflow"`;
  (b) no-op time does not grow with checkpoint size: a target over a ~1 GiB
      user checkpoint no-ops within 1.2x of one over a tiny checkpoint.

Run: python benchmarks/noop.py     (about 2-4 minutes; works in a temp dir)
"""
from __future__ import annotations

import json
import os
import sys
import textwrap
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (snapshot_code, banner, human_size, machine, median, read_report, run,  # noqa: E402
                     statuses, table, tfbuild_cmd, verdict, workdir)

REPEATS = 5
REPEATS_B = 7
GOAL_A = 0.3
GOAL_B = 1.2
BIG_SHAPE = (256, 1024, 1024)  # float32: 1 GiB

# A user's training script: a small dense model x[None,4] -> out, plus (for the
# big checkpoint) one 1 GiB variable that the output does not depend on, so
# freezing prunes it away but the checkpoint tfbuild must fingerprint is 1 GiB.
MAKE_CKPT = textwrap.dedent("""
    import sys, tensorflow as tf
    out_dir, big = sys.argv[1], sys.argv[2] == "big"
    tf.compat.v1.disable_eager_execution()
    x = tf.compat.v1.placeholder(tf.float32, [None, 4], name="x")
    w = tf.compat.v1.get_variable("w", [4, 2], initializer=tf.compat.v1.random_normal_initializer(0.0, 0.01, seed=1))
    b = tf.compat.v1.get_variable("b", [2], initializer=tf.compat.v1.zeros_initializer())
    out = tf.nn.softmax(tf.matmul(x, w) + b, name="out")
    if big:
        tf.compat.v1.get_variable("big", %r, initializer=tf.compat.v1.random_uniform_initializer(seed=2))
    saver = tf.compat.v1.train.Saver()
    with tf.compat.v1.Session() as sess:
        sess.run(tf.compat.v1.global_variables_initializer())
        saver.save(sess, out_dir + "/model.ckpt-1000")
""" % (list(BIG_SHAPE),))

TARGET = textwrap.dedent("""
    # a user's own checkpoint, frozen with its own .meta graph
    description: user checkpoint ({kind})
    checkpoint:
      path: {path}
    freeze:
      outputs: [out]
""")

# Runs the CLI in-process, then says which heavy modules the no-op imported.
PROBE = textwrap.dedent("""
    import json, sys
    from tfbuild.cli.main import main
    result = sys.argv[1]
    code = main(sys.argv[2:])  # main() rewrites sys.argv
    heavy = sorted({m.split('.')[0] for m in sys.modules} & {'tensorflow', 'keras', 'tf_keras', 'numpy', 'h5py'})
    open(result, 'w').write(json.dumps({'code': code, 'heavy': heavy, 'modules': len(sys.modules)}))
""")


def interleaved(cwd: Path, commands: dict, n: int = REPEATS) -> dict:
    """{label: (wall times, median peak RSS MB)} of n runs of each command, taken in turns.

    Commands run round-robin after one untimed warm-up each, so a slow spell of
    this shared machine (or disk writeback) hits every command alike. A
    command that is a tfbuild run gets a report file and must be a no-op.
    """
    runs = {}
    for label, args in commands.items():
        is_tfbuild = list(args[:len(tfbuild_cmd())]) == tfbuild_cmd()
        runs[label] = ([*args, f"report_file={_slug(label)}.json"] if is_tfbuild else list(args), is_tfbuild)
        run(runs[label][0], cwd).check()  # warm-up (also runs the one-time bench of a new artifact)
    times = {label: [] for label in commands}
    rss = {label: [] for label in commands}
    for _ in range(n):
        for label, (args, is_tfbuild) in runs.items():
            r = run(args, cwd).check()
            if is_tfbuild:
                st = statuses(read_report(cwd / f"{_slug(label)}.json"))
                if set(st.values()) != {"fresh"}:
                    raise RuntimeError(f"{label}: expected a no-op, got {st}")
            times[label].append(r.wall_s)
            rss[label].append(r.rss_mb)
    return {label: (times[label], median(rss[label])) for label in commands}


def _slug(label: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in label)


def importtime_top(cwd: Path, target: str, k: int = 10, depth: int = 2):
    """The slowest imports (nesting level <= depth) of one no-op, by python -X importtime."""
    r = run([sys.executable, "-X", "importtime", "-c",
             f"from tfbuild.cli.main import main; import sys; sys.exit(main(['target={target}']))"], cwd).check()
    rows = []
    for line in r.stderr.splitlines():
        if not line.startswith("import time:") or "imported package" in line:
            continue
        self_us, cum_us, name = _split_importtime(line)
        level = (len(name) - len(name.lstrip())) // 2
        if level <= depth:
            rows.append((int(cum_us) / 1e3, level, name.strip()))
    rows.sort(reverse=True)
    total = sum(ms for ms, level, _ in rows if level == 0)
    return rows[:k], total, ("tensorflow" in r.stderr)


def _split_importtime(line: str):
    body = line[len("import time:"):]
    self_us, cum_us, name = body.split("|", 2)
    return self_us.strip(), cum_us.strip(), name[1:]  # keep the indentation of the name


def main() -> int:
    print("tfbuild no-op benchmark —", machine())
    with workdir("noop") as tmp:
        print(snapshot_code(tmp), flush=True)
        # ---------------------------------------------------------------- (a)
        banner("(a) no-op of tiny_frozen vs `import tensorflow`")
        first = run([*tfbuild_cmd(), "target=tiny_frozen", "report_file=first.json",
                     "bench.enabled=false"], tmp).check()
        print(f"first build of tiny_frozen: {first.wall_s:.1f} s "
              f"({', '.join(f'{k}={v}' for k, v in statuses(read_report(tmp / 'first.json')).items())})")

        tfb = [*tfbuild_cmd(), "target=tiny_frozen"]
        got = interleaved(tmp, {"no-op": tfb, "import tensorflow": [sys.executable, "-c", "import tensorflow"],
                                "pass": [sys.executable, "-c", "pass"]})
        (noop, noop_rss), (tf_times, tf_rss), (py_times, _) = got["no-op"], got["import tensorflow"], got["pass"]

        probe = tmp / "probe.json"
        run([sys.executable, "-c", PROBE, probe, "target=tiny_frozen"], tmp).check()
        probed = json.loads(probe.read_text())
        top, import_ms, tf_in_importtime = importtime_top(tmp, "tiny_frozen")

        ratio_a = median(noop) / median(tf_times)
        tf_free = "tensorflow" not in probed["heavy"] and not tf_in_importtime
        print(table(["command", "median s", "min s", "max s", "peak RSS MB"], [
            ["python -c pass  (interpreter start)", median(py_times), min(py_times), max(py_times), None],
            ['python -c "import tensorflow"', median(tf_times), min(tf_times), max(tf_times), tf_rss],
            ["tfbuild target=tiny_frozen  (no-op)", median(noop), min(noop), max(noop), noop_rss],
        ], title=f"wall time, {REPEATS} runs each, taken in turns (fresh process per run)"))
        print(f"\nno-op / import tensorflow = {median(noop):.3f} / {median(tf_times):.3f} = {ratio_a:.3f}x "
              f"(goal <= {GOAL_A}x)")
        print(f"modules imported by the no-op: {probed['modules']}; heavy ones: "
              f"{', '.join(probed['heavy']) or 'none'}; 'tensorflow' in -X importtime output: {tf_in_importtime}")
        print()
        print(table(["cumulative ms", "level", "module (python -X importtime, one no-op: slowest imports)"],
                    [[ms, level, name] for ms, level, name in top],
                    title=f"all top-level imports together: {import_ms:.0f} ms"))
        ok_a = tf_free and ratio_a <= GOAL_A
        print(verdict(ok_a, f"(a) no-op does {'not ' if tf_free else ''}import TensorFlow and takes "
                            f"{ratio_a:.2f}x the time of `import tensorflow` (goal: no TF, <= {GOAL_A}x)"))

        # ---------------------------------------------------------------- (b)
        banner("(b) no-op over a ~1 GiB user checkpoint vs a tiny one")
        targets = tmp / "targets"
        targets.mkdir()
        sizes, first_builds, rehash = {}, {}, {}
        for kind in ("tiny", "big"):
            ckpt = tmp / f"ckpt_{kind}"
            ckpt.mkdir()
            made = run([sys.executable, "-c", MAKE_CKPT, ckpt, kind], tmp).check()
            sizes[kind] = sum(f.stat().st_size for f in ckpt.iterdir() if f.name.startswith("model.ckpt"))
            (targets / f"user_{kind}.yaml").write_text(
                TARGET.format(kind=kind, path=ckpt / "model.ckpt-1000"))
            print(f"{kind} checkpoint: {human_size(sizes[kind])} written in {made.wall_s:.1f} s")
        os.sync()  # let the 1 GiB of writeback finish before timing anything
        for kind in ("tiny", "big"):
            r = run([*tfbuild_cmd(), f"target=user_{kind}", f"report_file=first_{kind}.json",
                     "bench.enabled=false"], tmp).check()
            rep = read_report(tmp / f"first_{kind}.json")
            first_builds[kind] = (r.wall_s, rep["stages"][-1]["seconds"], r.rss_mb,
                                  rep["stages"][-1]["size"])
        os.sync()
        noops = interleaved(tmp, {kind: [*tfbuild_cmd(), f"target=user_{kind}"] for kind in ("tiny", "big")},
                            n=REPEATS_B)
        # The same no-op with the stat cache deleted: every input is read and hashed again.
        for kind in ("tiny", "big"):
            times = []
            for _ in range(3):
                (tmp / "build" / ".tfbuild" / "state.json").unlink()  # the StatCache (engine/fingerprint.py)
                r = run([*tfbuild_cmd(), f"target=user_{kind}", "report_file=rehash.json"], tmp).check()
                assert set(statuses(read_report(tmp / "rehash.json")).values()) == {"fresh"}
                times.append(r.wall_s)
            rehash[kind] = median(times)

        rows = []
        for kind in ("tiny", "big"):
            wall, freeze_s, rss, pb = first_builds[kind]
            t, rss_noop = noops[kind]
            rows.append([f"user_{kind}", human_size(sizes[kind]), wall, freeze_s, human_size(pb),
                         median(t), min(t), max(t), rehash[kind]])
        print(table(["target", "checkpoint", "first build s", "freeze s", "frozen.pb",
                     "no-op median s", "no-op min s", "no-op max s", "no-op, stat cache deleted s (median of 3)"],
                    rows, title=f"\nno-op wall time, {REPEATS_B} runs each, taken in turns; the first "
                                f"build hashes the checkpoint and restores it"))
        ratio_b = median(noops["big"][0]) / median(noops["tiny"][0])
        print(f"\nno-op big / tiny = {median(noops['big'][0]):.3f} / {median(noops['tiny'][0]):.3f} = "
              f"{ratio_b:.3f}x (goal <= {GOAL_B}x); without the stat cache the big no-op takes "
              f"{rehash['big']:.2f} s ({rehash['big'] / median(noops['big'][0]):.1f}x)")
        print(verdict(ratio_b <= GOAL_B, f"(b) 1 GiB-checkpoint no-op is {ratio_b:.2f}x the tiny one "
                                        f"(goal <= {GOAL_B}x)"))
        for kind in ("tiny", "big"):
            for f in (tmp / f"ckpt_{kind}").iterdir():
                f.unlink()
        print(f"\n(deleted the checkpoints and {tmp})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
