"""Development tooling for Attestly, kept out of the product package ``attestly``.

The embedded local stack (``attestly_dev.stack``: PostgreSQL from pgserver, moto server, an SMTP sink, an
Airflow home), the seeders (``attestly_dev.audit_seed``: synthetic audit events with planted faults;
``attestly_dev.aws_seed``: a known AWS estate in moto) and the demo (``attestly_dev.demo``). Installed by
``make setup`` with requirements-dev.txt; never in the image. Product code (``attestly``) never imports
it, except the CLI's development commands (``attestly stack|seed|demo``), lazily.
"""
