"""TensorFlow helpers for the stages: sessions, models, conversion, measurement.

Only stages import these. Modules that import TensorFlow at the top (session,
models) are imported inside `run`/`bench` only; the others import it inside
the functions that need it, so a stage's cheap checks (trt_convert.validate,
environment) can use them without loading TensorFlow. None imports the engine.
"""
