"""Package data: bundled ABI fragments (abi_*.json) and the mainnet registry (tokens.json)."""
