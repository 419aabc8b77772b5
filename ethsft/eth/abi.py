"""Bundled ABIs and calldata decoding (eth-abi / eth-utils; no hand-written decoding).

Each ``data/abi_<family>.json`` file is a standard JSON ABI fragment (functions
only).  :func:`functions` maps a 4-byte selector to the :class:`Function`
objects that declare it (families may share a selector, e.g. ``unwrapWETH9``).
Families in :data:`PINNED` decode only on their own contracts (their function
names are generic, ``wrap(uint256)``, ``submit(address)``, or their selector is
``0x00000000``).  ABIs a user brings
(``prepare --abi``) are set for the duration of a run with :func:`user_functions`
and consulted per contract address by :func:`lookup`.
"""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources

import eth_abi
from eth_abi.decoding import (
    AddressDecoder, ByteStringDecoder, ContextFramesBytesIO, FixedByteSizeDecoder, HeadTailDecoder, TupleDecoder,
    UnsignedIntegerDecoder,
)
from eth_abi.exceptions import InsufficientDataBytes, InvalidPointer, NonEmptyPaddingBytes
from eth_abi.registry import BaseEquals, is_base_tuple, registry as _default_registry
from eth_utils import function_signature_to_4byte_selector


def _word(stream) -> bytes:
    data = stream.read(32)
    if len(data) != 32:
        raise InsufficientDataBytes(f"Tried to read 32 bytes, only got {len(data)} bytes.")
    return data


class _LowerAddressDecoder(AddressDecoder):
    """eth-abi's AddressDecoder (same checks: 32 bytes, 12 zero padding bytes)
    returning the address as lower-case 0x-hex directly instead of through
    eth_utils.to_normalized_address, in one step instead of eth-abi's generic
    read / split / validate calls (the same value, several times faster;
    decoding dominates ``prepare``)."""

    def decode(self, stream):
        data = _word(stream)
        if data[:12] != b"\x00" * 12:
            raise NonEmptyPaddingBytes(f"Padding bytes were not empty: {data[:12]!r}")
        return "0x" + data[12:].hex()


class _UintDecoder(UnsignedIntegerDecoder):
    """eth-abi's UnsignedIntegerDecoder (same checks: 32 bytes, zero padding
    above the type's bits) in one step: ``uint`` words are most of the calldata."""

    def decode(self, stream):
        value = int.from_bytes(_word(stream), "big")
        if value >> self.value_bit_size:
            raise NonEmptyPaddingBytes(f"Padding bytes were not empty: uint{self.value_bit_size} value {value}")
        return value


class _BytesDecoder(ByteStringDecoder):
    """eth-abi's ByteStringDecoder (strict: the padded length present, zero padding) reading its length
    word in one step."""

    def read_data_from_stream(self, stream):
        length = int.from_bytes(_word(stream), "big")
        padded = -(-length // 32) * 32
        data = stream.read(padded)
        if len(data) < padded:
            raise InsufficientDataBytes(f"Tried to read {padded} bytes, only got {len(data)} bytes")
        if data[length:] != b"\x00" * (padded - length):
            raise NonEmptyPaddingBytes(f"Padding bytes were not empty: {data[length:]!r}")
        return data[:length]


class _HeadTailDecoder(HeadTailDecoder):
    """eth-abi's HeadTailDecoder reading the offset word in one step."""

    def decode(self, stream):
        stream.push_frame(int.from_bytes(_word(stream), "big"))
        value = self.tail_decoder(stream)
        stream.pop_frame()
        return value


class _TupleDecoder(TupleDecoder):
    """eth-abi's TupleDecoder; a tuple without dynamic members has no pointers,
    so the pointer pre-pass (which decodes every static member a second time)
    is skipped for it.  For a tuple with dynamic members the pre-pass makes
    eth-abi's checks (no pointer into the head or past the end) but steps over
    one-word static members (uint, int, address, bool, bytesN) instead of
    decoding them: the decoding pass that follows validates those."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.decoders = tuple(_HeadTailDecoder(tail_decoder=d.tail_decoder) if type(d) is HeadTailDecoder else d
                              for d in self.decoders)

    def validate_pointers(self, stream) -> None:
        if not self.is_dynamic:
            return
        current = stream.tell()
        end_of_offsets = current + 32 * sum(getattr(d, "array_size", 1) for d in self.decoders)
        total = len(stream.getbuffer())
        for decoder in self.decoders:
            if isinstance(decoder, HeadTailDecoder):
                target = current + int.from_bytes(_word(stream), "big")
                if target < end_of_offsets or target >= total:
                    raise InvalidPointer(f"Invalid pointer in tuple at location {stream.tell() - 32} in payload")
            elif isinstance(decoder, FixedByteSizeDecoder):
                stream.seek(32, 1)
            else:
                decoder(stream)
        stream.seek(current)


_REGISTRY = _default_registry.copy()
_REGISTRY.unregister_decoder("address")
_REGISTRY.register_decoder(BaseEquals("address"), _LowerAddressDecoder, label="address")
_REGISTRY.unregister_decoder("uint")
_REGISTRY.register_decoder(BaseEquals("uint"), _UintDecoder, label="uint")
_REGISTRY.unregister_decoder("bytes")
_REGISTRY.register_decoder(BaseEquals("bytes", with_sub=False), _BytesDecoder, label="bytes")
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
    "universal_router",
    "permit2",
    "oneinch_v5",
    "oneinch_v6",
    "lido",
    "wsteth",
    "lido_withdrawal_queue",
    "aave_v3_pool",
    "seaport",
)
# family -> the mainnet contracts it decodes on (any other address: the selector is not claimed)
PINNED = {
    "lido": frozenset({"0xae7ab96520de3a18e5e111b5eaab095312d7fe84"}),
    "wsteth": frozenset({"0x7f39c581f595b53c5cb19bd0b3f8da6c935e2ca0"}),
    "lido_withdrawal_queue": frozenset({"0x889edc2edab5f40e902b864ad4d7ade8e412f9b1"}),
    # Seaport 1.1, 1.4, 1.5, 1.6 (fulfillBasicOrder_efficient_6GL6yc's selector is 0x00000000)
    "seaport": frozenset({"0x00000000006c3852cbef3e08e8df289169ede581", "0x00000000000001ad428e4906ae43d8f9852d0dd6",
                          "0x00000000000000adc04c56bf30ac9d3c0aaf14dc", "0x0000000000000068f116a894984e2db1123eb395"}),
}


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


_USER: dict[str, dict[str, Function]] = {}


class user_functions:
    """Context manager: ``{contract address: {selector: Function}}`` consulted by :func:`lookup`
    while it is active (``prepare --abi``); restored on exit."""

    def __init__(self, table: dict[str, dict[str, Function]]):
        self.table = table

    def __enter__(self):
        global _USER
        self.saved, _USER = _USER, self.table
        return self

    def __exit__(self, *exc):
        global _USER
        _USER = self.saved


def lookup(selector: str, to: str | None) -> Function | None:
    """The Function that decodes ``selector`` on contract ``to``: the bundled ABIs first (a pinned
    family only on its own contracts), then the user's ABI for that address; None if neither knows it."""
    for fn in functions().get(selector, ()):
        pinned = PINNED.get(fn.family)
        if pinned is None or to in pinned:
            return fn
    user = _USER.get(to) if _USER else None
    return user.get(selector) if user else None


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
