"""The format engines and their MIME-level handlers: S/MIME and OpenPGP."""
