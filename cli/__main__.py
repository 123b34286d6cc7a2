"""`python -m cli`: what dvc.yaml runs (`python -m cli stage NAME`), with the workspace's code."""

import sys

from cli.main import main

sys.exit(main())
