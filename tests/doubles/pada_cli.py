"""`python -m doubles.pada_cli <pada arguments>`: the pada CLI with the scripted stand-in installed.

For tests that run a whole pipeline in a subprocess (kill -9, resume): the product never installs a
stand-in, so the subprocess does it here before handing over to `pada.cli.main`. PYTHONPATH must
hold the tests/ folder. PADA_SCRIPTED_DELAY_S slows every reply (see `pada_script`).
"""

import sys

from doubles.pada_script import install
from pada.cli import main

if __name__ == "__main__":
    install()
    sys.exit(main(sys.argv[1:]))
