#!/usr/bin/env bash
# Optional services for the tests, started by .ci/run before the test command. Each section is independent:
# a failure prints a note and the tests that need that service skip with a clear reason.

# --- chromium (headless) for tests/test_atlas_browser.py, driven by the python 'playwright' package (a test
# dependency in pyproject.toml); Debian's browser is used because playwright cannot download its own here.
if ! command -v chromium >/dev/null 2>&1; then
  (export DEBIAN_FRONTEND=noninteractive; apt-get update -qq && apt-get install -y -qq chromium >/dev/null) \
    || echo "ci_services: chromium could not be installed; the atlas browser test will skip" >&2
fi
command -v chromium >/dev/null 2>&1 && echo "ci_services: $(chromium --version 2>/dev/null | head -1)"
true
