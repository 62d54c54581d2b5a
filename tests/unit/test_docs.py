"""The contract is the single source of truth: docs and schemas are generated from it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent.cli import main
from agent.contract import OPS, json_schemas
from agent.docgen import DOCS, render

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "mqtt-api.md"


@pytest.mark.parametrize("name", sorted(DOCS))
def test_generated_doc_tables_match_the_models(name: str) -> None:
    text = (ROOT / name).read_text(encoding="utf-8")
    assert render(text, DOCS[name]) == text, f"{name} is stale: run `make docs`"


def test_every_op_is_documented() -> None:
    text = DOC.read_text(encoding="utf-8")
    for op in OPS:
        assert f"`{op}`" in text


def test_schema_cli_prints_generated_schemas(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema", "request:gift.redeem"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert schema == json_schemas()["request:gift.redeem"]
    assert {"request_id", "token_id", "amount", "quantity"} <= set(schema["properties"])
    assert main(["schema", "--list"]) == 0
    names = capsys.readouterr().out.split()
    assert "topic:scan" in names and "event:gift.validated" in names
    assert main(["schema", "nope"]) == 1
