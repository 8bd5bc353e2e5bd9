"""Supernet families, registered by name; ``create_supernet(name, **kw)`` builds one."""
from .base import (Supernet, create_supernet, family_class, list_families, loader_arguments, pretrained_families,
                   register_family, register_pretrained, supernet_arch, supernet_weight_bytes)
from . import mbv3, resnet  # noqa: F401  (registration)
from . import bert, vit  # noqa: F401  (registration: transformer families)
from . import ofa, resnet_checkpoints  # noqa: F401  (registration: checkpoint loaders)
from .custom import CustomSupernet, make_elastic
from .hf_bert import load_hf_bert, load_hf_tokenizer, resolve_pretrained

__all__ = ["CustomSupernet", "Supernet", "create_supernet", "family_class", "list_families", "load_hf_bert",
           "load_hf_tokenizer", "loader_arguments", "make_elastic", "pretrained_families", "register_family",
           "register_pretrained", "resolve_pretrained", "supernet_arch", "supernet_weight_bytes"]
