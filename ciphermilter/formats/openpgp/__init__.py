"""OpenPGP: the MIME-level handler (PGP/MIME, inline, attachments) on the packet engine."""
