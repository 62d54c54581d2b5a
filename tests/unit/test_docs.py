"""The contract is the single source of truth: docs and schemas are generated from it."""

from __future__ import annotations

import io
import json
import re
import sys
from pathlib import Path

import pytest

from agent.cli import main
from agent.config import load_config
from agent.contract import OPS, json_schemas
from agent.docgen import DOCS, render
from agent.normalise import Normaliser

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "mqtt-api.md"
CONFIG_DOC = ROOT / "docs" / "config.md"


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


def doc_section(path: Path, heading: str) -> str:
    text = path.read_text(encoding="utf-8")
    start = text.index(f"\n## {heading}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end >= 0 else None]


def fenced(text: str, language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```$", text, re.DOTALL | re.MULTILINE)


def test_kseries_and_punchh_configs_do_what_the_doc_says(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    section = doc_section(CONFIG_DOC, "K-Series cards and Punchh on one lane")
    every_card, by_prefix = tmp_path / "every_card.toml", tmp_path / "lane.toml"
    credentials = tmp_path / "credentials"  # the keys, as systemd's LoadCredential= gives them
    credentials.mkdir()
    for name in ("kseries_api_key", "punchh_location_key", "punchh_business_key"):
        (credentials / name).write_text("k3y\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(credentials))
    for path, toml in zip((every_card, by_prefix), fenced(section, "toml"), strict=True):
        path.write_text(toml, encoding="utf-8")
        assert main(["check-config", str(path)]) == 0, capsys.readouterr().err
    assert load_config(every_card).kind_routes()["loyalty_card"] == "card"

    (console,) = fenced(section, "console")
    command, *shown = console.splitlines()
    sample = re.fullmatch(r"\$ printf '(.*)\\n' \| lane-agent parse --config lane\.toml", command)
    assert sample is not None, command
    monkeypatch.setattr(sys, "stdin", io.StringIO(sample[1].replace("\\n", "\n") + "\n"))
    monkeypatch.chdir(tmp_path)
    capsys.readouterr()
    assert main(["parse", "--config", "lane.toml"]) == 0
    assert capsys.readouterr().out.splitlines() == shown

    config = load_config(by_prefix)
    normaliser = Normaliser(config.normaliser)
    rows = re.findall(r"^\| (.+?) \| `(\w+)` \| `(\w+)` \|", section, re.MULTILINE)
    assert len(rows) == 3
    for scanned, kind, flow in rows:
        if scanned.startswith("`"):
            assert normaliser.normalise(scanned.strip("`").encode()).kind == kind, scanned
        assert config.kind_routes()[kind] == flow, scanned
