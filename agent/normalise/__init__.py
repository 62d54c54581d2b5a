"""Scan normalisation (brief §5): raw scanner/NFC/keyed bytes become typed tokens."""

from agent.normalise.escapes import escape, unescape
from agent.normalise.kinds import Kind, Token, token_json
from agent.normalise.normaliser import Normaliser
from agent.normalise.parse_cli import run_parse
from agent.normalise.rules import CustomRule, NormaliserSettings

__all__ = [
    "CustomRule",
    "Kind",
    "Normaliser",
    "NormaliserSettings",
    "Token",
    "escape",
    "run_parse",
    "token_json",
    "unescape",
]
