"""Speculative decoding evaluation: engine, prompt sets, acceptance proxy, benchmark runner, report."""
