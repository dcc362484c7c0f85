"""The benchmarks behind ``npo bench``: each drives a service from outside and prints figures.

``ingest`` (the index), ``query`` with its load generator ``query_load`` (producers, stand-ins,
readers), ``consent``, ``audit``, and ``failover`` (Kafka nodes killed under load, on the whole
nation of ``nation``, which the cross-service tests run too); ``harness`` finds or starts the
broker and database and prints the figures, ``cpu`` measures the CPU of each process a
benchmark drives. They are registered through the ``npo.bench`` entry points, so the services
carry no benchmark code and do not depend on ``npo_deploy``.
"""
