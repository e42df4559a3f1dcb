"""Every line of TensorFlow the stages run: freezing (freeze_graph), the placeholder
stage's graph (placeholder_graph), demo training (training), sessions, models,
converters (tflite_convert, onnx_convert, trt_convert, trt_engine), frozen graphs
in and out (graph_io), the runtimes deployed models run in (runtimes), and timing.

Only stages import these. Modules that import TensorFlow at the top (session,
models) are imported inside `run`/`bench` only; the others import it inside
the functions that need it, so a stage's cheap checks (trt_convert.validate,
environment) can use them without loading TensorFlow. None imports the engine,
a stage or the config schema (tests/engine/test_layers.py).
"""
