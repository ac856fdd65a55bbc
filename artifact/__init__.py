"""Reproduction artifact for claim R-2: Swallow's vocabulary expansion and Japanese generation speed."""

import os

__version__ = "0.1.0"

# The user's own inductor cache folder, if any, read before the artifact runs torch: torch writes its /tmp default
# into this variable the first time it looks up its cache, after which a user's choice and torch's default look
# alike (seen on the H100: the run's kernels went to /tmp/torchinductor_root). artifact.engines.compile_cache uses
# it (and still sets torch's default aside, for programs that ran torch before importing the artifact).
USER_INDUCTOR_CACHE_DIR = os.environ.get("TORCHINDUCTOR_CACHE_DIR")
