"""Benchmark: redaction throughput (:func:`tools.redaction.redact_text`) on ordinary tool
output and on inputs shaped to make regular expressions backtrack.

    python bench/redaction_bench.py [--size 200000]

Prints microseconds per character for each input; the time must grow linearly with the
size (run with two sizes to see it).
"""

from __future__ import annotations

import argparse
import random
import string
import time

from tools.redaction import redact_text


def inputs(size: int) -> dict[str, str]:
    """Named texts of about ``size`` characters."""
    rng = random.Random(14)

    def fill(unit: str) -> str:
        return (unit * (size // len(unit) + 1))[:size]

    return {
        "prose": fill("deployment web-7d9c6b5f4 rolled out to staging (3/3 ready)\n"),
        "random alnum": "".join(
            rng.choice(string.ascii_letters + string.digits) for _ in range(size)
        ),
        "random printable": "".join(rng.choice(string.printable) for _ in range(size)),
        "url starts": fill("http://a:"),
        "slashes": fill("//a/"),
        "assignments": fill("a=b "),
        "digits": fill("1"),
        "pem headers": fill("-----BEGIN RSA PRIVATE KEY-----"),
    }


def main() -> None:
    """Time each input once and print the figures."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, default=200_000)
    size = parser.parse_args().size
    for name, text in inputs(size).items():
        started = time.perf_counter()
        redact_text(text)
        elapsed = time.perf_counter() - started
        per_char = elapsed / len(text) * 1e6
        print(f"{name:18} {len(text):>9} chars {elapsed:8.3f} s {per_char:6.2f} us/char")


if __name__ == "__main__":
    main()
