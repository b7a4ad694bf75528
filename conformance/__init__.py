"""spiffile conformance suite: language-neutral vectors, their generator, and a runner.

See conformance/README.md.  ``python -m conformance --help`` runs the vectors
and the live cross-mint matrix against any implementation that speaks the
adapter protocol.
"""
