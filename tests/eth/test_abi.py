"""The lean eth-abi decoders of ethsft.eth.abi decode exactly what eth_abi.decode does, and refuse what it refuses."""

import random

import eth_abi
import pytest
from eth_abi.exceptions import DecodingError

from ethsft.eth.abi import functions
from ethsft.eth.synth import generate_rows


def _plain(value):
    """eth_abi.decode's values in the shape Function.decode gives (addresses lower-case, tuples as lists)."""
    if isinstance(value, str) and value.startswith("0x"):
        return value.lower()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _flat(fn, args):
    def walk(param, value):
        if param["type"] == "tuple":
            return [walk(c, value[c["name"]]) for c in param["components"]]
        if param["type"].startswith("tuple["):
            return [walk(dict(param, type="tuple"), v) for v in value]
        return _plain(value)

    return [walk(p, args[p["name"]]) for p in fn.inputs]


def test_decoding_matches_eth_abi_on_every_bundled_function_synth_calls():
    seen = set()
    for r in generate_rows(3000, seed=9):
        data = bytes.fromhex(r["input"][2:])
        fns = functions().get("0x" + data[:4].hex()) if len(data) >= 4 else None
        if not fns:
            continue
        fn = fns[0]
        seen.add(fn.selector)
        assert _flat(fn, fn.decode(data[4:])) == _plain(list(eth_abi.decode(fn.types, data[4:]))), fn
    families = {f.family for fs in functions().values() for f in fs if f.selector in seen}
    assert len(seen) >= 35 and {"universal_router", "seaport", "permit2", "oneinch_v6", "aave_v3_pool"} <= families


def test_malformed_calldata_is_refused_like_eth_abi():
    rng = random.Random(0)
    refused = 0
    for fn in (f for fs in functions().values() for f in fs):
        for _ in range(20):
            data = rng.randbytes(rng.choice([0, 4, 31, 64, 96, 200]))
            try:
                eth_abi.decode(fn.types, data)
                ok = True
            except DecodingError:
                ok = False
            if ok:
                fn.decode(data)  # what eth-abi accepts, the lean decoders accept
            else:
                with pytest.raises(DecodingError):
                    fn.decode(data)
                refused += 1
    assert refused > 1000
