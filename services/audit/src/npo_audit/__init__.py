"""Audit: the tamper-evident access log, its compliance follow-up and the patient's extract."""
