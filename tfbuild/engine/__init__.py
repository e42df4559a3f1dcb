"""The build engine: plan apart from build, results as types.

spec/graph (what a target's stages are) -> fingerprint/resolver/plan (fresh or
stale, and why, as frozen `Decision`s with `Reason`s) -> build (the loop,
through `Output` and one cache handle) -> results (typed, `to_json()` is the
report) -> verify (rebuild and compare). store, lockfile, cache, provenance,
gc and files hold the state.

It knows no stage by name and never imports TensorFlow: stages come in through
a `Registry` of `StageSpec`s (see `tfbuild.stages`), so deciding that nothing
is stale stays cheap.
"""
