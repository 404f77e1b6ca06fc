"""`python -m scalinglaws ...`: see scalinglaws.cli."""
import sys

from .cli import main

sys.exit(main())
