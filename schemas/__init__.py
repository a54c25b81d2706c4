"""Pora's event contracts (Avro) and their single-object codec."""

from schemas.codec import Codec, DecodeError, codec
from schemas.registry import KINDS, Contract, current, history

__all__ = ["KINDS", "Codec", "Contract", "DecodeError", "codec", "current", "history"]
