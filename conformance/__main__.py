"""``python -m conformance``: run the vectors and the live matrix (see conformance/README.md)."""

from conformance.run import main

raise SystemExit(main())
