import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ActivityType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ACTIVITY_TYPE_UNSPECIFIED: _ClassVar[ActivityType]
    READ: _ClassVar[ActivityType]
    WRITE: _ClassVar[ActivityType]
    SIGN: _ClassVar[ActivityType]
    PRINT: _ClassVar[ActivityType]
    VERIFY: _ClassVar[ActivityType]
    DELETE: _ClassVar[ActivityType]
    EMERGENCY_OPEN: _ClassVar[ActivityType]

class AccessBasis(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ACCESS_BASIS_UNSPECIFIED: _ClassVar[AccessBasis]
    NO_BASIS: _ClassVar[AccessBasis]
    OWN_CARE_GIVER: _ClassVar[AccessBasis]
    CONSENT: _ClassVar[AccessBasis]
    EMERGENCY: _ClassVar[AccessBasis]
    PATIENT_SELF: _ClassVar[AccessBasis]

class AccessOutcome(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ACCESS_OUTCOME_UNSPECIFIED: _ClassVar[AccessOutcome]
    ALLOWED: _ClassVar[AccessOutcome]
    PARTIAL: _ClassVar[AccessOutcome]
    DENIED: _ClassVar[AccessOutcome]
    NOT_DELIVERED: _ClassVar[AccessOutcome]

class ProcessingStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PROCESSING_STATUS_UNSPECIFIED: _ClassVar[ProcessingStatus]
    DATA_FROM_SOURCE: _ClassVar[ProcessingStatus]
    DATA_FROM_CACHE: _ClassVar[ProcessingStatus]
    DATA_FROM_CACHE_SYNCH_FAILED: _ClassVar[ProcessingStatus]
    NO_DATA_SYNCH_FAILED: _ClassVar[ProcessingStatus]
    WITHHELD_BY_DECISION: _ClassVar[ProcessingStatus]
    NOT_AUTHORISED_BY_ROUTING: _ClassVar[ProcessingStatus]
    REQUESTED: _ClassVar[ProcessingStatus]
ACTIVITY_TYPE_UNSPECIFIED: ActivityType
READ: ActivityType
WRITE: ActivityType
SIGN: ActivityType
PRINT: ActivityType
VERIFY: ActivityType
DELETE: ActivityType
EMERGENCY_OPEN: ActivityType
ACCESS_BASIS_UNSPECIFIED: AccessBasis
NO_BASIS: AccessBasis
OWN_CARE_GIVER: AccessBasis
CONSENT: AccessBasis
EMERGENCY: AccessBasis
PATIENT_SELF: AccessBasis
ACCESS_OUTCOME_UNSPECIFIED: AccessOutcome
ALLOWED: AccessOutcome
PARTIAL: AccessOutcome
DENIED: AccessOutcome
NOT_DELIVERED: AccessOutcome
PROCESSING_STATUS_UNSPECIFIED: ProcessingStatus
DATA_FROM_SOURCE: ProcessingStatus
DATA_FROM_CACHE: ProcessingStatus
DATA_FROM_CACHE_SYNCH_FAILED: ProcessingStatus
NO_DATA_SYNCH_FAILED: ProcessingStatus
WITHHELD_BY_DECISION: ProcessingStatus
NOT_AUTHORISED_BY_ROUTING: ProcessingStatus
REQUESTED: ProcessingStatus

class EventMeta(_message.Message):
    __slots__ = ("event_id", "event_time", "source", "correlation_id")
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    EVENT_TIME_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    CORRELATION_ID_FIELD_NUMBER: _ClassVar[int]
    event_id: str
    event_time: _timestamp_pb2.Timestamp
    source: str
    correlation_id: str
    def __init__(self, event_id: _Optional[str] = ..., event_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., source: _Optional[str] = ..., correlation_id: _Optional[str] = ...) -> None: ...

class Engagement(_message.Message):
    __slots__ = ("registered_resident_identification", "service_domain", "categorization", "logical_address", "business_object_instance_identifier", "clinical_process_interest_id", "most_recent_content", "source_system", "data_controller", "owner", "creation_time", "update_time")
    REGISTERED_RESIDENT_IDENTIFICATION_FIELD_NUMBER: _ClassVar[int]
    SERVICE_DOMAIN_FIELD_NUMBER: _ClassVar[int]
    CATEGORIZATION_FIELD_NUMBER: _ClassVar[int]
    LOGICAL_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    BUSINESS_OBJECT_INSTANCE_IDENTIFIER_FIELD_NUMBER: _ClassVar[int]
    CLINICAL_PROCESS_INTEREST_ID_FIELD_NUMBER: _ClassVar[int]
    MOST_RECENT_CONTENT_FIELD_NUMBER: _ClassVar[int]
    SOURCE_SYSTEM_FIELD_NUMBER: _ClassVar[int]
    DATA_CONTROLLER_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    CREATION_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    registered_resident_identification: str
    service_domain: str
    categorization: str
    logical_address: str
    business_object_instance_identifier: str
    clinical_process_interest_id: str
    most_recent_content: str
    source_system: str
    data_controller: str
    owner: str
    creation_time: _timestamp_pb2.Timestamp
    update_time: _timestamp_pb2.Timestamp
    def __init__(self, registered_resident_identification: _Optional[str] = ..., service_domain: _Optional[str] = ..., categorization: _Optional[str] = ..., logical_address: _Optional[str] = ..., business_object_instance_identifier: _Optional[str] = ..., clinical_process_interest_id: _Optional[str] = ..., most_recent_content: _Optional[str] = ..., source_system: _Optional[str] = ..., data_controller: _Optional[str] = ..., owner: _Optional[str] = ..., creation_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class EngagementTransaction(_message.Message):
    __slots__ = ("engagement", "delete_flag")
    ENGAGEMENT_FIELD_NUMBER: _ClassVar[int]
    DELETE_FLAG_FIELD_NUMBER: _ClassVar[int]
    engagement: Engagement
    delete_flag: bool
    def __init__(self, engagement: _Optional[_Union[Engagement, _Mapping]] = ..., delete_flag: _Optional[bool] = ...) -> None: ...

class EngagementUpdate(_message.Message):
    __slots__ = ("meta", "producer", "transactions")
    META_FIELD_NUMBER: _ClassVar[int]
    PRODUCER_FIELD_NUMBER: _ClassVar[int]
    TRANSACTIONS_FIELD_NUMBER: _ClassVar[int]
    meta: EventMeta
    producer: str
    transactions: _containers.RepeatedCompositeFieldContainer[EngagementTransaction]
    def __init__(self, meta: _Optional[_Union[EventMeta, _Mapping]] = ..., producer: _Optional[str] = ..., transactions: _Optional[_Iterable[_Union[EngagementTransaction, _Mapping]]] = ...) -> None: ...

class IndexChange(_message.Message):
    __slots__ = ("meta", "change", "engagement", "engagement_key", "caused_by_event_id")
    class ChangeType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        CHANGE_TYPE_UNSPECIFIED: _ClassVar[IndexChange.ChangeType]
        CREATED: _ClassVar[IndexChange.ChangeType]
        CONTENT_UPDATED: _ClassVar[IndexChange.ChangeType]
        DELETED: _ClassVar[IndexChange.ChangeType]
    CHANGE_TYPE_UNSPECIFIED: IndexChange.ChangeType
    CREATED: IndexChange.ChangeType
    CONTENT_UPDATED: IndexChange.ChangeType
    DELETED: IndexChange.ChangeType
    META_FIELD_NUMBER: _ClassVar[int]
    CHANGE_FIELD_NUMBER: _ClassVar[int]
    ENGAGEMENT_FIELD_NUMBER: _ClassVar[int]
    ENGAGEMENT_KEY_FIELD_NUMBER: _ClassVar[int]
    CAUSED_BY_EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    meta: EventMeta
    change: IndexChange.ChangeType
    engagement: Engagement
    engagement_key: str
    caused_by_event_id: str
    def __init__(self, meta: _Optional[_Union[EventMeta, _Mapping]] = ..., change: _Optional[_Union[IndexChange.ChangeType, str]] = ..., engagement: _Optional[_Union[Engagement, _Mapping]] = ..., engagement_key: _Optional[str] = ..., caused_by_event_id: _Optional[str] = ...) -> None: ...

class IndexChanges(_message.Message):
    __slots__ = ("meta", "changes")
    META_FIELD_NUMBER: _ClassVar[int]
    CHANGES_FIELD_NUMBER: _ClassVar[int]
    meta: EventMeta
    changes: _containers.RepeatedCompositeFieldContainer[IndexChange]
    def __init__(self, meta: _Optional[_Union[EventMeta, _Mapping]] = ..., changes: _Optional[_Iterable[_Union[IndexChange, _Mapping]]] = ...) -> None: ...

class Actor(_message.Message):
    __slots__ = ("user_hsa_id", "name", "title", "assignment_id", "purpose", "care_unit_hsa_id", "care_giver_hsa_id", "roles", "system_hsa_id")
    USER_HSA_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    ASSIGNMENT_ID_FIELD_NUMBER: _ClassVar[int]
    PURPOSE_FIELD_NUMBER: _ClassVar[int]
    CARE_UNIT_HSA_ID_FIELD_NUMBER: _ClassVar[int]
    CARE_GIVER_HSA_ID_FIELD_NUMBER: _ClassVar[int]
    ROLES_FIELD_NUMBER: _ClassVar[int]
    SYSTEM_HSA_ID_FIELD_NUMBER: _ClassVar[int]
    user_hsa_id: str
    name: str
    title: str
    assignment_id: str
    purpose: str
    care_unit_hsa_id: str
    care_giver_hsa_id: str
    roles: _containers.RepeatedScalarFieldContainer[str]
    system_hsa_id: str
    def __init__(self, user_hsa_id: _Optional[str] = ..., name: _Optional[str] = ..., title: _Optional[str] = ..., assignment_id: _Optional[str] = ..., purpose: _Optional[str] = ..., care_unit_hsa_id: _Optional[str] = ..., care_giver_hsa_id: _Optional[str] = ..., roles: _Optional[_Iterable[str]] = ..., system_hsa_id: _Optional[str] = ...) -> None: ...

class ProducerResult(_message.Message):
    __slots__ = ("logical_address", "source_system", "data_controller", "care_unit_hsa_id", "categories", "status", "cause_code", "causing_agent", "http_status", "record_count", "duration_ms", "social_services", "withheld_records", "protected_fields_removed")
    LOGICAL_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    SOURCE_SYSTEM_FIELD_NUMBER: _ClassVar[int]
    DATA_CONTROLLER_FIELD_NUMBER: _ClassVar[int]
    CARE_UNIT_HSA_ID_FIELD_NUMBER: _ClassVar[int]
    CATEGORIES_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    CAUSE_CODE_FIELD_NUMBER: _ClassVar[int]
    CAUSING_AGENT_FIELD_NUMBER: _ClassVar[int]
    HTTP_STATUS_FIELD_NUMBER: _ClassVar[int]
    RECORD_COUNT_FIELD_NUMBER: _ClassVar[int]
    DURATION_MS_FIELD_NUMBER: _ClassVar[int]
    SOCIAL_SERVICES_FIELD_NUMBER: _ClassVar[int]
    WITHHELD_RECORDS_FIELD_NUMBER: _ClassVar[int]
    PROTECTED_FIELDS_REMOVED_FIELD_NUMBER: _ClassVar[int]
    logical_address: str
    source_system: str
    data_controller: str
    care_unit_hsa_id: str
    categories: _containers.RepeatedScalarFieldContainer[str]
    status: ProcessingStatus
    cause_code: str
    causing_agent: str
    http_status: int
    record_count: int
    duration_ms: int
    social_services: bool
    withheld_records: _containers.RepeatedCompositeFieldContainer[WithheldRecords]
    protected_fields_removed: int
    def __init__(self, logical_address: _Optional[str] = ..., source_system: _Optional[str] = ..., data_controller: _Optional[str] = ..., care_unit_hsa_id: _Optional[str] = ..., categories: _Optional[_Iterable[str]] = ..., status: _Optional[_Union[ProcessingStatus, str]] = ..., cause_code: _Optional[str] = ..., causing_agent: _Optional[str] = ..., http_status: _Optional[int] = ..., record_count: _Optional[int] = ..., duration_ms: _Optional[int] = ..., social_services: _Optional[bool] = ..., withheld_records: _Optional[_Iterable[_Union[WithheldRecords, _Mapping]]] = ..., protected_fields_removed: _Optional[int] = ...) -> None: ...

class WithheldRecords(_message.Message):
    __slots__ = ("reason_code", "care_giver_hsa_id", "care_unit_hsa_id", "record_count")
    REASON_CODE_FIELD_NUMBER: _ClassVar[int]
    CARE_GIVER_HSA_ID_FIELD_NUMBER: _ClassVar[int]
    CARE_UNIT_HSA_ID_FIELD_NUMBER: _ClassVar[int]
    RECORD_COUNT_FIELD_NUMBER: _ClassVar[int]
    reason_code: str
    care_giver_hsa_id: str
    care_unit_hsa_id: str
    record_count: int
    def __init__(self, reason_code: _Optional[str] = ..., care_giver_hsa_id: _Optional[str] = ..., care_unit_hsa_id: _Optional[str] = ..., record_count: _Optional[int] = ...) -> None: ...

class AccessEvent(_message.Message):
    __slots__ = ("meta", "actor", "patient_id", "activity", "categories", "basis", "emergency_reason", "outcome", "reason_code", "blocked_information_exists", "protected_identity", "producers", "trace_id", "withheld_record_count")
    META_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    PATIENT_ID_FIELD_NUMBER: _ClassVar[int]
    ACTIVITY_FIELD_NUMBER: _ClassVar[int]
    CATEGORIES_FIELD_NUMBER: _ClassVar[int]
    BASIS_FIELD_NUMBER: _ClassVar[int]
    EMERGENCY_REASON_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    REASON_CODE_FIELD_NUMBER: _ClassVar[int]
    BLOCKED_INFORMATION_EXISTS_FIELD_NUMBER: _ClassVar[int]
    PROTECTED_IDENTITY_FIELD_NUMBER: _ClassVar[int]
    PRODUCERS_FIELD_NUMBER: _ClassVar[int]
    TRACE_ID_FIELD_NUMBER: _ClassVar[int]
    WITHHELD_RECORD_COUNT_FIELD_NUMBER: _ClassVar[int]
    meta: EventMeta
    actor: Actor
    patient_id: str
    activity: ActivityType
    categories: _containers.RepeatedScalarFieldContainer[str]
    basis: AccessBasis
    emergency_reason: str
    outcome: AccessOutcome
    reason_code: str
    blocked_information_exists: bool
    protected_identity: bool
    producers: _containers.RepeatedCompositeFieldContainer[ProducerResult]
    trace_id: str
    withheld_record_count: int
    def __init__(self, meta: _Optional[_Union[EventMeta, _Mapping]] = ..., actor: _Optional[_Union[Actor, _Mapping]] = ..., patient_id: _Optional[str] = ..., activity: _Optional[_Union[ActivityType, str]] = ..., categories: _Optional[_Iterable[str]] = ..., basis: _Optional[_Union[AccessBasis, str]] = ..., emergency_reason: _Optional[str] = ..., outcome: _Optional[_Union[AccessOutcome, str]] = ..., reason_code: _Optional[str] = ..., blocked_information_exists: _Optional[bool] = ..., protected_identity: _Optional[bool] = ..., producers: _Optional[_Iterable[_Union[ProducerResult, _Mapping]]] = ..., trace_id: _Optional[str] = ..., withheld_record_count: _Optional[int] = ...) -> None: ...

class ConsentEvent(_message.Message):
    __slots__ = ("meta", "subject", "change", "patient_id", "record_id", "care_giver_hsa_id", "care_unit_hsa_id", "user_hsa_id", "valid_from", "valid_to", "reason", "actor", "refusal_code", "attempted", "refusal_detail")
    class Subject(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        SUBJECT_UNSPECIFIED: _ClassVar[ConsentEvent.Subject]
        PATIENT_RELATION: _ClassVar[ConsentEvent.Subject]
        CONSENT: _ClassVar[ConsentEvent.Subject]
        BLOCK: _ClassVar[ConsentEvent.Subject]
        BLOCK_LIFT: _ClassVar[ConsentEvent.Subject]
        EMERGENCY_ACCESS: _ClassVar[ConsentEvent.Subject]
        PROTECTED_IDENTITY: _ClassVar[ConsentEvent.Subject]
    SUBJECT_UNSPECIFIED: ConsentEvent.Subject
    PATIENT_RELATION: ConsentEvent.Subject
    CONSENT: ConsentEvent.Subject
    BLOCK: ConsentEvent.Subject
    BLOCK_LIFT: ConsentEvent.Subject
    EMERGENCY_ACCESS: ConsentEvent.Subject
    PROTECTED_IDENTITY: ConsentEvent.Subject
    class Change(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        CHANGE_UNSPECIFIED: _ClassVar[ConsentEvent.Change]
        REGISTERED: _ClassVar[ConsentEvent.Change]
        REVOKED: _ClassVar[ConsentEvent.Change]
        EXPIRED: _ClassVar[ConsentEvent.Change]
        REFUSED: _ClassVar[ConsentEvent.Change]
    CHANGE_UNSPECIFIED: ConsentEvent.Change
    REGISTERED: ConsentEvent.Change
    REVOKED: ConsentEvent.Change
    EXPIRED: ConsentEvent.Change
    REFUSED: ConsentEvent.Change
    META_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    CHANGE_FIELD_NUMBER: _ClassVar[int]
    PATIENT_ID_FIELD_NUMBER: _ClassVar[int]
    RECORD_ID_FIELD_NUMBER: _ClassVar[int]
    CARE_GIVER_HSA_ID_FIELD_NUMBER: _ClassVar[int]
    CARE_UNIT_HSA_ID_FIELD_NUMBER: _ClassVar[int]
    USER_HSA_ID_FIELD_NUMBER: _ClassVar[int]
    VALID_FROM_FIELD_NUMBER: _ClassVar[int]
    VALID_TO_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    REFUSAL_CODE_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTED_FIELD_NUMBER: _ClassVar[int]
    REFUSAL_DETAIL_FIELD_NUMBER: _ClassVar[int]
    meta: EventMeta
    subject: ConsentEvent.Subject
    change: ConsentEvent.Change
    patient_id: str
    record_id: str
    care_giver_hsa_id: str
    care_unit_hsa_id: str
    user_hsa_id: str
    valid_from: _timestamp_pb2.Timestamp
    valid_to: _timestamp_pb2.Timestamp
    reason: str
    actor: Actor
    refusal_code: str
    attempted: ConsentEvent.Change
    refusal_detail: str
    def __init__(self, meta: _Optional[_Union[EventMeta, _Mapping]] = ..., subject: _Optional[_Union[ConsentEvent.Subject, str]] = ..., change: _Optional[_Union[ConsentEvent.Change, str]] = ..., patient_id: _Optional[str] = ..., record_id: _Optional[str] = ..., care_giver_hsa_id: _Optional[str] = ..., care_unit_hsa_id: _Optional[str] = ..., user_hsa_id: _Optional[str] = ..., valid_from: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., valid_to: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., reason: _Optional[str] = ..., actor: _Optional[_Union[Actor, _Mapping]] = ..., refusal_code: _Optional[str] = ..., attempted: _Optional[_Union[ConsentEvent.Change, str]] = ..., refusal_detail: _Optional[str] = ...) -> None: ...
