"""SMPP 3.4 numeric constants: command ids, command_status codes, TON/NPI, esm_class, data_coding, TLV tags.

Everything here is data from the SMPP v3.4 specification (Issue 1.2, 1999); section numbers are cited per
table. The enums are IntEnums so a PDU field may hold either the enum member or a plain int: peers send
vendor-specific values (command_status 0x400-0x4FF is reserved for SMSC vendors, 5.1.3) that must survive
a decode/encode round trip, so PDU fields are typed ``int`` and these names are for readability.
"""

from __future__ import annotations

import enum

__all__ = [
    "ESM_MESSAGE_TYPE_MASK",
    "GENERIC_NACK_REPLY_IDS",
    "INTERFACE_VERSION_34",
    "MAX_SEQUENCE_NUMBER",
    "RESPONSE_BIT",
    "CommandId",
    "CommandStatus",
    "DataCoding",
    "EsmClass",
    "MessageState",
    "Npi",
    "RegisteredDelivery",
    "TlvTag",
    "Ton",
    "status_name",
]

# 5.1.2: the response to a request has the request's command_id with the top bit set.
RESPONSE_BIT = 0x80000000
# 5.1.4 / 2.2.1: sequence numbers run 0x00000001..0x7FFFFFFF.
MAX_SEQUENCE_NUMBER = 0x7FFFFFFF
# 5.2.4: interface_version for SMPP 3.4.
INTERFACE_VERSION_34 = 0x34


class CommandId(enum.IntEnum):
    """5.1.2.1, Table 5-1."""

    GENERIC_NACK = 0x80000000
    BIND_RECEIVER = 0x00000001
    BIND_RECEIVER_RESP = 0x80000001
    BIND_TRANSMITTER = 0x00000002
    BIND_TRANSMITTER_RESP = 0x80000002
    QUERY_SM = 0x00000003
    QUERY_SM_RESP = 0x80000003
    SUBMIT_SM = 0x00000004
    SUBMIT_SM_RESP = 0x80000004
    DELIVER_SM = 0x00000005
    DELIVER_SM_RESP = 0x80000005
    UNBIND = 0x00000006
    UNBIND_RESP = 0x80000006
    REPLACE_SM = 0x00000007
    REPLACE_SM_RESP = 0x80000007
    CANCEL_SM = 0x00000008
    CANCEL_SM_RESP = 0x80000008
    BIND_TRANSCEIVER = 0x00000009
    BIND_TRANSCEIVER_RESP = 0x80000009
    OUTBIND = 0x0000000B
    ENQUIRE_LINK = 0x00000015
    ENQUIRE_LINK_RESP = 0x80000015
    SUBMIT_MULTI = 0x00000021
    SUBMIT_MULTI_RESP = 0x80000021
    ALERT_NOTIFICATION = 0x00000102
    DATA_SM = 0x00000103
    DATA_SM_RESP = 0x80000103


# Requests that have no response PDU of their own (4.1.7 outbind, 4.12 alert_notification): a malformed one
# can only be answered with generic_nack.
GENERIC_NACK_REPLY_IDS = frozenset({CommandId.OUTBIND, CommandId.ALERT_NOTIFICATION})


