"""The fuzz harnesses (fuzz/targets.py) without atheris: the seed corpus passes them, and each
one fails when the property it checks is broken in the code it fuzzes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import agent.requests
import agent.scans
import agent.tokens
from agent.normalise import Token, gs1
from drivers.framing import Framer
from drivers.hidpos_report import DecodedScan, MalformedReport, ReportAssembler
from fuzz.targets import MAX_LENGTHS, TARGETS

CORPUS = Path(__file__).parents[2] / "fuzz" / "corpus"


def seed(target: str, name: str) -> bytes:
    return (CORPUS / target / name).read_bytes()


def test_every_target_has_a_seed_corpus_and_a_length_limit() -> None:
    assert sorted(p.name for p in CORPUS.iterdir()) == sorted(TARGETS)
    assert set(MAX_LENGTHS) == set(TARGETS)
    for target in TARGETS:
        seeds = list((CORPUS / target).iterdir())
        assert len(seeds) >= 5, target
        assert all(len(p.read_bytes()) <= MAX_LENGTHS[target] for p in seeds), target


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_the_seed_corpus_passes(target: str) -> None:
    for path in sorted((CORPUS / target).iterdir()):
        TARGETS[target](path.read_bytes())


def test_normaliser_harness_catches_a_clear_code_on_the_screen(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def unmasked(token: Token) -> str:
        return token.value

    monkeypatch.setattr(agent.scans, "display", unmasked)
    with pytest.raises(AssertionError):
        TARGETS["normaliser"](seed("normaliser", "voucher-code"))


def test_normaliser_harness_catches_a_raw_control_character_on_the_screen(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(agent.tokens, "printable", lambda text: text)
    with pytest.raises(AssertionError):
        TARGETS["normaliser"](seed("normaliser", "control-char-shown"))


def test_gs1_harness_catches_a_render_that_does_not_parse_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def unescaped(ais: dict[str, str]) -> str:
        return "".join(f"({ai}){value}" for ai, value in ais.items())

    monkeypatch.setattr(gs1, "render", unescaped)
    with pytest.raises(gs1.GS1Error):  # the value's "(" now starts an AI
        TARGETS["gs1"](seed("gs1", "bracketed"))


def test_hidpos_harness_catches_a_lost_byte(monkeypatch: pytest.MonkeyPatch) -> None:
    feed = ReportAssembler.feed

    def lossy(self: ReportAssembler, report: bytes) -> DecodedScan | MalformedReport | None:
        out = feed(self, report)
        return DecodedScan(out.data[:-1], out.aim) if isinstance(out, DecodedScan) else out

    monkeypatch.setattr(ReportAssembler, "feed", lossy)
    with pytest.raises(AssertionError):
        TARGETS["hidpos"](seed("hidpos", "two-reports"))


def test_framing_harness_catches_a_tail_lost_between_reads(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    feed = Framer.feed

    def forgetful(self: Framer, data: bytes) -> list[bytes]:
        self.flush()
        return feed(self, data)

    monkeypatch.setattr(Framer, "feed", forgetful)
    with pytest.raises(AssertionError):
        TARGETS["framing"](seed("framing", "cr"))


def test_requests_harness_catches_an_unpublishable_answer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def lax(payload: bytes) -> tuple[object, str | None]:
        return json.loads(payload), None  # lets a lone surrogate through

    monkeypatch.setattr(agent.requests, "decode_json", lax)
    with pytest.raises(ValueError, match="surrogate"):
        TARGETS["requests"](seed("requests", "lone-surrogate"))
