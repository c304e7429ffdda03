"""The paper's settings: every config starts from `get_config()` and changes only what it must.

They are defined in `clipit_jax/config_defaults.py`, the one place defaults live (the
package ships it, so a saved run's config.json is merged over the same defaults when
a run is loaded for evaluation or summarizing).
"""

from clipit_jax.config_defaults import get_config, get_model_config  # noqa: F401
