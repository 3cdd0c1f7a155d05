import sys

from qroll.cli import main

sys.exit(main())
