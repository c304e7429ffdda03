"""`python -m clipit_jax.summarize VIDEO ...`: the clipit-summarize command."""

import sys

from clipit_jax.summarize import summarizer

sys.exit(summarizer.main())
