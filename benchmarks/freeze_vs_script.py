"""The freeze stage's overhead over a bare freeze script, on DenseNet-169.

Goal (issue "Measurements you can trust"): for densenet169_frozen, the process
building the freeze stage through tfbuild takes at most 1.05x the wall time of a
bare script doing the same freeze and parity (import_meta_graph + restore +
convert_variables_to_constants + write, the checkpoint graph run on 8 seeded
samples and the frozen graph on the first of them, compared), with at most
1.2x its peak RSS.

Compared, each in a fresh child process, medians of REPEATS runs:
  * process wall time:  `tfbuild target=densenet169_frozen force=[freeze]
    bench.enabled=false`  vs  `python bare_freeze.py`;
  * in-process seconds:  the report's freeze `seconds` (the stage imports
    TensorFlow lazily inside build(), so they include `import tensorflow`)
    vs the script's own time from before `import tensorflow` to the written pb;
  * peak RSS of the child (os.wait4 rusage).
Also: a per-stage table (seconds, peak RSS, size) of densenet169_frozen and a
breakdown of where the freeze stage spends its time.

Run: python benchmarks/freeze_vs_script.py   (about 6-8 minutes; works in a temp dir)
"""
from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (banner, human_size, machine, median, read_report, run, snapshot_code,  # noqa: E402
                     statuses, table, tfbuild_cmd, verdict, workdir)

TARGET = "densenet169_frozen"
REPEATS = 5  # the shared 2-core VM is noisy: alternate the two, take medians
GOAL_TIME = 1.05
GOAL_RSS = 1.2

BARE = textwrap.dedent("""
    import json, sys, time
    t0 = time.perf_counter()
    import numpy as np
    import tensorflow as tf
    t1 = time.perf_counter()
    prefix, out_pb, result = sys.argv[1], sys.argv[2], sys.argv[3]
    times = {"import_tf": t1 - t0}
    graph = tf.Graph()
    with graph.as_default():
        saver = tf.compat.v1.train.import_meta_graph(prefix + ".meta", clear_devices=True)
        t2 = time.perf_counter()
        with tf.compat.v1.Session(graph=graph) as sess:
            saver.restore(sess, prefix)
            t3 = time.perf_counter()
            frozen = tf.compat.v1.graph_util.convert_variables_to_constants(
                sess, graph.as_graph_def(), ["probs"])
            t4 = time.perf_counter()
            x = np.random.default_rng(0).uniform(0, 255, (8, 256, 256, 3)).astype(np.float32)
            expected = sess.run("probs:0", {"input:0": x})
            times.update({"import_meta_graph": t2 - t1, "restore": t3 - t2, "convert": t4 - t3,
                          "checkpoint run": time.perf_counter() - t4})
    t = time.perf_counter()
    with open(out_pb, "wb") as f:
        f.write(frozen.SerializeToString())
    times["write"] = time.perf_counter() - t
    t = time.perf_counter()
    with tf.Graph().as_default() as check:
        tf.compat.v1.import_graph_def(frozen, name="")
        with tf.compat.v1.Session(graph=check) as sess:
            diff = float(np.abs(sess.run("probs:0", {"input:0": x[:1]}) - expected[:1]).max())
    times["frozen run"] = time.perf_counter() - t
    assert diff < 1e-4, diff
    t5 = time.perf_counter()
    times.update({"total": t5 - t0, "after_import": t5 - t1, "nodes": len(frozen.node)})
    json.dump(times, open(result, "w"))
""")


