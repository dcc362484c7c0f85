"""Every key the audit keeps in its state dir, made in one place for a deployment's Secret.

The replicas of one audit must share them: the checkpoint key pair (a checkpoint one replica
signs, any other verifies), the register key (the kinship rule compares digests made by any
replica) and the FHIR paging key (a next-page link issued by one replica is opened by another).
A single process makes them on first need; a cluster gets them from a Secret made once by
``npo k8s secrets``, which calls this through the ``npo.keys`` entry point.
"""

from __future__ import annotations

from pathlib import Path

from .fhir_search_pages import KEY_FILE as PAGE_KEY_FILE
from .fhir_search_pages import PageTokens
from .signing import KEY_NAME, PUBLIC_KEY_FILE, REGISTER_KEY_FILE, RegisterKey, ensure_signing_key


def ensure_keys(keys_dir: Path) -> list[Path]:
    """Make what is missing of the audit's keys in ``keys_dir``; the paths of all of them."""
    ensure_signing_key(keys_dir)
    RegisterKey.in_dir(keys_dir)
    PageTokens.in_dir(keys_dir, ttl_s=1)
    names = (f"{KEY_NAME}-private.pem", PUBLIC_KEY_FILE, REGISTER_KEY_FILE, PAGE_KEY_FILE)
    return [keys_dir / name for name in names]
