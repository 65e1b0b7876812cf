"""Started with a test subprocess (PYTHONPATH, tests/support/network_guard.subprocess_env): names from
CF_TEST_NAMES (and localhost) resolve as the test said, no other name resolves, and any connect beyond
127.0.0.1 fails and is logged."""

import os

if os.environ.get("CF_TEST_REFUSED_LOG"):
    from tests.support.network_guard import NetworkGuard, install

    _guard = NetworkGuard()
    _guard.map("localhost", "127.0.0.1")
    for _pair in filter(None, os.environ.get("CF_TEST_NAMES", "").split(",")):
        _name, _address = _pair.split("=", 1)
        _guard.map(_name, _address)
    install(_guard, log=os.environ["CF_TEST_REFUSED_LOG"])
