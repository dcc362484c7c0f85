"""Producer SDK: validate, batch and publish engagement updates; filter the index change stream."""

from npo_producer.producer import EngagementProducer, split_per_patient
from npo_producer.subscription import ChangeFilter
from npo_producer.validation import Code, InvalidUpdate, Rules, transactions_of

__all__ = [
    "ChangeFilter", "Code", "EngagementProducer", "InvalidUpdate", "Rules", "split_per_patient",
    "transactions_of",
]