class CommandStatus(enum.IntEnum):
    """5.1.3, Table 5-2 (SMPP 3.4 error codes), plus ESME_RINVDCS which only SMPP 5.0 defines."""

    ESME_ROK = 0x00000000  # No Error
    ESME_RINVMSGLEN = 0x00000001  # Message Length is invalid
    ESME_RINVCMDLEN = 0x00000002  # Command Length is invalid
    ESME_RINVCMDID = 0x00000003  # Invalid Command ID
    ESME_RINVBNDSTS = 0x00000004  # Incorrect BIND Status for given command
    ESME_RALYBND = 0x00000005  # ESME Already in Bound State
    ESME_RINVPRTFLG = 0x00000006  # Invalid Priority Flag
    ESME_RINVREGDLVFLG = 0x00000007  # Invalid Registered Delivery Flag
    ESME_RSYSERR = 0x00000008  # System Error
    ESME_RINVSRCADR = 0x0000000A  # Invalid Source Address
    ESME_RINVDSTADR = 0x0000000B  # Invalid Dest Addr
    ESME_RINVMSGID = 0x0000000C  # Message ID is invalid
    ESME_RBINDFAIL = 0x0000000D  # Bind Failed
    ESME_RINVPASWD = 0x0000000E  # Invalid Password
    ESME_RINVSYSID = 0x0000000F  # Invalid System ID
    ESME_RCANCELFAIL = 0x00000011  # Cancel SM Failed
    ESME_RREPLACEFAIL = 0x00000013  # Replace SM Failed
    ESME_RMSGQFUL = 0x00000014  # Message Queue Full
    ESME_RINVSERTYP = 0x00000015  # Invalid Service Type
    ESME_RINVNUMDESTS = 0x00000033  # Invalid number of destinations
    ESME_RINVDLNAME = 0x00000034  # Invalid Distribution List name
    ESME_RINVDESTFLAG = 0x00000040  # Destination flag is invalid (submit_multi)
    ESME_RINVSUBREP = 0x00000042  # Invalid 'submit with replace' request
    ESME_RINVESMCLASS = 0x00000043  # Invalid esm_class field data
    ESME_RCNTSUBDL = 0x00000044  # Cannot Submit to Distribution List
    ESME_RSUBMITFAIL = 0x00000045  # submit_sm or submit_multi failed
    ESME_RINVSRCTON = 0x00000048  # Invalid Source address TON
    ESME_RINVSRCNPI = 0x00000049  # Invalid Source address NPI
    ESME_RINVDSTTON = 0x00000050  # Invalid Destination address TON
    ESME_RINVDSTNPI = 0x00000051  # Invalid Destination address NPI
    ESME_RINVSYSTYP = 0x00000053  # Invalid system_type field
    ESME_RINVREPFLAG = 0x00000054  # Invalid replace_if_present flag
    ESME_RINVNUMMSGS = 0x00000055  # Invalid number of messages
    ESME_RTHROTTLED = 0x00000058  # Throttling error (ESME has exceeded allowed message limits)
    ESME_RINVSCHED = 0x00000061  # Invalid Scheduled Delivery Time
    ESME_RINVEXPIRY = 0x00000062  # Invalid message validity period (Expiry time)
    ESME_RINVDFTMSGID = 0x00000063  # Predefined Message Invalid or Not Found
    ESME_RX_T_APPN = 0x00000064  # ESME Receiver Temporary App Error Code
    ESME_RX_P_APPN = 0x00000065  # ESME Receiver Permanent App Error Code
    ESME_RX_R_APPN = 0x00000066  # ESME Receiver Reject Message Error Code
    ESME_RQUERYFAIL = 0x00000067  # query_sm request failed
    ESME_RINVOPTPARSTREAM = 0x000000C0  # Error in the optional part of the PDU Body
    ESME_ROPTPARNOTALLWD = 0x000000C1  # Optional Parameter not allowed
    ESME_RINVPARLEN = 0x000000C2  # Invalid Parameter Length
    ESME_RMISSINGOPTPARAM = 0x000000C3  # Expected Optional Parameter missing
    ESME_RINVOPTPARAMVAL = 0x000000C4  # Invalid Optional Parameter Value
    ESME_RDELIVERYFAILURE = 0x000000FE  # Delivery Failure (used for data_sm_resp)
    ESME_RUNKNOWNERR = 0x000000FF  # Unknown Error
    # SMPP 5.0 section 4.7.6 only; SMSCs that speak 3.4 with 5.0 extensions send it for a bad data_coding.
    ESME_RINVDCS = 0x00000104  # Invalid Data Coding Scheme


def status_name(code: int) -> str:
    """``ESME_RTHROTTLED`` for 0x58; ``0x00000401`` for a code outside the table (vendor-specific)."""
    try:
        return CommandStatus(code).name
    except ValueError:
        return f"0x{code:08X}"


class Ton(enum.IntEnum):
    """Type of Number, 5.2.5."""

    UNKNOWN = 0x00
    INTERNATIONAL = 0x01
    NATIONAL = 0x02
    NETWORK_SPECIFIC = 0x03
    SUBSCRIBER_NUMBER = 0x04
    ALPHANUMERIC = 0x05
    ABBREVIATED = 0x06


class Npi(enum.IntEnum):
    """Numbering Plan Indicator, 5.2.6."""

    UNKNOWN = 0x00
    ISDN = 0x01  # E.163/E.164
    DATA = 0x03  # X.121
    TELEX = 0x04  # F.69
    LAND_MOBILE = 0x06  # E.212
    NATIONAL = 0x08
    PRIVATE = 0x09
    ERMES = 0x0A
    INTERNET = 0x0E  # IP
    WAP_CLIENT_ID = 0x12


class EsmClass(enum.IntFlag):
    """esm_class bits, 5.2.12. Message mode is bits 1-0, message type bits 5-2, GSM features bits 7-6."""

    DEFAULT = 0x00
    DATAGRAM_MODE = 0x01
    FORWARD_MODE = 0x02
    STORE_AND_FORWARD_MODE = 0x03
    # Message type (deliver_sm from the SMSC): a delivery receipt is 0b0001 in bits 5-2.
    DELIVERY_RECEIPT = 0x04
    DELIVERY_ACK = 0x08
    MANUAL_USER_ACK = 0x10
    CONVERSATION_ABORT = 0x18
    INTERMEDIATE_NOTIFICATION = 0x20
    # GSM network specific features.
    UDHI = 0x40  # short_message starts with a User Data Header (TS 23.040 9.2.3.24)
    REPLY_PATH = 0x80


