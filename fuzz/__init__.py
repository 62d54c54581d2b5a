"""Coverage-guided fuzzing of the code that reads hostile bytes (`make fuzz`).

`fuzz.targets` holds the harnesses: plain functions of one input's bytes that assert what the
code promises for every input. `python -m fuzz.run TARGET` runs one of them under atheris
(libFuzzer), `python -m fuzz` runs them all and reports; the seed corpus is `fuzz/corpus/TARGET/`.
The test suite replays the seed corpus through the harnesses without atheris
(tests/unit/test_fuzz_targets.py). Nothing here is imported by the agent.
"""
