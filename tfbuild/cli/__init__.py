"""The shell: `main` (the @hydra.main entry and the dispatch), one module per command
and their table (`commands/`), `sweep` (the multirun callback and its table),
`report` (rich output behind the engine's output interface), `targets` (finding
target files), `options` (how to run a Config) and `config_errors` (one-line errors).
"""


def console_main() -> None:
    """The `tfbuild` console script (pyproject: tfbuild = "tfbuild.cli:console_main")."""
    from .main import console_main as run
    run()
