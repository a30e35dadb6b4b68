"""`python -m flightdeck …`: the same command line as the `flightdeck` script."""

import sys

from flightdeck.cli import main

if __name__ == "__main__":  # importing this module (e.g. to check its imports) runs nothing
    sys.exit(main())
