"""ciphermilter: a before-queue Postfix milter that decrypts and verifies S/MIME and OpenPGP mail."""

import warnings

__version__ = "0.1.0"

# pgpy warns on every verification that it does not check self-signatures,
# revocations or key flags. We know (the store decides which keys count), and
# an admin cannot act on it: keep it out of the CLI's stderr and the mail log.
warnings.filterwarnings("ignore", category=UserWarning, module=r"pgpy(\.|$)")
