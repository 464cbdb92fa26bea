"""The app's models: routes, the queue, domains, suppressions, accounts, statistics."""

from .dkim import DkimKey
from .domains import SenderDomain
from .events import RecipientEvent
from .health import RouteHealth
from .messages import DeliveryAttempt, Message, MessageContent, Recipient
from .routes import Route
from .stats import DeliveryStat, ErrorStat, MessageStat
from .submission import SubmissionAccount
from .suppressions import Suppression

__all__ = [
    "DeliveryAttempt",
    "DeliveryStat",
    "DkimKey",
    "ErrorStat",
    "Message",
    "MessageContent",
    "MessageStat",
    "Recipient",
    "RecipientEvent",
    "Route",
    "RouteHealth",
    "SenderDomain",
    "SubmissionAccount",
    "Suppression",
]
