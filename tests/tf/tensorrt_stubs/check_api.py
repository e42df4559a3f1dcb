"""Child process of tests/tf/test_tensorrt_api.py (not a test module).

Runs with NVIDIA's real `tensorrt` bindings and Polygraphy on PYTHONPATH and the
stand-in libraries (stub.c) on LD_LIBRARY_PATH; one TensorRT major per process.
Reads the uses tfbuild makes (collected from its source with `ast` by the test) as
JSON from argv[1], checks each against the imported modules, and prints one JSON
object: {category: [{"where", "what", "ok", "detail"}], "preflight": {...}}.
"""
from __future__ import annotations

import ctypes
import importlib
import inspect
import json
import os
import re
import sys
import tempfile

import tensorrt as trt


def resolve(root: str, chain):
    obj = importlib.import_module(root)
    for name in chain:
        obj = getattr(obj, name)
    return obj


def _split_top(text: str):
    """Split on commas outside (), [], {}, <>."""
    parts, depth, cur = [], 0, ""
    for i, ch in enumerate(text):
        if ch in "([{<":
            depth += 1
        elif ch in ")]}" or (ch == ">" and text[i - 1] != "-"):
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    if cur.strip():
        parts.append(cur)
    return [p.strip() for p in parts]


def pybind_overloads(obj, name: str):
    """[(params, varargs, varkw)] from a pybind11 docstring; params: [(name, has_default)], self dropped."""
    doc = getattr(obj, "__doc__", None) or ""
    pattern = re.compile(r"^\s*(?:\d+\.\s+)?" + re.escape(name) + r"\((.*)\)\s*(?:->.*)?$")
    found = []
    for line in doc.splitlines():
        m = pattern.match(line)
        if not m or m.group(1).strip() == "*args, **kwargs":
            continue
        params, varargs, varkw = [], False, False
        for p in _split_top(m.group(1)):
            pname = p.split(":", 1)[0].split("=", 1)[0].strip()
            if pname in ("/", "*"):
                continue
            if pname.startswith("**"):
                varkw = True
            elif pname.startswith("*"):
                varargs = True
            else:
                params.append((pname, "=" in p))
        if params and params[0][0] == "self":
            params = params[1:]
        found.append((params, varargs, varkw))
    return found


def fits(overload, npos: int, keywords) -> str:
    """'' where a call with npos positional arguments and these keywords fits, else why not."""
    params, varargs, varkw = overload
    names = [n for n, _ in params]
    if npos > len(params) and not varargs:
        return f"takes {len(params)} positional arguments, tfbuild passes {npos}"
    for k in keywords:
        if k in names[:npos]:
            return f"{k!r} given twice"
        if k not in names and not varkw:
            return f"no parameter {k!r} (has {', '.join(names) or 'none'})"
    missing = [n for n, default in params[npos:] if not default and n not in keywords]
    return f"missing {', '.join(missing)}" if missing else ""


def _signature(obj):
    try:
        return inspect.signature(obj)
    except (TypeError, ValueError):
        return None


