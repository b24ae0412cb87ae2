"""Carrier connectors: the Carrier interface, the simulated carrier, and (later) SMPP."""
