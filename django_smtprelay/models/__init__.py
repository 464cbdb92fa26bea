"""The app's models: routes, the queue, attempts, domains, suppressions."""

from .domains import SenderDomain
from .health import RouteHealth
from .messages import DeliveryAttempt, Message, MessageContent, Recipient
from .routes import Route
from .suppressions import Suppression

__all__ = [
    "DeliveryAttempt",
    "Message",
    "MessageContent",
    "Recipient",
    "Route",
    "RouteHealth",
    "SenderDomain",
    "Suppression",
]
