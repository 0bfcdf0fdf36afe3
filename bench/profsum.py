"""`python -m bench.profsum PROFILE.txt [N]`: the top frames of a py-spy raw (collapsed) profile.

Prints, for the N heaviest functions, their self share (samples where they are the leaf) and
their inclusive share (samples where they are anywhere on the stack), of all samples.
"""

from __future__ import annotations

import re
import sys
from collections import Counter

_FRAME = re.compile(r"^(?P<name>.*?) \((?P<file>[^)]*?)(?::\d+)?\)$")


def short(frame: str) -> str:
    match = _FRAME.match(frame)
    if not match:
        return frame
    path = match["file"]
    for marker in ("site-packages/", "python3.11/", "wt13/"):
        if marker in path:
            path = path.split(marker, 1)[1]
    return f"{match['name']} ({path})"


def main() -> None:
    path, top = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 25
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in open(path):
        stack, _, count = line.rstrip("\n").rpartition(" ")
        if not stack:
            continue
        samples = int(count)
        frames = [short(f) for f in stack.split(";")]
        total += samples
        own[frames[-1]] += samples
        for name in set(frames):
            inclusive[name] += samples
    print(f"{total} samples\n\nself %  function")
    for name, samples in own.most_common(top):
        print(f"{100 * samples / total:5.1f}  {name}")
    print("\nincl %  function")
    for name, samples in inclusive.most_common(top):
        print(f"{100 * samples / total:5.1f}  {name}")


if __name__ == "__main__":
    main()
