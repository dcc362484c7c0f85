"""Simulated producers: a deterministic nation of care providers, population and care histories."""
