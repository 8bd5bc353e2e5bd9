"""supernas: hardware-aware neural architecture search over elastic super-networks."""
from .errors import CheckpointError, ConfigError, DataError, StoreError, SupernasError
from .measure import count
from .space import Choice, Config, SearchSpace
from .supernets import Supernet, create_supernet, list_families

__version__ = "0.1.0"
__all__ = ["CheckpointError", "Choice", "Config", "ConfigError", "DataError", "SearchSpace", "StoreError",
           "Supernet", "SupernasError", "count", "create_supernet", "list_families"]
