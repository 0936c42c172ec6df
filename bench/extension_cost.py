"""What the extension points cost: importing the public API, reading the catalogues of
installed event types and units, and one end-to-end ``run_units`` of the test kit.

    PYTHONPATH=. python bench/extension_cost.py [--rounds 5]

Each import figure is the median wall time of a fresh interpreter doing only that, less
the median of an empty interpreter. Nothing here needs RabbitMQ or Redis.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import time

CASES = {
    "import codebus": "import codebus",
    "handler API (Router, HandlerContext, Unit, ...)": (
        "from codebus import Event, HandlerContext, Payload, Reject, Retry, Router, Unit"
    ),
    "API + both catalogues read": (
        "from codebus import Router, Unit\n"
        "from schemas.events import EVENT_TYPES\nfrom workers.units import UNITS\n"
        "EVENT_TYPES.load(); UNITS.load()"
    ),
}


def _wall(code: str, rounds: int) -> float:
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


async def _run_units(rounds: int) -> float:
    from codebus.testing import run_units
    from schemas.envelope import new_event

    await run_units(["audit"], [])  # warm imports
    times = []
    for _ in range(rounds):
        event = new_event("image.built", {"app": "w", "version": "1", "image_tag": "w:1"})
        t0 = time.perf_counter()
        await run_units(["audit"], [event])
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    rounds = parser.parse_args().rounds
    empty = _wall("pass", rounds)
    print(f"python start-up (subtracted): {empty * 1000:.0f} ms")
    for label, code in CASES.items():
        print(f"{label}: {(_wall(code, rounds) - empty) * 1000:.0f} ms")
    took = asyncio.run(_run_units(rounds))
    print(f"run_units(['audit'], one event), warm: {took * 1000:.0f} ms")


if __name__ == "__main__":
    main()
