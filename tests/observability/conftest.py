"""Skip Prometheus-backed tests cleanly, and only, when the binaries are not installed
(CI's `.ci/run` installs the Debian package `prometheus`, which has both)."""

from __future__ import annotations

import shutil

import pytest

needs_promtool = pytest.mark.skipif(
    shutil.which("promtool") is None, reason="promtool not installed (Debian: prometheus)"
)
needs_prometheus = pytest.mark.skipif(
    shutil.which("prometheus") is None, reason="prometheus not installed (Debian: prometheus)"
)