# Runs the CLI in-process and records, per stage that it builds, the stage's
# wall time and its own peak RSS (VmHWM reset at the stage's start through
# /proc/self/clear_refs, so an earlier stage's peak does not count).
# With --breakdown it also times the steps inside the freeze stage.
PROBE = textwrap.dedent("""
    import json, sys, time
    result, breakdown, args = sys.argv[1], sys.argv[2] == "--breakdown", sys.argv[3:]

    def status(key):
        for line in open("/proc/self/status"):
            if line.startswith(key + ":"):
                return int(line.split()[1])

    # Resetting VmHWM also resets what the kernel reports as ru_maxrss at exit,
    # so the process-wide peak is tracked here: the max of VmHWM before each reset.
    process_peak = [0]
    def reset_peak():
        process_peak[0] = max(process_peak[0], status("VmHWM"))
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            return True
        except OSError:
            return False

    steps = {}
    active = [0]  # how many timed steps are running (Saver.restore and convert run sessions too)
    def timed(label, fn, nests=True):  # nests: session runs inside belong to this step
        def wrapper(*a, **k):
            t = time.perf_counter()
            active[0] += nests
            try:
                return fn(*a, **k)
            finally:
                active[0] -= nests
                steps[label] = steps.get(label, 0.0) + time.perf_counter() - t
        return wrapper

    if breakdown:  # time TF's import apart, then the calls the freeze stage makes
        t = time.perf_counter()
        import tensorflow as tf
        steps["import tensorflow"] = time.perf_counter() - t
        from tensorflow.python.client import session as tf_session
        import tfbuild.tf.graph_io, tfbuild.engine.store, tfbuild.tf.freeze_graph as fz
        v1 = tf.compat.v1
        v1.train.import_meta_graph = timed("import_meta_graph", v1.train.import_meta_graph)
        v1.train.Saver.restore = timed("Saver.restore", v1.train.Saver.restore)
        v1.graph_util.convert_variables_to_constants = timed(
            "convert_variables_to_constants", v1.graph_util.convert_variables_to_constants)
        v1.graph_util.extract_sub_graph = timed("extract_sub_graph", v1.graph_util.extract_sub_graph)
        in_frozen = [False]
        def session_run(self, *a, _orig=tf_session.BaseSession.run, **k):
            if in_frozen[0]:
                return timed("parity: frozen graph sess.run", _orig)(self, *a, **k)
            if active[0]:  # a run inside restore or convert: counted there
                return _orig(self, *a, **k)
            return timed("parity: checkpoint graph sess.run", _orig)(self, *a, **k)
        tf_session.BaseSession.run = session_run
        import contextlib
        orig_session = tfbuild.tf.graph_io.frozen_session
        @contextlib.contextmanager
        def frozen_session(*a, **k):
            t = time.perf_counter()
            with orig_session(*a, **k) as got:
                steps["parity: frozen graph import + session"] = time.perf_counter() - t
                in_frozen[0] = True
                try:
                    yield got
                finally:
                    in_frozen[0] = False
        tfbuild.tf.graph_io.frozen_session = frozen_session
        fz._freeze = timed("_freeze (import, restore, convert, checkpoint run)", fz._freeze, nests=False)
        tfbuild.engine.store.Store.publish = timed("store.publish (hash + rename)", tfbuild.engine.store.Store.publish)

    import dataclasses, functools
    from tfbuild.stages import REGISTRY
    stages = {}
    for name in ("train", "placeholder", "freeze"):
        spec = REGISTRY[name]
        @functools.wraps(spec.run)  # keeps __module__: the stage's code identity
        def wrapped(*a, _orig=spec.run, _name=name):
            ok = reset_peak()
            start = status("VmRSS")
            t = time.perf_counter()
            try:
                return _orig(*a)
            finally:
                stages[_name] = {"seconds": time.perf_counter() - t, "start_rss_kb": start,
                                 "peak_rss_kb": status("VmHWM") if ok else None}
        REGISTRY.replace(dataclasses.replace(spec, run=wrapped))
    from tfbuild.cli.main import main
    t = time.perf_counter()
    code = main(args)
    main_s = time.perf_counter() - t
    process_peak[0] = max(process_peak[0], status("VmHWM"))
    json.dump({"code": code, "stages": stages, "steps": steps, "main_s": main_s,
               "process_peak_rss_kb": process_peak[0]}, open(result, "w"))
    sys.exit(code)
""")


def tfbuild(tmp: Path, report: str, *extra: str):
    r = run([*tfbuild_cmd(), f"target={TARGET}", "bench.enabled=false", f"report_file={report}", *extra],
            tmp).check()
    return r, read_report(tmp / report)


