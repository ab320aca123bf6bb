"""S/MIME: the MIME-level handler on the CMS engine, its BER reader and certificate trust."""
