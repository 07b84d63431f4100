"""`python -m medart <command>`: see medart/cli.py."""

from medart.cli import main

raise SystemExit(main())
