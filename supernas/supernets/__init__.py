"""Supernet families, registered by name; ``create_supernet(name, **kw)`` builds one."""
from .base import Supernet, create_supernet, family_class, list_families, register_family
from . import mbv3, resnet  # noqa: F401  (registration)

__all__ = ["Supernet", "create_supernet", "family_class", "list_families", "register_family"]
