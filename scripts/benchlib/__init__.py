"""The pieces of scripts/bench.py, the service benchmark of
docs/performance.md: process helpers (procs), the servers under test
(servers), measurement (measure) and the printed report (report).

Only the standard library: no pip dependencies.
"""

import os

# The repository root (this file is scripts/benchlib/__init__.py).
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
