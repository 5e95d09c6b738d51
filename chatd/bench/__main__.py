"""`python -m chatd.bench`, the same as the `chatd-bench` console script."""

from chatd.bench.cli import main

raise SystemExit(main())
