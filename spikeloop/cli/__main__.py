"""``python -m spikeloop.cli``: the ``spikeloop`` command."""
import sys

from spikeloop.cli import main

sys.exit(main())
