"""Consent: relations, consents, blocks, emergency access and the access decision under PDL."""
