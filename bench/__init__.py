"""Benchmarks of asyncmachine side by side with other Python state machines.

``python -m bench.core`` runs the peer benchmark; ``bench.peers.ADAPTERS`` plugs
asyncmachine into the independent ``bench_peers.py`` yardstick.
"""
