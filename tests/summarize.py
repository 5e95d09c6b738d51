"""Turn trial's closing line into the plain "N passed, N failed" line CI reads."""

import re
import sys


def summarize(text: str) -> str:
    """Count from trial's last PASSED/FAILED line; no line at all counts as one failure."""
    lines = [ln for ln in text.splitlines() if re.match(r"^(PASSED|FAILED) \(", ln)]
    if not lines:
        return "0 passed, 1 failed"
    counts = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", lines[-1])}
    passed = counts.get("successes", 0)
    failed = sum(counts.get(k, 0) for k in ("failures", "errors", "unexpectedSuccesses"))
    skipped = counts.get("skips", 0)
    tail = f", {skipped} skipped" if skipped else ""
    return f"{passed} passed, {failed} failed{tail}"


if __name__ == "__main__":
    with open(sys.argv[1], encoding="utf-8", errors="replace") as f:
        print(summarize(f.read()))
