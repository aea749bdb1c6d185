"""Fixtures for the operators' surfaces (console, metrics, service unit).

The service, Redis servers and SDK client come from the SDK suite's
conftest, so both suites start the real binary the same way. These tests
run once per suite run (on SQLite), not once per catalog engine.
"""

import importlib.util
import os

_spec = importlib.util.spec_from_file_location(
    "sdk_conftest", os.path.join(os.path.dirname(__file__), "..", "sdk", "conftest.py")
)
sdk_conftest = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(sdk_conftest)

# Re-export the SDK suite's fixtures and helpers.
globals().update({k: v for k, v in vars(sdk_conftest).items() if not k.startswith("__")})
