"""Where targets come from: ./targets/ first, then the targets tfbuild ships.

Hydra looks up the `target` config group through `TargetsSource`, a config
source that maps `target/NAME` onto `targets/NAME.yaml` and puts the file's
keys at the top level (package `_global_`), so `trt.precision=FP16` on the
command line addresses the target's own keys.
"""
from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import List, Optional

from hydra.core.object_type import ObjectType
from hydra.plugins.config_source import ConfigLoadError, ConfigResult, ConfigSource
from omegaconf import OmegaConf

from ..errors import ConfigError, TargetNotFound

_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")


def data_dir(name: str) -> Path:
    """`conf` or `targets`: beside the package in a checkout, inside it in a wheel."""
    package = Path(__file__).resolve().parents[1]   # tfbuild/ (this file is tfbuild/cli/targets.py)
    for candidate in (package / name, package.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"tfbuild is installed without its {name}/ folder")


def target_dirs() -> List[Path]:
    return [Path.cwd() / "targets", data_dir("targets")]


def available() -> List[str]:
    names = {p.stem for d in target_dirs() if d.is_dir() for p in d.glob("*.yaml")}
    return sorted(names)


def check_name(name: str) -> None:
    """Fail early, with the list of targets, on a name that is unknown or escapes targets/."""
    names = available()
    if not _NAME.match(name) or ".." in name:
        raise TargetNotFound(
            f"target name {name!r} is not a plain file name: targets are targets/NAME.yaml "
            f"(available: {', '.join(names)})"
        )
    if name not in names:
        close = difflib.get_close_matches(name, names, n=3)
        hint = f"did you mean {', '.join(close)}? " if close else ""
        raise TargetNotFound(
            f"unknown target {name!r}: {hint}available targets: {', '.join(names)} "
            f"(looked in ./targets and {data_dir('targets')})"
        )
    check_file(next(p for d in target_dirs() if (p := d / f"{name}.yaml").is_file()))


def check_file(path: Path) -> None:
    """A target file must parse as a YAML mapping; say where it does not."""
    import yaml
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f"{_shown(path)}:{mark.line + 1}:{mark.column + 1}" if mark else _shown(path)
        raise ConfigError(f"{where}: not valid YAML: {e.problem or e.context}: fix the target file") from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise ConfigError(f"{_shown(path)} is not a readable YAML file ({type(e).__name__}): "
                          "a target is a YAML mapping of keys") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{_shown(path)} is not a YAML mapping of target keys (it holds a "
                          f"{type(data).__name__}): a target looks like 'freeze: {{outputs: [probs]}}'")


def _shown(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


class TargetsSource(ConfigSource):
    """Config group `target` backed by a targets/ folder (`local` = cwd, `shipped`)."""

    @staticmethod
    def scheme() -> str:
        return "tfbuild-targets"

    def _dir(self) -> Path:
        return target_dirs()[0 if self.path == "local" else 1]

    def _file(self, config_path: str) -> Optional[Path]:
        group, _, name = config_path.partition("/")
        if group != "target" or not name or "/" in name or ".." in name:
            return None
        return self._dir() / self._normalize_file_name(name)

    def load_config(self, config_path: str) -> ConfigResult:
        path = self._file(config_path)
        if path is None or not path.is_file():
            raise ConfigLoadError(f"Config not found: {config_path}")
        text = path.read_text(encoding="utf-8")
        header = self._get_header_dict(text)
        header["package"] = header["package"] or "_global_"
        return ConfigResult(
            config=OmegaConf.create(text),
            path=self.full_path(),
            provider=self.provider,
            header=header,
        )

    def available(self) -> bool:
        return True  # ./targets may not exist; that is not worth a warning

    def is_group(self, config_path: str) -> bool:
        return config_path == "" or (config_path == "target" and self._dir().is_dir())

    def is_config(self, config_path: str) -> bool:
        path = self._file(config_path)
        return path is not None and path.is_file()

    def list(self, config_path: str, results_filter: Optional[ObjectType]) -> List[str]:
        if config_path == "" and results_filter != ObjectType.CONFIG:
            return ["target"] if self._dir().is_dir() else []
        if config_path != "target" or results_filter == ObjectType.GROUP:
            return []
        return sorted(p.stem for p in self._dir().glob("*.yaml"))


def compose(name: Optional[str], overrides: List[str]):
    """Target NAME's config (None: the default target) with `overrides`, as the build
    composes it (Hydra's compose API), for the commands that are not builds and for
    checking a sweep's jobs; one line on a bad request."""
    from hydra import compose as hydra_compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from .config_errors import one_line

    if name is not None:
        check_name(name)
        overrides = [f"target={name}", *overrides]
    try:
        with initialize_config_dir(config_dir=str(data_dir("conf")), version_base="1.3"):
            return OmegaConf.to_object(hydra_compose("config", overrides=overrides))
    except (HydraException, OmegaConfBaseException) as e:
        raise ConfigError(one_line(str(e))) from None
