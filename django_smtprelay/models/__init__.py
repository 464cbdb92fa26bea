"""The app's models: routes, the queue, attempts, domains, suppressions, statistics."""

from .dkim import DkimKey
from .domains import SenderDomain
from .events import RecipientEvent
from .health import RouteHealth
from .messages import DeliveryAttempt, Message, MessageContent, Recipient
from .routes import Route
from .stats import DeliveryStat, ErrorStat, MessageStat
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
    "Suppression",
]
