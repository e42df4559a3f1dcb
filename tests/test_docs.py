"""The docs are checked against the code: the architecture page's tree names every module
and no module that does not exist; the README links only pages that exist."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "tfbuild"


def named_in_tree(text: str) -> set:
    """Module paths the first code block's tree names: a file under a `folder/` line that is
    less indented belongs to that folder (`cli/` then `commands/list.py` -> cli/commands/list.py)."""
    block = text.split("```")[1]
    folders, named = [], set()   # folders: [(indent, path)]
    for line in block.splitlines()[1:]:
        if not line.strip():
            continue
        indent = len(line) - len(line.lstrip())
        folders = [(i, f) for i, f in folders if i < indent]
        here = folders[-1][1] if folders else ""
        first = line.split()[0]
        if first.endswith("/"):
            folders.append((indent, here + first))
            continue
        named |= {here + name for name in re.findall(r"(?<![\w/.])((?:[a-z_]+/)*[a-z_]+\.py)\b", line)}
    return {n.removeprefix("tfbuild/") for n in named}


def test_architecture_names_every_module_and_no_other():
    named = named_in_tree((ROOT / "docs" / "architecture.md").read_text())
    on_disk = {p.relative_to(PKG).as_posix() for p in PKG.rglob("*.py")
               if p.name not in ("__init__.py", "__main__.py")}
    assert sorted(on_disk - named) == [], "modules missing from docs/architecture.md"
    assert sorted(named - on_disk) == [], "docs/architecture.md names modules that do not exist"


def test_readme_links_pages_that_exist():
    links = re.findall(r"\]\(([^)#]+)\)", (ROOT / "README.md").read_text())
    assert links and all((ROOT / link).exists() for link in links if "://" not in link)
