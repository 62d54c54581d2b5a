"""The normaliser: raw scan bytes in, one Token out (brief §5)."""

from __future__ import annotations

from agent.normalise.framing import frame
from agent.normalise.kinds import Kind, Token
from agent.normalise.rules import NormaliserSettings, compile_rules


class Normaliser:
    """Framing, then the first rule that claims the payload; `unknown` when none does.

    The rule table is built once here, so `normalise` (run on every scan) only matches. It never
    raises: whatever the bytes, bad input comes back as a token with `valid=False` and an error.
    """

    def __init__(self, settings: NormaliserSettings | None = None) -> None:
        self.settings = settings if settings is not None else NormaliserSettings()
        self._rules = compile_rules(self.settings)

    def normalise(self, data: bytes, symbology_hint: str | None = None) -> Token:
        framed = frame(data, symbology_hint, self.settings.max_length)
        if framed.error is not None:
            return Token(
                Kind.UNKNOWN.value,
                framed.text,
                framed.symbology,
                False,
                framed.error,
                rule="framing",
            )
        for rule in self._rules:
            match = rule.classify(framed.text, framed.symbology)
            if match is not None:
                return Token(
                    kind=rule.kind,
                    value=match.value,
                    symbology=framed.symbology,
                    valid=match.error is None,
                    error=match.error,
                    ais=match.ais,
                    secret=rule.secret,
                    rule=rule.name,
                )
        return Token(
            Kind.UNKNOWN.value, framed.text, framed.symbology, True, None, rule=Kind.UNKNOWN.value
        )
