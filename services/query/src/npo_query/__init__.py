"""Aggregating query: a patient's overview from the producers the index names and routing allows."""
