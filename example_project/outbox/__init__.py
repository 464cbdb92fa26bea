"""A one-page app: send a test message and follow it in the admin."""
