"""What an artifact's identity is made of, computed cheaply and location-free.

- content digests of files, through a stat cache (doit's MD5 checker, DVC's
  state db): a file whose size, mtime and inode are unchanged is not re-read;
- settings: the stage's settings object, flattened to config keys, without
  the paths it names (their content counts instead);
- code: the normalized syntax trees of the modules a stage's implementation
  imports, transitively, found without importing them;
- tool versions, from package metadata (never by importing the package).
"""
from __future__ import annotations

import ast
import dataclasses
import hashlib
import json
import os
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional

from .files import atomic_write, dead_temps

_CHUNK = 1 << 20
_PKG_DIR = Path(__file__).resolve().parents[1]   # the tfbuild package
_PKG = _PKG_DIR.name
_CODE_KIND = "code-v2"   # the stat cache's table of parsed modules; bump when _parse changes


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def sha256_json(obj) -> str:
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


class StatCache:
    """{kind: {absolute path: [size, mtime_ns, inode, value]}}, persisted as JSON.

    Absolute paths are fine here: this is local state in build_dir, not identity.
    """

    def __init__(self, path: Path):
        self.path = path
        self._dirty = False
        try:
            self.entries: Dict[str, Dict[str, list]] = json.loads(path.read_text())
        except (OSError, ValueError):
            self.entries = {}

    def get(self, path: Path, kind: str, compute: Callable[[Path], Any]) -> Any:
        path = Path(os.path.abspath(path))
        st = path.stat()
        stamp = [st.st_size, st.st_mtime_ns, st.st_ino]
        table = self.entries.setdefault(kind, {})
        entry = table.get(str(path))
        if entry and entry[:3] == stamp:
            return entry[3]
        value = compute(path)
        table[str(path)] = stamp + [value]
        self._dirty = True
        return value

    def digest(self, path: Path) -> str:
        return self.get(path, "sha256", sha256_file)

    def remember(self, path: Path, digest: str) -> None:
        """Record a digest computed elsewhere (e.g. before an atomic rename)."""
        self.get(path, "sha256", lambda _: digest)

    def prune(self) -> int:
        """Forget files that are gone (gc deleted them); returns how many."""
        gone = [(kind, path) for kind, table in self.entries.items() for path in table
                if not os.path.exists(path)]
        for kind, path in gone:
            del self.entries[kind][path]
        self._dirty = self._dirty or bool(gone)
        return len(gone)

    def save(self, merge: bool = True) -> None:
        """Write the cache; `merge` keeps what parallel jobs wrote meanwhile (gc, alone, doesn't)."""
        if not self._dirty:
            return
        try:
            merged = json.loads(self.path.read_text()) if merge else {}
        except (OSError, ValueError):
            merged = {}
        for kind, table in self.entries.items():
            merged.setdefault(kind, {}).update(table)
        dead_temps(self.path.parent)
        atomic_write(self.path, json.dumps(merged, sort_keys=True))
        self._dirty = False


# ----------------------------------------------------------------------------- settings

def settings_record(settings: Any) -> Dict[str, Any]:
    """{config key: value} of a settings dataclass, nested sections flattened;
    fields marked PATH (at any depth) left out: their content is an input."""
    return _flatten("", _plain(settings))


def _plain(value: Any) -> Any:
    """Dataclasses as dicts under their config keys, without PATH fields; lists kept."""
    if dataclasses.is_dataclass(value):
        return {f.metadata.get("key", f.name): _plain(getattr(value, f.name))
                for f in dataclasses.fields(value) if not f.metadata.get("path")}
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _flatten(prefix: str, value: Any) -> Dict[str, Any]:
    if not (isinstance(value, dict) and value):
        return {prefix: value}
    out: Dict[str, Any] = {}
    for k, v in value.items():
        out.update(_flatten(f"{prefix}.{k}" if prefix else str(k), v))
    return out


# ----------------------------------------------------------------------------- input files

def files_record(files: Iterable[Path], cache: StatCache) -> Dict[str, str]:
    """{path relative to the files' common folder: sha256}: where they sit is not identity."""
    files = sorted((Path(os.path.abspath(f)) for f in files), key=str)
    if not files:
        return {}
    root = Path(os.path.commonpath([str(f.parent) for f in files]))
    return {f.relative_to(root).as_posix(): cache.digest(f) for f in files}


# ----------------------------------------------------------------------------- code

def code_record(module: str, cache: StatCache) -> Dict[str, str]:
    """{package-relative file: digest of its normalized syntax tree} for `module` and
    every tfbuild module it imports, transitively (imports inside functions too).

    Comments and docstrings do not count; nothing is imported to find this.
    """
    out: Dict[str, str] = {}
    todo = [module]
    while todo:
        name = todo.pop()
        path = module_file(name)
        if path is None:
            continue
        rel = path.relative_to(_PKG_DIR.parent).as_posix()
        if rel in out:
            continue
        digest, imports = cache.get(path, _CODE_KIND, lambda p, n=name: _parse(p, n))
        out[rel] = digest[:16]
        todo.extend(imports)
    return dict(sorted(out.items()))


def module_file(name: str) -> Optional[Path]:
    """The file of a tfbuild module (None outside tfbuild or where no file is)."""
    parts = name.split(".")
    if parts[0] != _PKG:
        return None
    base = _PKG_DIR.joinpath(*parts[1:])
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _parse(path: Path, name: str) -> list:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    imports = sorted(set(_imports(tree, name, path.name == "__init__.py")))
    _strip_docstrings(tree)
    return [hashlib.sha256(_canonical(tree).encode()).hexdigest(), imports]


def _canonical(node: Any) -> str:
    """The syntax tree as text, the same on every Python version: unset and empty
    fields (which newer versions add, e.g. type_params) are left out, unlike ast.dump."""
    if isinstance(node, ast.AST):
        fields = (f"{k}={_canonical(v)}" for k, v in ast.iter_fields(node) if v is not None and v != [])
        return f"{type(node).__name__}({','.join(fields)})"
    if isinstance(node, list):
        return f"[{','.join(_canonical(v) for v in node)}]"
    return repr(node)


def _imports(tree: ast.AST, name: str, is_package: bool) -> List[str]:
    package = name if is_package else name.rpartition(".")[0]
    found: List[str] = []
    for node in _walk_skipping_type_checking(tree):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name.split(".")[0] == _PKG]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parts = parts[: len(parts) - (node.level - 1)]
                base = ".".join(parts + ([node.module] if node.module else []))
            if base.split(".")[0] != _PKG:
                continue
            for alias in node.names:  # `from . import deploy` names a module
                sub = f"{base}.{alias.name}"
                found.append(sub if module_file(sub) else base)
    return found


def _walk_skipping_type_checking(tree: ast.AST):
    """ast.walk, minus `if TYPE_CHECKING:` blocks: those imports never run."""
    todo = [tree]
    while todo:
        node = todo.pop()
        yield node
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child.test):
                todo.extend(child.orelse)
                continue
            todo.append(child)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
        (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _strip_docstrings(tree: ast.AST) -> None:
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                    and isinstance(body[0].value.value, str):
                node.body = body[1:] or [ast.Pass()]


# ----------------------------------------------------------------------------- tools

def versions(*distributions: str) -> Dict[str, str]:
    """{distribution: installed version or 'not installed'}, from package metadata."""
    out = {}
    for name in distributions:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out
