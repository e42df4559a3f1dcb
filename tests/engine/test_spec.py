"""engine/spec.py: StageSpec, `section`, and the Registry's order rules."""
from __future__ import annotations

import dataclasses

import pytest

import fakes
from tfbuild.engine.spec import Registry, StageSpec, check_upstream, section


def spec(name: str, upstream=()) -> StageSpec:
    return StageSpec(name, lambda cfg, deps: None, fakes.source_run, present=section(name), upstream=upstream)


def test_the_module_of_a_stage_is_its_run_functions():
    assert fakes.SOURCE.module == "fakes"
    assert spec("x").module == fakes.source_run.__module__


def test_section_is_present_when_the_config_has_it():
    present = section("double")
    assert present(fakes.Cfg()) and not present(fakes.Cfg(double=None))
    assert not section("nope")(fakes.Cfg())


def test_a_registry_keeps_declaration_order():
    reg = Registry((spec("a"), spec("b", ("a",)), spec("c", (("b", "a"),))))
    assert reg.names() == ["a", "b", "c"] and [s.name for s in reg] == ["a", "b", "c"]
    assert reg["b"].upstream == ("a",)


def test_upstream_must_be_registered_first():
    with pytest.raises(ValueError, match="stage 'b': upstream 'z' must be registered first"):
        Registry((spec("a"), spec("b", ("a", "z"))))
    with pytest.raises(ValueError, match="upstream 'c'"):
        check_upstream("b", (("a", "c"),), {"a"})
    Registry((spec("a"), spec("b", lambda cfg: ("z",))))   # a function's entries: checked per graph


def test_a_name_is_registered_once_and_replace_needs_it():
    reg = Registry((spec("a"),))
    with pytest.raises(ValueError, match="registered twice"):
        reg.add(spec("a"))
    wrapped = dataclasses.replace(reg["a"], tools=("faketool",))
    reg.replace(wrapped)
    assert reg["a"] is wrapped
    with pytest.raises(KeyError):
        reg.replace(spec("b"))


def test_specs_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        fakes.SOURCE.name = "other"
