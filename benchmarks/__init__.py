"""Throughput benchmarks of recon against its peers (SigPy, FINUFFT, BART, pygrappa)."""
