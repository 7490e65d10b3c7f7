"""Connector tests: real servers on loopback."""