def probe(tmp: Path, name: str, *args: str, breakdown: bool = False):
    out = tmp / f"{name}.json"
    r = run([sys.executable, "-c", PROBE, out, "--breakdown" if breakdown else "-", f"target={TARGET}",
             "bench.enabled=false", f"report_file={name}-report.json", *args], tmp).check()
    return r, json.loads(out.read_text()), read_report(tmp / f"{name}-report.json")


def mb(kb):
    return None if kb is None else kb / 1024.0


def main() -> int:
    print("tfbuild freeze-vs-bare-script benchmark —", machine())
    with workdir("freeze") as tmp:
        print(snapshot_code(tmp), flush=True)
        banner(f"building {TARGET} (train 2 steps + placeholder + freeze), instrumented")
        first, first_probe, first_rep = probe(tmp, "first")
        print(f"first build: {first.wall_s:.1f} s wall, peak RSS {mb(first_probe['process_peak_rss_kb']):.0f} MB, "
              f"{statuses(first_rep)}")
        ph, ph_probe, ph_rep = probe(tmp, "ph", "force=[placeholder]")

        banner(f"freeze: tfbuild force=[freeze] vs a bare script, {REPEATS} runs each, alternating")
        prefix = tmp / "build" / TARGET / "placeholder" / "model.ckpt"
        if not Path(f"{prefix}.meta").exists():
            raise RuntimeError(f"{prefix}.meta missing: build/{TARGET}/placeholder is not where expected")
        tb, bare = [], []
        for i in range(REPEATS):
            r, rep = tfbuild(tmp, f"freeze{i}.json", "force=[freeze]")
            st = {s["name"]: s for s in rep["stages"]}
            assert st["freeze"]["status"] == "built" and st["placeholder"]["status"] == "fresh", statuses(rep)
            tb.append((r.wall_s, st["freeze"]["seconds"], r.rss_mb, st["freeze"]["size"]))
            res = tmp / f"bare{i}.json"
            b = run([sys.executable, "-c", BARE, prefix, tmp / f"bare{i}.pb", res], tmp).check()
            bare.append((b.wall_s, json.loads(res.read_text()), b.rss_mb, (tmp / f"bare{i}.pb").stat().st_size))
            print(f"  run {i + 1}: tfbuild {r.wall_s:.2f} s wall / {st['freeze']['seconds']:.2f} s stage / "
                  f"{r.rss_mb:.0f} MB   bare {b.wall_s:.2f} s wall / {bare[-1][1]['total']:.2f} s in-process / "
                  f"{b.rss_mb:.0f} MB", flush=True)

        tb_wall, tb_stage, tb_rss = (median([x[k] for x in tb]) for k in range(3))
        bare_wall = median([x[0] for x in bare])
        bare_total = median([x[1]["total"] for x in bare])
        bare_after = median([x[1]["after_import"] for x in bare])
        bare_import = median([x[1]["import_tf"] for x in bare])
        bare_rss = median([x[2] for x in bare])
        r_wall, r_secs, r_rss = tb_wall / bare_wall, tb_stage / bare_total, tb_rss / bare_rss
        print()
        print(table(["measure (median of %d)" % REPEATS, "tfbuild", "bare script", "ratio", "goal"], [
            ["process wall time, s", tb_wall, bare_wall, f"{r_wall:.3f}x", f"<= {GOAL_TIME}x"],
            ["stage seconds vs script seconds (both incl. import tensorflow)", tb_stage, bare_total,
             f"{r_secs:.3f}x", f"<= {GOAL_TIME}x"],
            ["peak RSS, MB", tb_rss, bare_rss, f"{r_rss:.3f}x", f"<= {GOAL_RSS}x"],
            ["frozen.pb size", human_size(tb[0][3]), human_size(bare[0][3]), None, None],
        ]))
        print(f"\nbare script steps (median s): import tensorflow {bare_import:.2f}, "
              + ", ".join(f"{k} {median([x[1][k] for x in bare]):.2f}"
                          for k in ("import_meta_graph", "restore", "convert", "checkpoint run", "write",
                                    "frozen run"))
              + f"; after import {bare_after:.2f}")

        banner("where the freeze stage's time goes (one extra instrumented force=[freeze] run)")
        _, bd, bd_rep = probe(tmp, "breakdown", "force=[freeze]", breakdown=True)
        if statuses(bd_rep) != {"train": "fresh", "placeholder": "fresh", "freeze": "built"}:
            print(f"NOTE: the breakdown run built {statuses(bd_rep)}: its figures mix stages")
        steps = bd["steps"]
        fr = bd["stages"]["freeze"]
        freeze_steps = ["import_meta_graph", "Saver.restore", "convert_variables_to_constants",
                        "extract_sub_graph", "parity: checkpoint graph sess.run"]
        parity_steps = ["parity: checkpoint graph sess.run", "parity: frozen graph import + session",
                        "parity: frozen graph sess.run"]
        rows = [["import tensorflow (before the stage here; inside it in a plain run)", steps.get("import tensorflow")],
                ["_freeze (import, restore, convert, checkpoint graph run)",
                 steps.get("_freeze (import, restore, convert, checkpoint run)")]]
        rows += [["   " + k, steps.get(k)] for k in freeze_steps]
        rows += [[k, steps.get(k)] for k in parity_steps[1:]]
        rows.append(["store.publish (hash + rename)", steps.get("store.publish (hash + rename)")])
        rows.append(["freeze stage total (report seconds, TF already imported)", fr["seconds"]])
        parity_s = sum(steps.get(k, 0.0) for k in parity_steps)
        rows.append(["parity check (the 3 rows marked parity)", parity_s])
        rows.append(["tfbuild main() total, in-process", bd["main_s"]])
        print(table(["step", "seconds"], rows))
        print(f"parity check share of the stage (TF import excluded): {parity_s / fr['seconds']:.0%}; "
              f"stage peak RSS {mb(fr['peak_rss_kb']):.0f} MB")

        ok = r_wall <= GOAL_TIME and r_secs <= GOAL_TIME and r_rss <= GOAL_RSS
        print()
        print(verdict(r_wall <= GOAL_TIME, f"freeze process wall time {r_wall:.2f}x the bare script "
                                           f"(goal <= {GOAL_TIME}x)"))
        print(verdict(r_secs <= GOAL_TIME, f"freeze stage seconds {r_secs:.2f}x the bare script's "
                                           f"in-process seconds incl. TF import (goal <= {GOAL_TIME}x)"))
        print(verdict(r_rss <= GOAL_RSS, f"freeze peak RSS {r_rss:.2f}x the bare script (goal <= {GOAL_RSS}x)"))

        banner(f"{TARGET}: per-stage cost (each stage's first build in a fresh process)")
        rows = []
        sources = {"train": (first, first_probe, first_rep, "first build (nothing built)"),
                   "placeholder": (ph, ph_probe, ph_rep, "force=[placeholder]")}
        for name in ("train", "placeholder", "freeze"):
            if name in sources:
                proc, pr, rep, how = sources[name]
                st = {s["name"]: s for s in rep["stages"]}[name]
                built = ",".join(n for n, s in statuses(rep).items() if s == "built")
                rows.append([name, how, st["seconds"], mb(pr["stages"][name]["peak_rss_kb"]), proc.wall_s,
                             mb(pr["process_peak_rss_kb"]), built, human_size(st["size"])])
            else:
                st = {s["name"]: s for s in read_report(tmp / "freeze0.json")["stages"]}[name]
                # only freeze is built in these processes: its peak is the process's peak
                rows.append([name, f"force=[freeze], median of {REPEATS}", tb_stage, tb_rss, tb_wall, tb_rss,
                             "freeze", human_size(st["size"])])
        print(table(["stage", "measured in", "stage s", "stage peak RSS MB", "process wall s",
                     "process peak RSS MB", "stages built in process", "artifact size"], rows))
        print("stage s: the report's seconds (include `import tensorflow` for the first stage of a process); "
              "stage peak RSS: VmHWM reset at the stage's start; process peak RSS: max VmHWM over the process "
              "(os.wait4 for the plain force=[freeze] runs)")
        print()
        print(verdict(ok, f"freeze within {GOAL_TIME}x time and {GOAL_RSS}x RSS of a bare script "
                          f"(wall {r_wall:.2f}x, stage s {r_secs:.2f}x, RSS {r_rss:.2f}x)"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
