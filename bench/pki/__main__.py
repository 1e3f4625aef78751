import sys

from bench.pki.cli import main

sys.exit(main())
