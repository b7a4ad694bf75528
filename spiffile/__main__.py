"""``python -m spiffile``: the same command line as the ``spiffile`` script."""

from spiffile.cli import main

if __name__ == "__main__":
    main()
