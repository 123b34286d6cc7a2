"""`python -m catdog.cli`: what dvc.yaml runs (`python -m catdog.cli stage NAME`), with the
workspace's code."""

import sys

from catdog.cli.main import main

sys.exit(main())
