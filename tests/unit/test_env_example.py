""".env.example lists every setting, and nothing that is not one."""

from __future__ import annotations

import re

from runtime.settings import Settings
from tests.support.processes import ROOT


def test_env_example_names_every_setting() -> None:
    text = (ROOT / ".env.example").read_text()
    listed = set(re.findall(r"^([A-Z][A-Z0-9_]*)=", text, flags=re.MULTILINE))
    assert listed == set(Settings.model_fields), {
        "missing": sorted(set(Settings.model_fields) - listed),
        "unknown": sorted(listed - set(Settings.model_fields)),
    }
