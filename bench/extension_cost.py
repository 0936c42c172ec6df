"""What the extension points cost: importing the public API, reading the catalogues of
installed event types and units, and one end-to-end ``run_units`` of the test kit.

    PYTHONPATH=. python bench/extension_cost.py [--rounds 5]

Each import figure is the median CPU time (user + system) of a fresh interpreter doing
only that, less the median of an empty interpreter: CPU time, so that a machine shared
with other work gives comparable figures. Nothing here needs RabbitMQ or Redis.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import statistics
import subprocess
import sys
import time

CASES = {
    "import codebus": "import codebus",
    "handler API (Router, Payload, Event, HandlerContext)": (
        "from codebus import Router, Payload, Event, HandlerContext"
    ),
    "handler API (Router, HandlerContext, Unit, ...)": (
        "from codebus import Event, HandlerContext, Payload, Reject, Retry, Router, Unit"
    ),
    "built-in payload models (schemas.events)": "import schemas.events",
    "API + both catalogues read": (
        "from codebus import Router, Unit\n"
        "from schemas.events import EVENT_TYPES\nfrom workers.units import UNITS\n"
        "EVENT_TYPES.load(); UNITS.load()"
    ),
}


def _cpu(code: str, rounds: int) -> float:
    times = []
    for _ in range(rounds):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        subprocess.run([sys.executable, "-c", code], check=True)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        times.append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
    return statistics.median(times)


async def _run_units(rounds: int) -> float:
    from codebus.testing import run_units
    from schemas.envelope import new_event

    await run_units(["audit"], [])  # warm imports
    times = []
    for _ in range(rounds):
        event = new_event("image.built", {"app": "w", "version": "1", "image_tag": "w:1"})
        t0 = time.process_time()
        await run_units(["audit"], [event])
        times.append(time.process_time() - t0)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    rounds = parser.parse_args().rounds
    empty = _cpu("pass", rounds)
    print(f"python start-up (subtracted): {empty * 1000:.0f} ms CPU")
    for label, code in CASES.items():
        print(f"{label}: {(_cpu(code, rounds) - empty) * 1000:.0f} ms CPU")
    took = asyncio.run(_run_units(rounds))
    print(f"run_units(['audit'], one event), warm: {took * 1000:.0f} ms CPU")


if __name__ == "__main__":
    main()
