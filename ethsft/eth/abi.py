"""Bundled ABIs and calldata decoding (eth-abi / eth-utils; no hand-written decoding).

Each ``data/abi_<family>.json`` file is a standard JSON ABI fragment (functions
only).  :func:`functions` maps a 4-byte selector to the :class:`Function`
objects that declare it (families may share a selector, e.g. ``unwrapWETH9``).
"""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources

import eth_abi
from eth_abi.decoding import AddressDecoder, ContextFramesBytesIO, TupleDecoder
from eth_abi.registry import BaseEquals, is_base_tuple, registry as _default_registry
from eth_utils import function_signature_to_4byte_selector


class _LowerAddressDecoder(AddressDecoder):
    """eth-abi's AddressDecoder (same padding checks) returning the address as
    lower-case 0x-hex directly instead of through eth_utils.to_normalized_address
    (the same value, several times faster; decoding dominates ``prepare``)."""

    decoder_fn = staticmethod(lambda data: "0x" + data.hex())


class _TupleDecoder(TupleDecoder):
    """eth-abi's TupleDecoder; a tuple without dynamic members has no pointers,
    so the pointer pre-pass (which decodes every static member a second time)
    is skipped for it.  Tuples with dynamic members are validated as before."""

    def validate_pointers(self, stream) -> None:
        if self.is_dynamic:
            super().validate_pointers(stream)


_REGISTRY = _default_registry.copy()
_REGISTRY.unregister_decoder("address")
_REGISTRY.register_decoder(BaseEquals("address"), _LowerAddressDecoder, label="address")
_REGISTRY.unregister_decoder("is_base_tuple")
_REGISTRY.register_decoder(is_base_tuple, _TupleDecoder, label="is_base_tuple")


def _tuple_decoder(types: list[str]) -> TupleDecoder:
    """What ``eth_abi.decode(types, data)`` builds on each call, built once."""
    return _TupleDecoder(decoders=tuple(_REGISTRY.get_decoder(t) for t in types))

FAMILIES = (
    "erc20",
    "weth9",
    "erc721",
    "erc1155",
    "uniswap_v2_router02",
    "uniswap_v3_swaprouter",
    "uniswap_v3_swaprouter02",
)


def _type_str(param: dict) -> str:
    t = param["type"]
    if t.startswith("tuple"):
        return "(" + ",".join(_type_str(c) for c in param["components"]) + ")" + t[len("tuple"):]
    return t


class Function:
    """One ABI function: name, canonical signature, selector and its eth-abi types."""

    __slots__ = ("family", "name", "inputs", "types", "signature", "selector", "_decoder")

    def __init__(self, family: str, entry: dict):
        self.family = family
        self.name = entry["name"]
        self.inputs = entry["inputs"]
        self.types = [_type_str(p) for p in self.inputs]
        self.signature = f"{self.name}({','.join(self.types)})"
        self.selector = "0x" + function_signature_to_4byte_selector(self.signature).hex()
        self._decoder = _tuple_decoder(self.types)

    def decode(self, data: bytes) -> dict:
        """Decode the argument bytes (calldata after the selector) into a dict
        of named Python values (addresses lower-case str, ints, bytes, tuples as
        dicts).  Raises ``eth_abi`` decoding errors on malformed data."""
        values = self._decoder(ContextFramesBytesIO(data))
        return {p["name"]: _named(p, v) for p, v in zip(self.inputs, values)}

    def encode(self, args: dict) -> bytes:
        """Calldata (selector + ABI-encoded args) for ``args`` keyed by name."""
        values = [_positional(p, args[p["name"]]) for p in self.inputs]
        return bytes.fromhex(self.selector[2:]) + eth_abi.encode(self.types, values)

    def __repr__(self) -> str:
        return f"Function({self.family}:{self.signature})"


def _named(param: dict, value):
    t = param["type"]
    if t == "tuple":
        return {c["name"]: _named(c, v) for c, v in zip(param["components"], value)}
    if t.startswith("tuple["):
        inner = dict(param, type="tuple")
        return [_named(inner, v) for v in value]
    return value


def _positional(param: dict, value):
    t = param["type"]
    if t == "tuple":
        return tuple(_positional(c, value[c["name"]]) for c in param["components"])
    if t.startswith("tuple["):
        inner = dict(param, type="tuple")
        return [_positional(inner, v) for v in value]
    return value


@lru_cache(maxsize=None)
def functions() -> dict[str, tuple[Function, ...]]:
    """selector ("0x" + 8 hex) -> Functions declaring it, in FAMILIES order."""
    table: dict[str, list[Function]] = {}
    root = resources.files("ethsft.eth").joinpath("data")
    for family in FAMILIES:
        for entry in json.loads(root.joinpath(f"abi_{family}.json").read_text("utf-8")):
            if entry.get("type") != "function":
                continue
            fn = Function(family, entry)
            table.setdefault(fn.selector, []).append(fn)
    return {k: tuple(v) for k, v in table.items()}


@lru_cache(maxsize=None)
def by_name(family: str, name: str, n_inputs: int | None = None) -> Function:
    """Look a bundled function up by family and name (and arity for overloads)."""
    for fns in functions().values():
        for fn in fns:
            if fn.family == family and fn.name == name and (n_inputs is None or len(fn.inputs) == n_inputs):
                return fn
    raise KeyError(f"{family}.{name}/{n_inputs}")


def render(value):
    """JSON-friendly form of a decoded value for the model input: ints as
    decimal strings, bytes as 0x-hex, containers recursively."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return str(value)
    if isinstance(value, bytes):
        return "0x" + value.hex()
    if isinstance(value, dict):
        return {k: render(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [render(v) for v in value]
    return value
