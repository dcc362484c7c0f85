"""Producer SDK: validate, batch and publish engagement updates; filter the index change stream."""

from npo_engagement import Code, InvalidUpdate, Rules, transactions_of
from npo_producer.producer import EngagementProducer, patient_key, split_per_patient
from npo_producer.subscription import ChangeFilter

__all__ = [
    "ChangeFilter", "Code", "EngagementProducer", "InvalidUpdate", "Rules", "patient_key",
    "split_per_patient", "transactions_of",
]
