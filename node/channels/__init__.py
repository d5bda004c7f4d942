"""The channel core (sans-I/O): channels as MLS groups, invites with consent, the no-fork
rule, sealed envelopes. Imports ``node.core`` and ``mls`` only (DESIGN.md section 1)."""
