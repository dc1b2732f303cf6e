"""``python -m reactor`` runs the ``reactor`` command."""

from reactor.cli import main

raise SystemExit(main())
