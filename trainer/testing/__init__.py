"""Test-mode hooks: fault points and the apply-count oracle (loaded only with --test-mode)."""
