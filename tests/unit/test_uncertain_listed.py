"""Every guess an adapter makes is listed on its provider's docs page: a guess no one can find
is a guess no one checks against the real service (issue 12, "every UNCERTAIN constant is listed
there")."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from agent.registry import PROVIDERS, ProviderSpec
from tests.conftest import REPO


def provider_modules(spec: ProviderSpec) -> list[Path]:
    """The adapter module and the provider's own helper modules (`agent/providers/<name>_*.py`,
    `agent/<name>_*.py`, e.g. the Punchh key and the K-Series notification receiver)."""
    adapter = REPO / (spec.adapter.partition(":")[0].replace(".", "/") + ".py")
    helpers = [*(REPO / "agent" / "providers").glob(f"{spec.name}_*.py")]
    helpers += (REPO / "agent").glob(f"{spec.name}_*.py")
    return [adapter, *sorted(helpers)]


def _assigned(node: ast.stmt) -> list[str]:
    targets = [node.target] if isinstance(node, ast.AnnAssign) else getattr(node, "targets", [])
    return [t.id for t in targets if isinstance(t, ast.Name)]


def uncertain_names(module: Path) -> list[str]:
    """Module-level names marked UNCERTAIN, in either of the codebase's two ways of marking:
    a docstring right after an assignment (it marks that one name), or a comment block right
    above a run of adjacent assignments (it marks the whole run, as `ACCOUNT_FIELDS` and
    `VOID_ACCOUNT_FIELD` share one); and classes (wire models) whose docstring says UNCERTAIN."""
    source = module.read_text(encoding="utf-8")
    lines = source.splitlines()
    body = ast.parse(source).body
    names: list[str] = []
    run: list[ast.stmt] = []
    for index, node in enumerate(body):
        if not _assigned(node):
            if isinstance(node, ast.ClassDef) and "UNCERTAIN" in (ast.get_docstring(node) or ""):
                names.append(node.name)
            continue
        end = node.end_lineno or node.lineno
        if run and (run[-1].end_lineno or 0) != node.lineno - 1:
            run = []
        run.append(node)
        following = body[index + 1] if index + 1 < len(body) else None
        if following is not None and _assigned(following) and following.lineno == end + 1:
            continue  # the run goes on
        above = []
        for line in reversed(lines[: run[0].lineno - 1]):
            if not line.startswith("#"):
                break
            above.append(line)
        doc = following.value if isinstance(following, ast.Expr) else None
        after = doc.value if isinstance(doc, ast.Constant) and isinstance(doc.value, str) else ""
        if any("UNCERTAIN" in line for line in above):
            names += [name for member in run for name in _assigned(member)]
        elif "UNCERTAIN" in after:
            names += _assigned(node)
        run = []
    return names


@pytest.mark.parametrize("spec", PROVIDERS, ids=lambda spec: spec.name)
def test_every_uncertain_guess_is_listed_on_the_providers_docs_page(spec: ProviderSpec) -> None:
    page = (REPO / spec.docs).read_text(encoding="utf-8")
    missing = [
        f"{module.relative_to(REPO)}: {name}"
        for module in provider_modules(spec)
        for name in uncertain_names(module)
        if f"`{name}`" not in page
    ]
    assert missing == [], f"list these in {spec.docs}"


def test_the_marks_are_found_in_both_styles() -> None:
    """The detector itself: names known to be marked each way are found, so an empty result
    above is no detector that finds nothing."""
    found = {
        name
        for spec in PROVIDERS
        for module in provider_modules(spec)
        for name in uncertain_names(module)
    }
    docstring_marked = {"REVERSE_PATH", "TICKET_FIELD", "_Record", "PAYMENT_ITEM_ID", "UNCERTAIN"}
    comment_marked = {"ACCOUNT_FIELDS", "VOID_ACCOUNT_FIELD", "VOIDED_VALUES", "CARD_NUMBER"}
    assert docstring_marked | comment_marked <= found
    assert not {"LOOKUP_PATH", "REDEEM_PATH"} & found  # neighbours the marks do not cover
