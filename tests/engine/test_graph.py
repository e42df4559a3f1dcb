"""make_graph and Registry: which stages a target has, what each reads, validated up front."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

import fakes
from fakes import Cfg, DoubleCfg, StrictCfg, TailCfg
from tfbuild.engine.graph import make_graph
from tfbuild.engine.spec import Registry, StageSpec, section
from tfbuild.errors import ConfigError


def names(nodes) -> list:
    return [n.name for n in nodes]


def test_stages_present_by_config_in_registry_order():
    nodes = make_graph(Cfg(), fakes.registry())
    assert names(nodes) == ["source", "double", "tail"]
    assert [n.deps for n in nodes] == [(), ("source",), ("double",)]

    nodes = make_graph(Cfg(tail=None, strict=None), fakes.registry())
    assert names(nodes) == ["source", "double"]


def test_alternative_upstream_picks_the_first_present():
    assert make_graph(Cfg(), fakes.registry())[-1].deps == ("double",)
    nodes = make_graph(Cfg(double=None), fakes.registry())
    assert names(nodes) == ["source", "tail"]
    assert nodes[-1].deps == ("source",)


def test_alternatives_none_present_is_fine():
    nodes = make_graph(Cfg(source=None, double=None), fakes.registry())
    assert names(nodes) == ["tail"] and nodes[0].deps == ()


def test_a_required_upstream_missing_names_it():
    with pytest.raises(ConfigError, match=r"stage double needs the source stage.*add a source section"):
        make_graph(Cfg(source=None), fakes.registry())


def test_a_target_with_no_stage_is_refused():
    with pytest.raises(ConfigError, match="builds no stage: give it a section for one of source, double"):
        make_graph(Cfg(source=None, double=None, tail=None), fakes.registry())


def test_settings_get_the_present_upstream_names():
    seen = []

    def settings(cfg, deps):
        seen.append(deps)
        return fakes.TailSettings(cfg.tail.suffix)

    reg = fakes.registry(tail=fakes.variant(fakes.TAIL, settings=settings))
    make_graph(Cfg(), reg)
    make_graph(Cfg(double=None), reg)
    assert seen == [("double",), ("source",)]


def test_files_come_from_the_settings():
    nodes = make_graph(Cfg(source=fakes.SourceCfg(path="elsewhere/x.txt")), fakes.registry())
    assert nodes[0].files == {"data": [Path("elsewhere/x.txt")]}
    assert nodes[1].files == {} and nodes[2].files == {}


def test_every_check_runs_while_making_the_graph():
    nodes = make_graph(Cfg(strict=StrictCfg(limit=3)), fakes.registry())
    assert names(nodes)[-1] == "strict"
    assert fakes.CALLS["strict.check"] == [nodes[-1].settings]

    with pytest.raises(ConfigError, match="strict.limit is -1"):
        make_graph(Cfg(strict=StrictCfg(limit=-1)), fakes.registry())
    assert "source" not in fakes.CALLS  # nothing ran


def test_check_fails_before_anything_is_built(project):
    with pytest.raises(ConfigError, match="strict.limit is -1"):
        project.build(Cfg(strict=StrictCfg(limit=-1)))
    assert fakes.CALLS.keys() == {"strict.check"}
    assert not project.opts.build_dir.exists()
    assert not project.opts.lock_file.exists()


def test_run_receives_exactly_the_graphs_settings_object(project):
    made = {}

    def settings(cfg, deps):
        made["double"] = fakes.DoubleSettings(cfg.double.factor)
        return made["double"]

    reg = fakes.registry(double=fakes.variant(fakes.DOUBLE, settings=settings))
    nodes = make_graph(Cfg(double=DoubleCfg(factor=3)), reg)
    assert nodes[1].settings is made["double"]

    report = project.build(Cfg(double=DoubleCfg(factor=3)), reg)
    assert report["ok"]
    assert fakes.CALLS["double"] == [made["double"]]
    assert fakes.CALLS["double"][0] is made["double"]   # the very object, not a copy


def test_registry_order_and_refusals():
    reg = fakes.registry("source", "double")
    assert reg.names() == ["source", "double"]
    assert reg["double"] is fakes.DOUBLE
    with pytest.raises(ValueError, match="registered twice"):
        reg.add(fakes.DOUBLE)
    with pytest.raises(ValueError, match="upstream 'double' must be registered first"):
        Registry((fakes.TAIL,))  # tail's alternatives name double, which is not registered
    with pytest.raises(ValueError, match="upstream 'source' must be registered first"):
        Registry((fakes.DOUBLE, fakes.SOURCE))


def test_section_and_module():
    @dataclass
    class C:
        tail: object = None

    assert section("tail")(C(tail=TailCfg())) and not section("tail")(C())
    assert not section("absent")(C(tail=TailCfg()))
    assert fakes.SOURCE.module == "fakes"  # the root of the stage's code identity
    assert isinstance(fakes.SOURCE, StageSpec)
