"""The engagement record (design.md §5.1): its identity, versions and validation rules. No I/O.

Neutral ground for everyone who makes or keeps engagements: the producer SDK validates with
these rules before it sends, the index applies the same rules to what it ingests.
"""

from npo_engagement.model import (
    NOT_APPLICABLE,
    Identity,
    Transaction,
    Version,
    identity_key,
    normalise_optional,
)
from npo_engagement.validation import (
    MAX_TRANSACTIONS,
    Code,
    InvalidUpdate,
    Rules,
    Violation,
    identity_of,
    transactions_of,
)

__all__ = [
    "MAX_TRANSACTIONS", "NOT_APPLICABLE", "Code", "Identity", "InvalidUpdate", "Rules", "Transaction",
    "Version", "Violation", "identity_key", "identity_of", "normalise_optional", "transactions_of",
]
