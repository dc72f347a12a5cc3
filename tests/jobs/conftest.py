"""The jobs suite; job runs on each executor are in tests/runtime/test_jobs.py."""
