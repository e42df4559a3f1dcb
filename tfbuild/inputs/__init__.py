"""TensorFlow-free knowledge of what users hand in: which kind of checkpoint a path
holds (checkpoint), calibration data (calibration), and the seeded samples that
parity checks and benchmarks feed (samples). Planning imports these; none imports
TensorFlow at module level."""
