"""`python -m clipit_jax.summarize VIDEO ...`: the clipit-summarize command."""

import sys

from clipit_jax.summarize import command

sys.exit(command.main())
