#!/usr/bin/env bash
# Runs the Rust benches and the python-hl7 comparison in one go on this machine, printing
# the machine details first. Figures go into BENCHMARKS.md.
# Needs: cargo, python3 with `pip install hl7`.
set -euo pipefail
cd "$(dirname "$0")/.."
date -u '+%Y-%m-%dT%H:%M:%SZ'
echo "cores: $(nproc); cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | xargs)"
echo "load: $(cut -d' ' -f1-3 /proc/loadavg)"
rustc --version
python3 --version
cargo bench --bench mapping 2>&1 | grep -E '^[a-z_0-9]+/[a-z_0-9]+|time:|thrpt:' | grep -v -E 'Benchmarking|%'
python3 bench/python_hl7_rri.py
