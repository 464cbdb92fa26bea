"""The route whose webhook URL is being served, for the signal receivers.

Its own module, free of imports, so that registering the receivers at
start-up loads nothing else.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any

#: The ``Route`` whose webhook is being served (None: a site's own anymail URL).
current_route: ContextVar[Any] = ContextVar("smtprelay_webhook_route", default=None)

#: The work of the post being served (its events, applied by the group
#: committer once the view returns); None: apply each event as it comes.
pending_work: ContextVar[list[Any] | None] = ContextVar("smtprelay_webhook_work", default=None)
