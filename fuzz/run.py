"""One fuzz target under atheris: `python -m fuzz.run TARGET [libFuzzer options] [corpus dirs]`.

The agent's and the drivers' modules are instrumented as the harnesses import them, so libFuzzer
sees their branches (and the prefixes they compare strings with) and keeps the inputs
that reach new ones. Given files instead of directories, it replays them: that is how a saved
crash is reproduced. `python -m fuzz` runs every target this way.
"""

from __future__ import annotations

import sys

import atheris


def main(argv: list[str]) -> None:
    name, *options = argv
    # Feeds the arguments of str.startswith/endswith to libFuzzer. Not the "RegEx" hook: its
    # pattern proxy takes no `pos` argument, so `pattern.match(text, pos)` (gs1.py) would raise.
    atheris.enabled_hooks.add("str")
    with atheris.instrument_imports(include=["agent", "drivers"]):
        from fuzz.targets import TARGETS
    atheris.Setup([sys.argv[0], *options], TARGETS[name])
    atheris.Fuzz()  # exits the process: 0 when done, non-zero on a failing input


if __name__ == "__main__":
    main(sys.argv[1:])
