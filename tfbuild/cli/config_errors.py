"""Hydra's and OmegaConf's config errors, told in one line.

OmegaConf/Hydra messages span lines (full_key, object_type, a hint about
HYDRA_FULL_ERROR, sometimes a trace); the shell and its commands show one line
and exit 2. An unknown key names the valid keys of its section, and the closest.
"""
from __future__ import annotations

import dataclasses
import difflib
import re


def one_line(text: str) -> str:
    """OmegaConf/Hydra messages span lines (full_key, object_type...): keep what helps."""
    lines = [l.strip() for l in text.strip().splitlines() if l.strip()]
    lines = [l for l in lines if not l.startswith(("Set the environment variable HYDRA_FULL_ERROR",
                                                    "object_type=", "reference_type=", "warnings.warn"))
             and "Warning:" not in l]
    if "Traceback (most recent call last)" in text:  # Hydra shows traces for non-Hydra errors
        lines = lines[-1:]
    if lines and ("Unexpected type for root: NoneType" in lines[0]
                  or "'NoneType' object has no attribute" in text):
        return ("a key was set inside a section that is null in this target: set the whole "
                "section instead, e.g. tflite={precision: FP16} or +tflite=fp16")
    key = next((l.split(":", 1)[1].strip() for l in lines if l.startswith("full_key:")), None)
    lines = [l for l in lines if not l.startswith("full_key:")]
    new_key = re.search(r"Could not override '([^']+)'.*?Key '([^']+)' is not in struct", text, re.S)
    if new_key:
        full = f"{new_key.group(1)}.{new_key.group(2)}"
        return (f"{full} is a new key in {new_key.group(1)}: add it with a leading '+', "
                f"e.g. +{full}=VALUE")
    unknown = re.search(r"Key '([^']+)' not in '(\w+)'", text)
    if unknown and key:
        return unknown_key(key, unknown.group(2))
    message = "; ".join(dict.fromkeys(lines))
    return f"{key}: {message}" if key and key not in message else message


def unknown_key(full_key: str, type_name: str) -> str:
    """`full_key` is not a field of the schema class `type_name` (a name in tfbuild.config,
    which names every section class): say which keys are valid, and the closest."""
    from .. import config as schema
    cls = getattr(schema, type_name, None)
    fields = [f.name for f in dataclasses.fields(cls)] if cls else []
    leaf = full_key.rsplit(".", 1)[-1]
    close = difflib.get_close_matches(leaf, fields, n=1)
    parent = full_key.rsplit(".", 1)[0] if "." in full_key else ""
    hint = f"did you mean {parent + '.' if parent else ''}{close[0]}? " if close else ""
    return f"unknown key {full_key}: {hint}valid keys{' of ' + parent if parent else ''}: {', '.join(fields)}"


def hydra_message(text: str) -> str:
    return one_line(text) or "invalid command line (run tfbuild --help)"

