"""The SMTP submission listener (``smtprelay_serve``): other programs submit
into the same queue as the site, over SMTP, with their own accounts.

- ``settings``: the ``SUBMISSION_*`` settings, typed;
- ``accounts``: logins and what an account may do (synchronous, database);
- ``limits``: failed logins per client, rates per account, the queue's depth;
- ``intake``: the Received header and the queue's fields of a message;
- ``writer``: the database threads, and group commit of the messages;
- ``handler``: the SMTP conversation (asyncio), which runs the rest in threads;
- ``server``: listening sockets, TLS, signals and the orderly stop.
"""
