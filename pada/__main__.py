import sys

from pada.cli import main

sys.exit(main())
