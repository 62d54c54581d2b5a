"""Property tests that `make fuzz` also runs, for much longer (tests/fuzz.py).

`@fuzz_target(max_examples)` goes above `@given`: in the test suite the property tries
`max_examples` inputs; under `make fuzz`, which sets FUZZING before it imports the test modules,
it gets the fuzz run's settings instead. Either way every input tried is counted in TRIED.
Targets are plain (not async) functions without fixtures, so the fuzz run can call them.
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Callable
from typing import Any, TypeVar

from hypothesis import settings

Test = TypeVar("Test", bound=Callable[..., None])

TRIED: Counter[str] = Counter()
"""Inputs tried per target, by function name."""

TARGETS: dict[str, Callable[[], None]] = {}
"""Every fuzz target imported so far, by function name."""

FUZZING: settings | None = None
"""Set by tests/fuzz.py: the settings every target runs with in a fuzz run."""


def fuzz_target(max_examples: int = 100, **options: Any) -> Callable[[Test], Test]:
    def decorate(test: Test) -> Test:
        name = test.__name__
        inner = test.hypothesis.inner_test  # type: ignore[attr-defined]

        @functools.wraps(inner)
        def counted(*args: Any, **kwargs: Any) -> None:
            TRIED[name] += 1
            inner(*args, **kwargs)

        test.hypothesis.inner_test = counted  # type: ignore[attr-defined]
        chosen = FUZZING or settings(max_examples=max_examples, deadline=None, **options)
        decorated: Test = chosen(test)
        TARGETS[name] = decorated
        return decorated

    return decorate
