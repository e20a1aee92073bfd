"""`python -m gateway` entry point."""

from gateway.cli import main

raise SystemExit(main())