def _init_keywords(cls):
    """Keyword names cls(...) accepts where each __init__ passes **kwargs to the next in the MRO;
    None where the chain ends open (the last one still takes **kwargs)."""
    names = set()
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        sig = _signature(init) if init is not None else None
        if sig is None:
            continue
        params = sig.parameters.values()
        names |= {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
        if not any(p.kind == p.VAR_KEYWORD for p in params):
            return names
    return None


def check_call(obj, npos: int, keywords, *, self_bound: bool) -> str:
    """'' where obj accepts the call. self_bound: obj is a function looked up on a class, so the
    instance comes first (Profile.add); classes are checked through __init__."""
    sig = _signature(obj)
    if sig is not None and not (inspect.isclass(obj) and "pybind11" in type(obj).__name__):
        args = [object()] * (npos + (1 if self_bound else 0))
        try:
            sig.bind(*args, **{k: None for k in keywords})
        except TypeError as e:
            return f"{e} (signature {sig})"
        if inspect.isclass(obj):         # **kwargs handed up the MRO (CreateConfig -> _CreateConfigCommon)
            accepted = _init_keywords(obj)
            unknown = sorted(set(keywords) - accepted) if accepted is not None else []
            if unknown:
                return f"no __init__ in {obj.__name__}'s MRO takes {', '.join(map(repr, unknown))}"
        return ""
    target, name = (obj.__init__, "__init__") if inspect.isclass(obj) else (obj, obj.__name__)
    overloads = pybind_overloads(target, name)
    if not overloads:
        return f"no signature in its docstring: {(target.__doc__ or '')[:200]!r}"
    reasons = [fits(o, npos, keywords) for o in overloads]
    return "" if "" in reasons else "; ".join(reasons)


def record(out, category, where, what, detail):
    out.setdefault(category, []).append({"where": where, "what": what, "ok": not detail, "detail": detail})


def check_uses(uses, out):
    for u in uses:
        where, what = u["where"], u["what"]
        try:
            if u["kind"] == "import":
                mod = importlib.import_module(u["module"])
                detail = "" if u["name"] is None or hasattr(mod, u["name"]) else f"{u['module']} has no {u['name']}"
                record(out, "names", where, what, detail)
            elif u["kind"] == "attr":
                parent = resolve(u["root"], u["chain"][:-1])
                last = u["chain"][-1]
                members = getattr(parent, "__members__", None)
                if isinstance(members, dict) or (members is not None and hasattr(members, "keys")):
                    record(out, "enums", where, what, "" if last in members else
                           f"not a member; members: {', '.join(members)}")
                else:
                    value = getattr(parent, last, _MISSING)
                    enum_type = type(value)
                    category = "enums" if hasattr(enum_type, "__members__") and value is not _MISSING else "names"
                    record(out, category, where, what, "" if value is not _MISSING else
                           f"{'.'.join([u['root'], *u['chain'][:-1]])} has no attribute {last}")
            elif u["kind"] == "call":
                obj = resolve(u["root"], u["chain"])
                parent = resolve(u["root"], u["chain"][:-1])
                if (inspect.isclass(parent) and not inspect.isclass(obj) and not u.get("method")
                        and not isinstance(inspect.getattr_static(parent, u["chain"][-1]), (staticmethod, classmethod))):
                    # Class.method(instance, ...): the instance is passed explicitly
                    if _signature(obj) is None:      # pybind: its docstring drops self
                        u = {**u, "npos": u["npos"] - 1}
                if u.get("method"):          # a method called on an instance of obj
                    detail = check_call(getattr(obj, u["method"]), u["npos"], u["keywords"], self_bound=True)
                elif u.get("instance_call"):  # loader(...)()
                    detail = check_call(obj.__call__, u["npos"], u["keywords"], self_bound=True)
                else:
                    detail = check_call(obj, u["npos"], u["keywords"], self_bound=False)
                record(out, "calls", where, what, detail)
        except Exception as e:  # noqa: BLE001  a name that does not resolve is a finding
            record(out, {"import": "names", "attr": "names", "call": "calls"}[u["kind"]], where, what,
                   f"{type(e).__name__}: {e}")


_MISSING = object()


def _has_buffer_protocol(cls) -> str:
    """'' where the type fills tp_as_buffer (pybind11's py::buffer_protocol()), which bytes() needs.
    The PyTypeObject offset is checked against bytes/int first."""
    offset = 160  # tp_as_buffer on 64-bit CPython 3.8-3.13
    def slot(t):
        return ctypes.c_void_p.from_address(id(t) + offset).value
    if ctypes.sizeof(ctypes.c_void_p) != 8 or not slot(bytes) or slot(int) or slot(object):
        return ""  # cannot tell on this interpreter: not a finding
    return "" if slot(cls) else f"{cls.__name__} has no buffer protocol: bytes() on it fails"


def check_table(table, category, out):
    """Explicit entries: {"where", "what", "cls": chain under tensorrt, "member", "kind", "npos", "keywords"}."""
    for e in table:
        try:
            cls = resolve("tensorrt", e["cls"])
            kind = e["kind"]
            if kind == "buffer":
                detail = _has_buffer_protocol(cls)
            elif kind == "member":
                members = getattr(cls, "__members__", {})
                detail = "" if e["member"] in members else f"not a member; members: {', '.join(members)}"
            else:
                attr = inspect.getattr_static(cls, e["member"], _MISSING)
                if attr is _MISSING:
                    detail = f"{cls.__name__} has no {e['member']}"
                elif kind == "property":
                    detail = "" if isinstance(attr, property) else f"{e['member']} is not a property"
                else:
                    detail = check_call(getattr(cls, e["member"]), e["npos"], e.get("keywords", []),
                                        self_bound=False)
        except Exception as ex:  # noqa: BLE001
            detail = f"{type(ex).__name__}: {ex}"
        record(out, category, e["where"], e["what"], detail)


class _Capture:
    """Everything written to fds 1 and 2 (TensorRT's own logger writes to std::cout)."""

    def __enter__(self):
        sys.stdout.flush(), sys.stderr.flush()
        self.file = tempfile.TemporaryFile()
        self.saved = [os.dup(1), os.dup(2)]
        os.dup2(self.file.fileno(), 1), os.dup2(self.file.fileno(), 2)
        return self

    def __exit__(self, *exc):
        sys.stdout.flush(), sys.stderr.flush()
        try:
            ctypes.CDLL(None).fflush(None)
        except Exception:  # noqa: BLE001
            pass
        for fd, saved in zip((1, 2), self.saved):
            os.dup2(saved, fd)
            os.close(saved)
        self.file.seek(0)
        self.text = self.file.read().decode(errors="replace")
        return False


def run_preflight(scenarios, fake_smi_dir, no_smi_dir):
    from tfbuild import backends, errors
    from tfbuild.tf import trt_engine

    results = {}

    def attempt(fn):
        with _Capture() as cap:
            try:
                fn()
                exc = None
            except BaseException as e:  # noqa: BLE001
                exc = e
        return {"raised": None if exc is None else type(exc).__name__,
                "tfbuild_error": isinstance(exc, errors.TfbuildError),
                "backend_unavailable": isinstance(exc, errors.BackendUnavailable),
                "message": None if exc is None else str(exc), "output": cap.text}

    def forget():  # the probes cache nvidia-smi's answers per process
        for value in vars(backends).values():
            if callable(getattr(value, "cache_clear", None)):
                value.cache_clear()

    # the cheap probes, with no nvidia-smi, then with a stand-in that lists an H100
    os.environ["PATH"] = no_smi_dir
    forget()
    results["probes:no-gpu"] = attempt(backends.require_tensorrt)
    os.environ["PATH"] = fake_smi_dir
    forget()
    results["probes:gpu"] = attempt(backends.require_tensorrt)
    results["probes:version"] = {"tensorrt_version": backends.tensorrt_version(),
                                 "strongly_typed": backends.strongly_typed(trt.__version__),
                                 "has_polygraphy": backends.has_polygraphy(),
                                 "trt.__version__": trt.__version__}
    # pre-flight as stages/trt.py runs it: probes, then trt_engine.preflight (the Builder)
    for name, (severity, message) in scenarios.items():
        for key, value in (("TRT_STUB_LOG_SEVERITY", severity), ("TRT_STUB_LOG_MESSAGE", message)):
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = str(value)
        results[name] = attempt(lambda: (backends.require_tensorrt(), trt_engine.preflight()))
    return results


def main():
    spec = json.load(open(sys.argv[1]))
    out = {"trt_version": trt.__version__, "trt_file": trt.__file__}
    check_uses(spec["uses"], out)
    check_table(spec["object_api"], "object_api", out)
    check_table(spec["polygraphy_path"], "polygraphy_path", out)
    out["preflight"] = run_preflight(spec["scenarios"], spec["fake_smi_dir"], spec["no_smi_dir"])
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
