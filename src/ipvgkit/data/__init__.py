"""Test-set cases, timelines, manifests and dataset sources."""
