"""``python -m esc_arch.cli``: the ``basicsr`` command without the console script."""
import sys

from esc_arch.cli import main

sys.exit(main())
