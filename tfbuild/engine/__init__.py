"""The build engine: graph, fingerprint, resolver, store, lock file, build loop.

It knows no stage by name and never imports TensorFlow: stages come in through
a `Registry` of `StageSpec`s (see `tfbuild.stages`), so deciding that nothing
is stale stays cheap.
"""
