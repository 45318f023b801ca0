import sys

from iwgan.cli import main

sys.exit(main())
