"""The delivery engine: claim, route, send, classify, record. Independent of Celery.

One :class:`DeliveryEngine` run claims due messages in batches (a lease per
batch), splits each message by the routes its recipients need, sends over
one connection per route, moves recipients to the next route at once on a
route fault, and writes results in bulk every ``FLUSH_EVERY`` sends, only
where the batch's lease still holds the message. A heartbeat thread keeps
the lease while the relay takes its time (``lease``); the batch's state and
results live in ``batch``, one route's session in ``session``.
"""

from .engine import DeliveryEngine
from .state import RunReport

__all__ = ["DeliveryEngine", "RunReport"]
