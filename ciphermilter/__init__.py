"""ciphermilter: a before-queue Postfix milter that decrypts and verifies S/MIME and OpenPGP mail."""

__version__ = "0.1.0"
