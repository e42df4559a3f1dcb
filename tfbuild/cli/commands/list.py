"""`tfbuild list`: the targets, ./targets/ first, then those tfbuild ships; a broken
target is listed with why, not fatal."""
from __future__ import annotations

from pathlib import Path
from typing import List

from ..report import Reporter


def run(args: List[str], reporter: Reporter) -> int:
    from rich.table import Table

    table = Table(title="targets (./targets first, then shipped)", title_justify="left")
    for col in ("target", "final stage", "description", "from"):
        table.add_column(col, overflow="fold")
    for row in describe():
        table.add_row(row["name"], row["final"], row["description"], row["where"], style=row.get("style"))
    reporter.console.print(table)
    return 0


def describe() -> List[dict]:
    """{name, final, description, where} per target; a broken target says why."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from ...config import validate
    from ...stages import REGISTRY
    from ..targets import available, data_dir

    rows = []
    with initialize_config_dir(config_dir=str(data_dir("conf")), version_base="1.3"):
        for name in available():
            where = "./targets" if (Path.cwd() / "targets" / f"{name}.yaml").is_file() else "shipped"
            try:
                cfg = validate(OmegaConf.to_object(compose("config", overrides=[f"target={name}"])))
            except Exception as e:  # a broken target is listed, not fatal
                rows.append({"name": name, "final": "", "where": where, "style": "red",
                             "description": f"invalid: {str(e).strip().splitlines()[0]}"})
                continue
            final = [spec.name for spec in REGISTRY if spec.present(cfg)][-1:]
            rows.append({"name": name, "final": "".join(final), "description": cfg.description,
                         "where": where})
    return rows
