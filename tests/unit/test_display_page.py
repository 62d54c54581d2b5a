"""The display page's static side: its error words cover the agent's vocabulary, and a page
without MQTT.js installed is reported with the fix instead of served broken."""

from __future__ import annotations

import re
from pathlib import Path

from agent.display import WEB_DIR, page_problem
from agent.errors import ErrorCode


def test_every_error_code_has_a_cashier_heading_on_the_page() -> None:
    source = (WEB_DIR / "format.js").read_text(encoding="utf-8")
    table = source[source.index("ERROR_TITLES") : source.index("});", source.index("ERROR_TITLES"))]
    headings = set(re.findall(r"^\s+(\w+):", table, flags=re.MULTILINE))
    assert {code.value for code in ErrorCode} <= headings


def test_a_page_without_mqtt_js_names_the_make_target(tmp_path: Path) -> None:
    empty = page_problem(tmp_path)
    assert empty is not None and "no display page" in empty
    (tmp_path / "index.html").write_text("<!doctype html>")
    problem = page_problem(tmp_path)
    assert problem is not None and "make web" in problem
