"""`make bench`: lane-agent against its peers (barcode-server, nfc2mqtt) on the same workloads.

One module per workload (`keyboard_latency`, `loss_free`, `nfc_latency`, `throughput`, `cost`);
`daemons` starts each program as a real process, `common` holds the broker, the MQTT subscriber
and the /proc readers, `run` is the entry point (`python -m bench`) and `report` writes
BENCHMARKS.md. The peers live in their own virtualenvs under .venv-bench/, never in .venv.
"""
