"""Engagement index: which producers hold which information about each patient."""
