"""Connectors: the edges where storeops acts on stores, reaches people and probes systems.

Outer edge: may import httpx and storeops; `storeops/` itself never imports httpx, and
only `storeops.settings` wires a connector executor into the engine.
"""
