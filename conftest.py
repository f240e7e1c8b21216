"""Root conftest: registers the service fixtures and keeps entry points out of doctest runs."""

collect_ignore_glob = ["trainer/__main__.py", "bench/*", ".venv/*", "build/*"]
pytest_plugins = ["tests.fixtures_kafka", "tests.fixtures_redis"]
