"""Leaf primitives every package may import: identity and PeerId, derived keys, canonical
CBOR, multiaddrs, the error tree and backoff. Imports nothing else of ours."""
