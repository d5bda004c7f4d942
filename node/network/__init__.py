"""The NetworkLayer core (sans-I/O): what goes to which peer when, acknowledgements,
retransmission, de-duplication and per-link limits. Imports ``node.core`` only."""
