"""Sending-domain checks: SPF, DMARC, DKIM, MX, BIMI, MTA-STS and TLS-RPT.

Entry point: :func:`django_smtprelay.domains.check.check_domain`. The package
queries DNS with its own resolver (see :mod:`.resolver`) so a lookup that could
not be made is never mistaken for a record that is not there.
"""
