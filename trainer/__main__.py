"""`python -m trainer`: the `recstream` command line."""

from trainer.cli.main import main

raise SystemExit(main())
