"""Loopback HTTP simulators of the providers' APIs, for tests and for integrators.

`python -m simulators --help` runs one on 127.0.0.1. Each enforces its API's documented contract
(paths, headers, auth, field names, error bodies), keeps a ledger and injects faults; see
`simulators/server.py` for the `/_sim/...` control endpoints every simulator shares.
"""

SIMULATORS = {
    "giftlocal": "simulators.giftlocal:GiftLocalSimulator",
    "kseries": "simulators.kseries:CardSimulator",
    "petz": "simulators.petz:PetzSimulator",
    "punchh": "simulators.punchh:PunchhSimulator",
}
