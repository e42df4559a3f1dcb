"""TensorFlow helpers for the stages: sessions, models, conversion, measurement.

Only stage implementations import these, and only inside the function that
builds, so the engine and a no-op run never load TensorFlow.
"""
