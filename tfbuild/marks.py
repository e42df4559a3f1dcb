"""Field metadata for settings dataclasses, read by the engine's fingerprint.

A leaf module (it imports nothing of tfbuild), so the config schema can use
it without importing the engine.
"""

PATH = {"path": True}     # a file or directory: its *content* is the identity, never the path
RUN = {"run": True}       # a Config key that says how to run, not what to build (not a sweep job's identity)


def key(name: str) -> dict:
    """Show (and diff) this field under the config key the user writes, e.g. placeholder.preprocessing."""
    return {"key": name}
