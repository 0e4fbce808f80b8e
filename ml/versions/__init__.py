"""Model versions on disk: the card, the registry of versions, bundles for moving them."""
