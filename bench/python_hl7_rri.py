#!/usr/bin/env python3
"""Measures python-hl7 parsing the same RRI^I12 the Rust bench parses (bench/rri.hl7).

Usage: pip install hl7 && python3 bench/python_hl7_rri.py
Prints messages per second (best of 5 runs of N parses), for BENCHMARKS.md.
"""
import os
import time

import hl7

HERE = os.path.dirname(os.path.abspath(__file__))
with open(os.path.join(HERE, "rri.hl7"), "rb") as f:
    TEXT = f.read().decode("ascii")

N = 20000
best = 0.0
for _ in range(5):
    start = time.perf_counter()
    for _ in range(N):
        msg = hl7.parse(TEXT)
    elapsed = time.perf_counter() - start
    best = max(best, N / elapsed)
# Touch the result so the parse is not optimised into nothing, and check it is the RRI.
assert str(msg.segment("RF1")[1]) == "R^Rejected^HL70283"
print(f"python-hl7 {hl7.__version__}: {best:,.0f} RRI/s ({len(TEXT)} bytes, best of 5 x {N})")
