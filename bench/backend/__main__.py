import sys

from bench.backend.cli import main

sys.exit(main())
