"""Where lane-agent's idle memory goes, step by step, in one process (`make bench`, host).

    python bench/rss_steps.py CONFIG SETTLE_S       (PYTHONPATH: the repository)

VmRSS after each step of what `lane-agent run` does, and how many modules are loaded by then:
the bare interpreter; pydantic and aiomqtt imported and one model built (what any daemon on
these two libraries pays); the normaliser; the config models (agent.config, drivers.settings,
the providers' settings); the MQTT contract's models (agent.contract); the rest of agent.app;
the config read and the agent built (stores opened, flows, drivers constructed); the agent
running, connected to the broker, after SETTLE_S seconds. Prints one JSON list of
[step, rss_kib, modules]. The order is ours (each step imports what the next needs), so a
step's share is what it adds to the steps before it.
"""

from __future__ import annotations

import sys

STEPS: list[tuple[str, int, int]] = []


def rss_kib() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def mark(step: str) -> None:
    STEPS.append((step, rss_kib(), len(sys.modules)))


def main(config_path: str, settle: float) -> None:
    mark("python interpreter")
    import aiomqtt
    import pydantic

    class Scan(pydantic.BaseModel):
        device_id: str
        value: str

    Scan(device_id="pipe", value="96385074").model_dump_json()
    del aiomqtt
    mark("+ pydantic, aiomqtt, one model")
    import agent.normalise

    mark("+ the normaliser (agent.normalise)")
    import agent.config
    import drivers.settings

    del drivers
    mark("+ config models (agent.config, drivers.settings, providers' settings)")
    import agent.contract

    mark("+ MQTT contract models (agent.contract)")
    import agent.app
    import agent.cli

    mark("+ the rest of agent.app")
    import asyncio
    import json
    from pathlib import Path

    from agent.logs import setup_logging

    config = agent.config.load_config(Path(config_path))
    setup_logging(config.log.level)

    async def build_and_run() -> None:
        lane = agent.app.LaneAgent(config)
        mark("+ config read, agent built (stores, flows, drivers)")
        stop = asyncio.Event()
        running = asyncio.create_task(lane.run(stop))
        async with asyncio.timeout(60):
            await lane.bus.connected.wait()
        await asyncio.sleep(settle)
        mark(f"+ running: connected, devices started, {settle:g} s idle")
        stop.set()
        await running

    asyncio.run(build_and_run())
    print(json.dumps(STEPS))


if __name__ == "__main__":
    main(sys.argv[1], float(sys.argv[2]))
