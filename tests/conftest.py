import os

from hypothesis import settings

# Every random seed is printed on failure (hypothesis prints the falsifying
# example and its seed); CI runs derandomized so the same commit gives the same run.
settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True)
settings.register_profile("dev", deadline=None, print_blob=True)
settings.load_profile("ci" if os.environ.get("CI") else "dev")
