"""The secure transport: Noise (pure), the session (pure), framing and wire messages, and
the asyncio adapters that run them over TCP (``link``, ``connections``)."""
