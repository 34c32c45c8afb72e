"""Benchmarks: `python -m sdfl_lib.bench {model,train,data,evaluate,gpu-check}`."""
