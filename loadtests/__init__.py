"""Load tests and benchmarks. Each targets loopback only and stops by itself."""
