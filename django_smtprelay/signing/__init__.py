"""DKIM signing (RFC 6376, RFC 8463): keys, the body hash, the signature header.

Pure helpers: no models, no database. ``keys`` makes key pairs and their
records; ``signer`` signs a message. The worker's delivery layer finds the
keys of a message's From domain and signs just before a route sends it
(``delivery/signing.py``).
"""
