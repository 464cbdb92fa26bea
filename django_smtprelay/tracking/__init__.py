"""After the relay said yes: ESP events and returned bounces, applied to the queue.

ESPs post their events (delivered, bounced, complained, ...) to a route's
webhook URL (:mod:`.views`), which hands the post to anymail's own webhook
view for that ESP; anymail's ``tracking`` and ``inbound`` signals bring the
normalized events to :mod:`.receivers`, and :mod:`.apply` and :mod:`.dsn`
record them on the recipients. The sending side tags each message with our
own id (:mod:`.ids`) where an ESP echoes it back.
"""

from .ids import (
    HEADER,
    METADATA_KEY,
    esp_metadata,
    parse_smtprelay_id,
    smtp_tracking_headers,
    smtprelay_id,
)

__all__ = [
    "HEADER",
    "METADATA_KEY",
    "esp_metadata",
    "parse_smtprelay_id",
    "smtp_tracking_headers",
    "smtprelay_id",
]
