"""``python -m npo_audit …``: the same commands as ``npo audit …`` (verify, worker)."""

from npo_audit.cli import audit_app

audit_app(prog_name="npo-audit")
