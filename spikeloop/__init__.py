"""spikeloop: an emulated accelerated analog neuromorphic chip, trained in the loop."""
from spikeloop.base.config import FULL, MINI, PRESETS, ChipConfig, ConfigError

__all__ = ["ChipConfig", "ConfigError", "FULL", "MINI", "PRESETS"]
__version__ = "0.1.0"
