"""Test-session wiring that must run before Django reads its settings (loaded by pytest as
an early plugin: see `addopts` in pyproject.toml)."""

import os
import tempfile

# Tests get their own var/ (SQLite file, file cache, media, dev encryption key), never the
# developer's demo data.
os.environ.setdefault("CREDITGATE_VAR_DIR", tempfile.mkdtemp(prefix="creditgate-test-"))
os.environ.setdefault("CREDITGATE_ENCRYPTION_KEYS", "Zm9yLXRlc3RzLW9ubHktMzItYnl0ZXMtbG9uZy1rZXk=")
# Tests run the reaper themselves; a background one waking mid-test would race their assertions.
os.environ.setdefault("CREDITGATE_JOB_SWEEP_SECONDS", "0")
