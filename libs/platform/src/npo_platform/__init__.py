"""Plumbing shared by the NPO services (settings, Kafka, telemetry, contracts, identifiers, identity).

It holds no domain rules: those live in each service.
"""
