"""Plumbing shared by the NPO services: settings, Kafka, telemetry, contracts, identity.

It holds no domain rules: those live in each service.
"""
