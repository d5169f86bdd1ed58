"""Summarise a py-spy `--format raw` (collapsed stacks) file: the top frames, inclusive and self.

    .venv/bin/python bench/pyspy_top.py profile.raw [--top 40] [--thread-filter WORD]

Each collapsed line is `frame;frame;…;frame count`; a frame counts once per stack for the
inclusive total (recursion is not double-counted), and the last frame gets the self count.
"""

from __future__ import annotations

import argparse
import collections
import re
import sys

_LINE = re.compile(r"^(?P<stack>.*) (?P<count>\d+)$")


def summarise(lines: list[str], only: str = "") -> tuple[int, collections.Counter[str], collections.Counter[str]]:
    inclusive: collections.Counter[str] = collections.Counter()
    self_: collections.Counter[str] = collections.Counter()
    total = 0
    for line in lines:
        match = _LINE.match(line.strip())
        if not match or (only and only not in match["stack"]):
            continue
        count = int(match["count"])
        frames = match["stack"].split(";")
        total += count
        for frame in set(frames):
            inclusive[frame] += count
        self_[frames[-1]] += count
    return total, inclusive, self_


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("path")
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument("--only", default="", help="keep only stacks containing this text")
    args = parser.parse_args()
    with open(args.path) as f:
        total, inclusive, self_ = summarise(f.readlines(), args.only)
    print(f"# samples: {total}")
    print("# inclusive")
    for frame, count in inclusive.most_common(args.top):
        print(f"{count:6d} {100 * count / max(1, total):5.1f}% {frame}")
    print("# self")
    for frame, count in self_.most_common(args.top):
        print(f"{count:6d} {100 * count / max(1, total):5.1f}% {frame}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
