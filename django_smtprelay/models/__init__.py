"""The app's models: routes, the queue, attempts, domains, suppressions."""

from .domains import SenderDomain
from .messages import DeliveryAttempt, Message, Recipient
from .routes import Route
from .suppressions import Suppression

__all__ = [
    "DeliveryAttempt",
    "Message",
    "Recipient",
    "Route",
    "SenderDomain",
    "Suppression",
]
