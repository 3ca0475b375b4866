"""Key disposal: crypto-shredding of archive and subject data keys, with proof and a certificate.

Modules:

- :mod:`~attestly.disposal.erasure` — erasure requests of data subjects (request, approve, status);
- :mod:`~attestly.disposal.planning` — which keys are due, blocked (legal holds, unpurged rows) or pending;
- :mod:`~attestly.disposal.readpath` — the normal read path (archives, a subject's PHI) disposal shuts;
- :mod:`~attestly.disposal.proof` — proving a destroyed key is gone, with a control under another key;
- :mod:`~attestly.disposal.runner` — destroy -> verify -> certificate, each step idempotent;
- :mod:`~attestly.disposal.cli` — ``attestly erase ...``, ``attestly disposal ...``, ``attestly phi read``.

Nothing here imports Airflow; ``dags/key_disposal.py`` calls :mod:`attestly.workflows.disposal`.
"""
