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
import sys
import textwrap
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (banner, child_env, human_size, machine, median, read_report, run,  # noqa: E402
                     statuses, table, tfbuild_cmd, verdict, workdir)

REPEATS = 5
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
    from tfbuild.cli import main
    code = main(sys.argv[2:])
    heavy = sorted({m.split('.')[0] for m in sys.modules} & {'tensorflow', 'keras', 'tf_keras', 'numpy', 'h5py'})
    open(sys.argv[1], 'w').write(json.dumps({'code': code, 'heavy': heavy, 'modules': len(sys.modules)}))
""")


def noop_times(cwd: Path, target: str, n: int = REPEATS):
    """Wall times of n no-op runs (after one untimed warm-up), checking each is really a no-op."""
    args = [*tfbuild_cmd(), f"target={target}", "report_file=noop.json"]
    run(args, cwd).check()
    times, rss = [], []
    for _ in range(n):
        r = run(args, cwd).check()
        st = statuses(read_report(cwd / "noop.json"))
        if set(st.values()) != {"fresh"}:
            raise RuntimeError(f"{target}: expected a no-op, got {st}")
        times.append(r.wall_s)
        rss.append(r.rss_mb)
    return times, median(rss)


def importtime_top(cwd: Path, target: str, k: int = 8):
    """The slowest top-level imports of a no-op (python -X importtime)."""
    r = run([sys.executable, "-X", "importtime", "-c",
             f"from tfbuild.cli import main; import sys; sys.exit(main(['target={target}']))"], cwd).check()
    rows = []
    for line in r.stderr.splitlines():
        if not line.startswith("import time:") or "imported package" in line:
            continue
        self_us, cum_us, name = _split_importtime(line)
        if not name.startswith(" "):  # top level only (nested ones are indented)
            rows.append((int(cum_us) / 1e3, name.strip()))
    rows.sort(reverse=True)
    total = sum(ms for ms, _ in rows)
    return rows[:k], total, ("tensorflow" in r.stderr)


def _split_importtime(line: str):
    body = line[len("import time:"):]
    self_us, cum_us, name = body.split("|", 2)
    return self_us.strip(), cum_us.strip(), name[1:]  # keep the indentation of the name


def main() -> int:
    print("tfbuild no-op benchmark —", machine())
    with workdir("noop") as tmp:
        # ---------------------------------------------------------------- (a)
        banner("(a) no-op of tiny_frozen vs `import tensorflow`")
        first = run([*tfbuild_cmd(), "target=tiny_frozen", "report_file=first.json",
                     "bench.enabled=false"], tmp).check()
        print(f"first build of tiny_frozen: {first.wall_s:.1f} s "
              f"({', '.join(f'{k}={v}' for k, v in statuses(read_report(tmp / 'first.json')).items())})")

        noop, noop_rss = noop_times(tmp, "tiny_frozen")
        run([sys.executable, "-c", "import tensorflow"], tmp).check()  # warm the page cache
        tf_runs = [run([sys.executable, "-c", "import tensorflow"], tmp).check() for _ in range(REPEATS)]
        tf_times = [r.wall_s for r in tf_runs]
        tf_rss = median([r.rss_mb for r in tf_runs])
        py_times = [run([sys.executable, "-c", "pass"], tmp).check().wall_s for _ in range(REPEATS)]

        probe = tmp / "probe.json"
        run([sys.executable, "-c", PROBE, probe, "target=tiny_frozen"], tmp).check()
        probed = json.loads(probe.read_text())
        top, _, tf_in_importtime = importtime_top(tmp, "tiny_frozen")

        ratio_a = median(noop) / median(tf_times)
        tf_free = "tensorflow" not in probed["heavy"] and not tf_in_importtime
        print(table(["command", "median s", "min s", "max s", "peak RSS MB"], [
            ["python -c pass  (interpreter start)", median(py_times), min(py_times), max(py_times), None],
            ['python -c "import tensorflow"', median(tf_times), min(tf_times), max(tf_times), tf_rss],
            ["tfbuild target=tiny_frozen  (no-op)", median(noop), min(noop), max(noop), noop_rss],
        ], title=f"wall time, {REPEATS} runs each (fresh process per run)"))
        print(f"\nno-op / import tensorflow = {median(noop):.3f} / {median(tf_times):.3f} = {ratio_a:.3f}x "
              f"(goal <= {GOAL_A}x)")
        print(f"modules imported by the no-op: {probed['modules']}; heavy ones: "
              f"{', '.join(probed['heavy']) or 'none'}; 'tensorflow' in -X importtime output: {tf_in_importtime}")
        print()
        print(table(["cumulative ms", "top-level import (python -X importtime, one no-op)"],
                    [[ms, name] for ms, name in top]))
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
        for kind in ("tiny", "big"):
            r = run([*tfbuild_cmd(), f"target=user_{kind}", f"report_file=first_{kind}.json",
                     "bench.enabled=false"], tmp).check()
            rep = read_report(tmp / f"first_{kind}.json")
            first_builds[kind] = (r.wall_s, rep["stages"][-1]["seconds"], r.rss_mb,
                                  rep["stages"][-1]["size"])
        noops = {kind: noop_times(tmp, f"user_{kind}") for kind in ("tiny", "big")}
        # The same no-op with the stat cache deleted: every input is read and hashed again.
        for kind in ("tiny", "big"):
            (tmp / "build" / ".tfbuild" / "state.json").unlink()  # the StatCache (digests.py)
            r = run([*tfbuild_cmd(), f"target=user_{kind}", "report_file=rehash.json"], tmp).check()
            assert set(statuses(read_report(tmp / "rehash.json")).values()) == {"fresh"}
            rehash[kind] = r.wall_s

        rows = []
        for kind in ("tiny", "big"):
            wall, freeze_s, rss, pb = first_builds[kind]
            t, rss_noop = noops[kind]
            rows.append([f"user_{kind}", human_size(sizes[kind]), wall, freeze_s, human_size(pb),
                         median(t), min(t), max(t), rehash[kind]])
        print(table(["target", "checkpoint", "first build s", "freeze s", "frozen.pb",
                     "no-op median s", "no-op min s", "no-op max s", "no-op, stat cache deleted s"],
                    rows, title=f"\nno-op wall time, {REPEATS} runs each; first build hashes the "
                                f"checkpoint and restores it"))
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
