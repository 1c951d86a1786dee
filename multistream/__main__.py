"""`python -m multistream ...` is the `multistream` command."""

from multistream.cli import main

raise SystemExit(main())
