"""Signals a site can connect to, for alerting and bookkeeping.

Each is sent once per batch with the ids it concerns (``message_ids``), after
the state is committed, so a receiver reads what the admin shows. The
delivery signals also carry ``possible_duplicate_ids``: the messages among
them that may have reached a relay twice (a reply lost after the final dot,
or a message taken over from a worker whose lease expired).
"""

from django.dispatch import Signal

#: Messages were stored by the backend (sent on commit). Args: ``message_ids``.
message_queued = Signal()
#: Messages reached ``sent``. Args: ``message_ids``, ``possible_duplicate_ids``.
message_sent = Signal()
#: Messages were deferred for a retry. Args: ``message_ids``, ``possible_duplicate_ids``.
message_deferred = Signal()
#: Messages reached ``failed``. Args: ``message_ids``, ``possible_duplicate_ids``.
message_failed = Signal()
#: A route's circuit changed state. Args: ``route_name``, ``state``, ``reason``.
route_state_changed = Signal()