# Bits 5-2 of esm_class carry the message type; compare the masked value, not single bits.
ESM_MESSAGE_TYPE_MASK = 0x3C


class DataCoding(enum.IntEnum):
    """data_coding, 5.2.19."""

    SMSC_DEFAULT = 0x00  # SMSC default alphabet: GSM 03.38 on most SMSCs (and node-smpp)
    IA5 = 0x01  # IA5 (CCITT T.50) / ASCII
    OCTET_UNSPECIFIED_2 = 0x02  # 8-bit binary
    LATIN1 = 0x03  # ISO-8859-1
    OCTET_UNSPECIFIED = 0x04  # 8-bit binary
    JIS = 0x05  # X 0208-1990
    CYRILLIC = 0x06  # ISO-8859-5
    LATIN_HEBREW = 0x07  # ISO-8859-8
    UCS2 = 0x08  # ISO/IEC-10646, big-endian
    PICTOGRAM = 0x09
    ISO_2022_JP = 0x0A
    EXTENDED_KANJI = 0x0D  # JIS X 0212-1990
    KS_C_5601 = 0x0E


class RegisteredDelivery(enum.IntFlag):
    """registered_delivery, 5.2.17: bits 1-0 select the SMSC delivery receipt."""

    NONE = 0x00
    RECEIPT_ON_SUCCESS_OR_FAILURE = 0x01
    RECEIPT_ON_FAILURE = 0x02
    SME_DELIVERY_ACK = 0x04
    SME_MANUAL_ACK = 0x08
    INTERMEDIATE_NOTIFICATION = 0x10


class MessageState(enum.IntEnum):
    """message_state TLV values, 5.2.28 (and the ``stat:`` words of Appendix B in comments)."""

    ENROUTE = 1  # ENROUTE
    DELIVERED = 2  # DELIVRD
    EXPIRED = 3  # EXPIRED
    DELETED = 4  # DELETED
    UNDELIVERABLE = 5  # UNDELIV
    ACCEPTED = 6  # ACCEPTD
    UNKNOWN = 7  # UNKNOWN
    REJECTED = 8  # REJECTD


class TlvTag(enum.IntEnum):
    """Optional parameter tags, 5.3.2 (Table 5-18); the ones an ESME meets in practice."""

    DEST_ADDR_SUBUNIT = 0x0005
    DEST_NETWORK_TYPE = 0x0006
    DEST_BEARER_TYPE = 0x0007
    DEST_TELEMATICS_ID = 0x0008
    SOURCE_ADDR_SUBUNIT = 0x000D
    SOURCE_NETWORK_TYPE = 0x000E
    SOURCE_BEARER_TYPE = 0x000F
    SOURCE_TELEMATICS_ID = 0x0010
    QOS_TIME_TO_LIVE = 0x0017
    PAYLOAD_TYPE = 0x0019
    ADDITIONAL_STATUS_INFO_TEXT = 0x001D
    RECEIPTED_MESSAGE_ID = 0x001E
    MS_MSG_WAIT_FACILITIES = 0x0030
    PRIVACY_INDICATOR = 0x0201
    SOURCE_SUBADDRESS = 0x0202
    DEST_SUBADDRESS = 0x0203
    USER_MESSAGE_REFERENCE = 0x0204
    USER_RESPONSE_CODE = 0x0205
    SOURCE_PORT = 0x020A
    DESTINATION_PORT = 0x020B
    SAR_MSG_REF_NUM = 0x020C
    LANGUAGE_INDICATOR = 0x020D
    SAR_TOTAL_SEGMENTS = 0x020E
    SAR_SEGMENT_SEQNUM = 0x020F
    SC_INTERFACE_VERSION = 0x0210
    CALLBACK_NUM_PRES_IND = 0x0302
    CALLBACK_NUM_ATAG = 0x0303
    NUMBER_OF_MESSAGES = 0x0304
    CALLBACK_NUM = 0x0381
    DPF_RESULT = 0x0420
    SET_DPF = 0x0421
    MS_AVAILABILITY_STATUS = 0x0422
    NETWORK_ERROR_CODE = 0x0423
    MESSAGE_PAYLOAD = 0x0424
    DELIVERY_FAILURE_REASON = 0x0425
    MORE_MESSAGES_TO_SEND = 0x0426
    MESSAGE_STATE = 0x0427
    USSD_SERVICE_OP = 0x0501
    DISPLAY_TIME = 0x1201
    SMS_SIGNAL = 0x1203
    MS_VALIDITY = 0x1204
    ALERT_ON_MESSAGE_DELIVERY = 0x130C
    ITS_REPLY_TYPE = 0x1380
    ITS_SESSION_INFO = 0x1383
