"""The key store: keys, certificates, trust anchors and domains, sealed at rest."""
