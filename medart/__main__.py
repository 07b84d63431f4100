"""`python -m medart <command>`: see medart/cli/."""

from medart.cli import main

raise SystemExit(main())
