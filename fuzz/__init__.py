"""Coverage-guided fuzzing of the pure core with atheris (``pip install -e '.[fuzz]'``).

Targets live in :mod:`fuzz.targets` as plain functions of ``bytes`` (they run
without atheris too, which is how ``--reproduce`` replays a finding); the
driver in ``__main__`` runs each one in its own libFuzzer process::

    python -m fuzz --ci                       # every target, under a minute in all
    python -m fuzz --target token --time 600 --corpus .fuzz/token
    python -m fuzz --target token --reproduce crash-1234abcd

A finding is any exception other than the documented errors of the code
under test, or an oracle failure (:class:`fuzz.targets.Finding`): a token
accepted although no real key signed it for that audience, a bundle that does
not survive its own serialization, a SPIFFE ID accepted against the
SPIFFE-ID standard's grammar (SPIFFE-ID §2).
"""

__all__: list[str] = []
